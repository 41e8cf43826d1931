"""Negative controls and the sensitivity table of the closing chapter's rules (``verdict``).

A rule that cannot give the other answer decides nothing. :data:`CONTROLS` builds, for each rule, a case from the
stored data where the deciding contrast is swapped or neutralised, and states the answer the rule must give
there (its verdict where the control decides it, or its lean where five seeds cannot): ``tests/test_verdict.py``
asserts each. :func:`sensitivity` re-judges the chapter at every listed value of every free constant (targets,
ratios, margins, m, levels, alpha), one constant at a time, and :func:`sensitivity_table` prints it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

from skipnet.experiments.verdict import (ALPHA, DEPTH_MARGIN, GAP_MARGIN, HOLDS, INT_RATIO, LAG_MARGIN, NOISE_MARGIN,
                                         OPEN, QUALIFIED, SPEED_MARGIN, UNDERFIT_RATIO, WRONG, Verdict, judge_all)

__all__ = ["Control", "CONTROLS", "run_controls", "CONSTANTS", "sensitivity", "sensitivity_table"]


@dataclass(frozen=True)
class Control:
    """A case built from the stored data where the rule must answer ``expected`` (read from ``field``:
    ``"verdict"`` where the control decides, ``"lean"`` where its seeds are too few to)."""
    rule: str
    name: str
    build: Callable[[dict], Verdict]
    field: str
    expected: str


def _shallow_depth(stored) -> int:
    """The shallowest stored depth, which plain and residual nets both reach the target at, in every seed."""
    return min(r["depth"] for r in stored["highway_convergence"])


def _swap_residual(rows):
    rows = copy.deepcopy(rows)
    for r in rows:
        r["residual"] = not r["residual"]
    return rows


def _noise_with(stored, replace: Callable[[dict, int], None]) -> dict:
    noise = copy.deepcopy(stored["ensemble_noise"])
    for r in noise["residual-56"]:
        for j in range(len(r["no_first"]["ms"])):
            replace(r["no_first"], j)
    return noise


def _same_image(nf, j):            # "another image" is the image itself: the branches' own output, the intact net
    nf["other image"][j] = [nf["intact"] for _ in nf["other image"][j]]


def _useless_branches(nf, j):      # branches whose output is worth nothing: the intact net is the deleted one
    nf["delete"][j] = [nf["intact"]] * len(nf["delete"][j])


def _swap_kind(label: str) -> str:
    kind, depth = label.split("-", 1)
    return f"{ {'plain': 'residual', 'residual': 'plain'}[kind]}-{depth}"


def _swap_labels(rows, a, b):
    rows = copy.deepcopy(rows)
    for r in rows:
        r["label"] = {a: b, b: a}.get(r["label"], r["label"])
    return rows


def _plain_as_residual(decode: dict) -> dict:
    """The plain twin relabelled as the residual stream (the real residual rows dropped)."""
    return {"runs": [{**r, "kind": "residual"} for r in decode["runs"] if r["kind"] == "plain"]
            + [r for r in decode["runs"] if r["kind"] not in ("residual", "plain")]
            + [r for r in decode["runs"] if r["kind"] == "plain"]}


def _input_alone(decode: dict) -> dict:
    """A stream that carries nothing of the writes beyond what the input predicts: each write read "from the
    stream" as well as from x_0."""
    runs = copy.deepcopy(decode["runs"])
    for r in runs:
        for d in r["decode"].values():
            d["writes"] = list(d["writes_from_x0"])
    return {"runs": runs}


def _judged(rule: str, constants: dict | None = None, **sweeps) -> Callable[[dict], Verdict]:
    """A control's verdict: the stored sweeps with ``sweeps`` (name -> a function of the stored data giving the
    replacement) substituted, judged by :func:`judge_all`, so that it meets the same Holm family as the chapter."""
    def build(stored: dict) -> Verdict:
        changed = {**stored, **{name: make(stored) for name, make in sweeps.items()}}
        return judge_all(changed, constants={rule: constants} if constants else None)[rule]
    return build


