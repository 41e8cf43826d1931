"""What every verdict rule of the closing chapter (``verdict``) shares: the verdict words, the margins stated in
advance (each with its justification), the pairing by seed, and :func:`settle`, which decides every rule from one
Holm family of its paired comparisons (:mod:`skipnet.inference`).

A rule is an :class:`Evidence`: its numbers, its paired claims and a decision that reads only each claim's
direction (``higher``, ``lower``, ``equivalent`` or ``not detected``). :func:`settle` calls the decision twice: with
the outcomes of the family (the verdict), and with each undecided claim's observed direction (the lean: within
its margin if it has one, else the sign of its mean), which is what a confirmation on fresh seeds would test.
The rules are in :mod:`skipnet.experiments.verdict_rules` (1-3) and :mod:`skipnet.experiments.verdict` (4-6).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from skipnet.inference import ALPHA, EQUIVALENT, HIGHER, LOWER, NOT_DETECTED, Comparison, Family
from skipnet.models import ModelConfig, build_model, n_params
from skipnet.store import load_result, load_sweep
from skipnet.transformer import TransformerConfig

__all__ = ["HOLDS", "QUALIFIED", "WRONG", "OPEN", "VERDICTS", "ALPHA", "SPEED_MARGIN", "INT_RATIO", "DEPTH_MARGIN",
           "GAP_MARGIN", "UNDERFIT_RATIO", "NOISE_MARGIN", "LAG_MARGIN", "Verdict", "Evidence", "settle", "SOURCES",
           "load_stored", "by_seed", "pair", "scale"]

HOLDS, QUALIFIED, WRONG, OPEN = "holds", "holds, with a qualification", "wrong", "open"
VERDICTS = (HOLDS, QUALIFIED, WRONG, OPEN)

# The margins and ratios below were fixed with the rules, after the sweeps were stored (exploratory); the
# sensitivity table (:mod:`skipnet.experiments.verdict_controls`) shows each verdict at other values.
#: Plain and residual nets reach the target "as fast" if their steps differ by less than 1.5x: the thread says skips
#: let deep nets *train*, a claim about several-fold differences, not about a speed-up of a few tens of percent.
SPEED_MARGIN = 1.5
#: The healthy-gradient plain net "does not train within the budget" if it ends more than ten times (an order of magnitude)
#: above the residual net in training loss: slower training would close part of that gap, not leave it.
INT_RATIO = 10.0
#: "Depth made it no worse": the deeper net's training loss within a factor two of the shallower one's; the claim
#: is about whether depth hurts the fit, and a factor two is small against the orders of magnitude between a net
#: that fits and one that does not.
DEPTH_MARGIN = 2.0
#: Generalization gaps (test minus training loss, nats) within 0.05 of each other do not differ: 0.05 nats is a
#: 5 % change of the test likelihood (e^0.05 = 1.05), small against the near-chance loss a deep plain net ends at.
GAP_MARGIN = 0.05
#: "The deep plain net underfits": its training loss more than ten times (an order of magnitude) the residual twin's.
UNDERFIT_RATIO = 10.0
#: One point of test accuracy (about four of the 359 test digits) is "no difference" between two replacements.
NOISE_MARGIN = 0.01
#: Recall lags within a factor two (one step of the swept lags 5, 10, 20, 40) are "the same" (in log2 T).
LAG_MARGIN = 1.0

#: The stored sweeps each verdict reads (files in ``book/data``).
SOURCES = {
    "highway": ("highway_convergence", "highway_intervention"),
    "identity": ("identity_zero_gamma", "identity_zero_gamma_long", "identity_fit_fair"),
    "overfitting": ("ensemble_gaps",),
    "noise": ("ensemble_noise",),
    "rnn": ("transformers_recall", "transformers_depth", "transformers_noresid", "transformers_race"),
    "messy": ("identity_decode", "identity_decode_control"),
    "debated": ("highway_hessian", "ensemble_spectra", "ensemble_noise", "ensemble_short", "identity_zero_gamma_long"),
}


def load_stored(data_dir: str | Path, tag: str | None = None) -> dict:
    """``{name: data}`` for every stored sweep that a verdict reads: the exploratory sweeps, or with ``tag`` (e.g.
    ``"confirm"``) the ones stored beside them under that tag, read by the same call and judged by the same rules."""
    names = sorted({n for names in SOURCES.values() for n in names})
    return {n: load_sweep(n, tag, data_dir)["data"] for n in names}


def by_seed(rows, value: Callable[[dict], float]) -> dict:
    """``{seed: value(row)}``; a seed that occurs twice is an error (pairs are made by seed, never by position)."""
    out = {}
    for r in rows:
        if r["seed"] in out:
            raise ValueError(f"seed {r['seed']} occurs twice")
        out[r["seed"]] = value(r)
    return out


def pair(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray, list]:
    """The values of ``a`` and ``b`` paired by seed (both must hold the same seeds), in seed order."""
    if set(a) != set(b):
        raise ValueError(f"the two sides hold different seeds: {sorted(a)} and {sorted(b)}")
    seeds = sorted(a)
    return (np.array([a[s] for s in seeds], dtype=np.float64), np.array([b[s] for s in seeds], dtype=np.float64),
            seeds)


@dataclass(frozen=True)
class Verdict:
    """One claim of the thread and what the data say about it."""
    key: str
    verdict: str
    reason: str
    measure: str                 # the deciding measurement, in words with its numbers
    numbers: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)
    lean: str = OPEN             # the answer if every observed direction held (what a confirmation tests)
    claims: dict = field(default_factory=dict)      # name -> Comparison (Holm-adjusted in its family)
    lean_reason: str = ""        # the rule's reason for its lean, in words (what the seeds point to)


@dataclass(frozen=True)
class Evidence:
    """What a rule reads before deciding: its numbers, its figure's series, its paired claims (name -> the
    arguments of :meth:`Family.add`) and its decision (a function of each claim's direction)."""
    key: str
    numbers: dict
    series: dict
    claims: dict
    decide: Callable[[Callable[[str], str]], str]
    words: Callable[[str, dict, dict], tuple[str, str]]       # (verdict, numbers, claims) -> (reason, measure)


def _decided(c: Comparison) -> str:
    return c.outcome


def _leaning(c: Comparison) -> str:
    """The direction a contrast leans to where it was not decided: within its margin (if it has one), else the
    sign of its mean difference; a mean of exactly zero leans nowhere."""
    if c.outcome != NOT_DETECTED:
        return c.outcome
    if c.margin is not None and abs(c.mean) < c.margin:
        return EQUIVALENT
    return HIGHER if c.mean > 0 else LOWER if c.mean < 0 else NOT_DETECTED


def median(values) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def p_words(c: Comparison) -> str:
    return f"p = {c.p:.3f}, adjusted {c.p_used:.3f}"


def settle(evidence: list[Evidence], alpha: float = ALPHA, name: str = "verdict") -> tuple[dict, Family]:
    """Put every claim of ``evidence`` into one Holm family and decide each rule from the adjusted outcomes."""
    family = Family(name, alpha)
    for e in evidence:
        for cname, (a, b, claim, kw) in e.claims.items():
            family.add(f"{e.key}.{cname}", a, b, claim, **kw)
    results = family.results()
    out = {}
    for e in evidence:
        comps = {c: results[f"{e.key}.{c}"] for c in e.claims}
        verdict = e.decide(lambda c: _decided(comps[c]))
        lean = e.decide(lambda c: _leaning(comps[c]))
        numbers = dict(e.numbers)
        for c, comp in comps.items():
            numbers.update({f"{c}_p": comp.p, f"{c}_p_adj": comp.p_used, f"{c}_outcome": comp.outcome,
                            f"{c}_n": comp.n})
        numbers["lean"] = lean
        reason, measure = e.words(verdict, numbers, comps)
        lean_reason = e.words(lean, numbers, comps)[0]
        if verdict == OPEN and lean != OPEN:
            reason += f" (the seeds lean to \"{lean}\"; a confirmation on fresh seeds will decide)"
        out[e.key] = Verdict(e.key, verdict, reason, measure, numbers, e.series, lean, comps, lean_reason)
    return out, family


def scale(data_dir: str | Path) -> dict:
    """The size of what the verdicts rest on: the largest network (parameters, built from the stored configs
    of the deepest CNN, the deepest Transformer, the recurrent nets and the probed MLPs) and the longest budget
    (training steps) of the sweeps."""
    data_dir = Path(data_dir)
    conv, depth = load_result(data_dir / "highway_convergence.json"), load_result(data_dir / "transformers_depth.json")
    recall = load_result(data_dir / "transformers_recall.json")["data"]
    decode = load_result(data_dir / "identity_decode.json")["data"]["runs"]
    cnn_cfg = {k: v for k, v in conv["config"]["model"].items() if k != "n_blocks"}
    cnn = ModelConfig(**{**cnn_cfg, "in_shape": tuple(cnn_cfg["in_shape"]),
                         "depth": max(r["depth"] for r in conv["data"])})
    tf = TransformerConfig(**{**depth["config"]["model"], "n_blocks": max(depth["config"]["n_blocks"])})
    params = [n_params(build_model(cnn, seed=0)), n_params(build_model(tf, seed=0))]
    params += [r["n_params"] for r in recall] + [r["params"] for r in decode]
    steps = [r["budget"] for r in recall] + [r["budget"] for r in conv["data"]]
    return {"params_max": max(params), "steps_max": max(steps)}