def _plain_fits_and_gaps_grow(gaps: dict) -> dict:
    """Plain-56 replaced by its residual twin (it fits) and every other plain net's test loss raised by twice the
    gap margin (its gap larger at every training loss): the case "it is about overfitting" describes."""
    gaps = copy.deepcopy(gaps)
    deep = max(int(label.split("-")[1]) for label in gaps)
    gaps[f"plain-{deep}"] = copy.deepcopy(gaps[f"residual-{deep}"])
    for label, rows in gaps.items():
        if label.startswith("plain-") and label != f"plain-{deep}":
            for r in rows:
                for e in r["evals"]:
                    e["test_loss"] += 2 * GAP_MARGIN
    return gaps


def _stream_and_input_swapped(decode: dict) -> dict:
    """Each write read from the input alone as well as it was from the stream, and from the stream as poorly as it
    was from the input: a sum that hides what the input alone shows."""
    runs = copy.deepcopy(decode["runs"])
    for r in runs:
        for d in r["decode"].values():
            d["writes"], d["writes_from_x0"] = list(d["writes_from_x0"]), list(d["writes"])
    return {"runs": runs}


CONTROLS = (
    Control("highway", "a shallow depth that plain and residual nets both reach as fast",
            lambda s: _judged("highway", {"depth": _shallow_depth(s)})(s), "lean", WRONG),
    Control("highway", "plain and residual labels swapped",
            _judged("highway", highway_convergence=lambda s: _swap_residual(s["highway_convergence"])),
            "lean", WRONG),
    Control("identity", "the long budget replaced by the short one, where depth still costs",
            _judged("identity", identity_zero_gamma_long=lambda s: s["identity_zero_gamma"]), "lean", WRONG),
    Control("identity", "a depth against itself (residual-20 against residual-20)",
            _judged("identity", {"depths": (20, 20)}), "lean", HOLDS),
    Control("overfitting", "plain and residual labels swapped",
            _judged("overfitting", ensemble_gaps=lambda s: {_swap_kind(k): v for k, v in s["ensemble_gaps"].items()}),
            "lean", OPEN),
    Control("overfitting", "plain-56 fits, and the shallower plain nets' gaps are larger by twice the margin",
            _judged("overfitting", ensemble_gaps=lambda s: _plain_fits_and_gaps_grow(s["ensemble_gaps"])),
            "lean", HOLDS),
    Control("noise", "another image is the same image (the intact net)",
            _judged("noise", ensemble_noise=lambda s: _noise_with(s, _same_image)), "lean", HOLDS),
    Control("noise", "branches worth nothing (intact = deleted)",
            _judged("noise", ensemble_noise=lambda s: _noise_with(s, _useless_branches)), "lean", WRONG),
    Control("rnn", "the tanh RNN and the LSTM without forget gate swapped",
            _judged("rnn", transformers_recall=lambda s: _swap_labels(s["transformers_recall"], "tanh RNN",
                                                                      "LSTM, no forget gate")), "lean", WRONG),
    Control("rnn", "in the fair race, the LSTM with forget bias 3 and the one without forget gate swapped",
            _judged("rnn", transformers_race=lambda s: _swap_labels(s["transformers_race"], "LSTM, forget bias 3",
                                                                    "LSTM, no forget gate")), "lean", HOLDS),
    Control("messy", "the plain twin, which has no sum, in place of the residual stream",
            _judged("messy", identity_decode=lambda s: _plain_as_residual(s["identity_decode"]),
                    identity_decode_control=lambda s: _plain_as_residual(s["identity_decode_control"])),
            "lean", OPEN),
    Control("messy", "the input alone in place of the stream (each write read from x_0)",
            _judged("messy", identity_decode_control=lambda s: _input_alone(s["identity_decode_control"])),
            "lean", OPEN),
    Control("messy", "the stream and the input alone swapped (the writes read better from x_0)",
            _judged("messy", identity_decode_control=lambda s: _stream_and_input_swapped(
                s["identity_decode_control"])), "lean", HOLDS),
)


def run_controls(stored: dict) -> list[dict]:
    """Each control with the rule's answer there (verdict and lean), what it must be, and the rule's answer on
    the stored data; it passes when the control gives the expected answer and the stored data the other one."""
    actual = judge_all(stored)
    rows = []
    for c in CONTROLS:
        v, a = c.build(stored), actual[c.rule]
        rows.append({"rule": c.rule, "control": c.name, "verdict": v.verdict, "lean": v.lean, "field": c.field,
                     "expected": c.expected, "stored_verdict": a.verdict, "stored_lean": a.lean,
                     "passes": getattr(v, c.field) == c.expected and getattr(a, c.field) != c.expected})
    return rows


#: Every free constant of every rule, with its default and the values the sensitivity table tries.
CONSTANTS = {
    "highway": {"target": (0.1, (1.0, 0.5, 0.2, 0.1)), "depth": (56, (44, 56, 110)),
                "speed_margin": (SPEED_MARGIN, (1.25, 1.5, 2.0, 3.0)), "int_ratio": (INT_RATIO, (3.0, 10.0, 30.0))},
    "identity": {"depth_margin": (DEPTH_MARGIN, (1.5, 2.0, 4.0))},
    "overfitting": {"gap_margin": (GAP_MARGIN, (0.02, 0.05, 0.1)),
                    "underfit_ratio": (UNDERFIT_RATIO, (3.0, 10.0, 30.0)),
                    "levels": ((0.1, 0.05, 0.03, 0.02), ((0.1,), (0.05,), (0.1, 0.05, 0.03, 0.02))),
                    "depths": ((8, 20), ((8,), (20,), (8, 20)))},
    "noise": {"m": (6, (1, 2, 4, 6, 9, 13)), "label": ("residual-56", ("residual-56", "residual-20")),
              "margin": (NOISE_MARGIN, (0.005, 0.01, 0.02))},
    "rnn": {"lag_margin": (LAG_MARGIN, (0.5, 1.0, 2.0))},
    "messy": {"n_blocks": (16, (8, 16))},
}
ALPHAS = (0.01, 0.05, 0.10)


def sensitivity(stored: dict) -> list[dict]:
    """One row per rule, constant and value: the rule's verdict and lean when that one constant takes that value
    (the others at their defaults), judged in the chapter's family; ``alpha`` varies for all rules at once."""
    rows = []
    for rule, consts in CONSTANTS.items():
        for name, (default, values) in consts.items():
            for value in values:
                v = judge_all(stored, constants={rule: {name: value}})[rule]
                rows.append({"rule": rule, "constant": name, "value": value, "default": value == default,
                             "verdict": v.verdict, "lean": v.lean})
    for a in ALPHAS:
        for rule, v in judge_all(stored, alpha=a).items():
            rows.append({"rule": rule, "constant": "alpha", "value": a, "default": a == ALPHA,
                         "verdict": v.verdict, "lean": v.lean})
    return rows


_SHORT = {HOLDS: "holds", QUALIFIED: "qualified", WRONG: "wrong", OPEN: "open"}


def _value(x) -> str:
    return "/".join(_value(y) for y in x) if isinstance(x, tuple) else f"{x:g}" if isinstance(x, float) else str(x)


def sensitivity_table(rows: list[dict]) -> str:
    """The sensitivity rows as one compact Markdown table: a line per rule and constant, each value with the
    verdict and, in brackets, the lean (the default value in bold)."""
    lines = ["| rule | constant | value: verdict (lean) |", "|---|---|---|"]
    seen = []
    for r in rows:
        if (r["rule"], r["constant"]) not in seen:
            seen.append((r["rule"], r["constant"]))
    for rule, name in sorted(seen, key=lambda k: (list(CONSTANTS).index(k[0]), k[1] == "alpha")):
        cells = []
        for r in rows:
            if (r["rule"], r["constant"]) == (rule, name):
                value = f"**{_value(r['value'])}**" if r["default"] else _value(r["value"])
                cells.append(f"{value}: {_SHORT[r['verdict']]} ({_SHORT[r['lean']]})")
        lines.append(f"| {rule} | {name.replace('_', ' ')} | {'; '.join(cells)} |")
    return "\n".join(lines)
