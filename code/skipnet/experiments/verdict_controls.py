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
                                         OPEN, QUALIFIED, SPEED_MARGIN, UNDERFIT_RATIO, WRONG, Verdict, judge_all,
                                         judge_highway, judge_identity, judge_messy, judge_noise, judge_overfitting,
                                         judge_rnn)

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


def _no_output(nf, j):             # "another image's output" is nothing at all: the branches deleted
    nf["other image"][j] = list(nf["delete"][j])


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


CONTROLS = (
    Control("highway", "a shallow depth that plain and residual nets both reach as fast",
            lambda s: judge_highway(s["highway_convergence"], s["highway_intervention"], depth=_shallow_depth(s)),
            "verdict", WRONG),
    Control("highway", "plain and residual labels swapped",
            lambda s: judge_highway(_swap_residual(s["highway_convergence"]), s["highway_intervention"]),
            "lean", WRONG),
    Control("identity", "the long budget replaced by the short one, where depth still costs",
            lambda s: judge_identity(s["identity_zero_gamma"], s["identity_zero_gamma"], s["identity_fit_fair"]),
            "lean", WRONG),
    Control("identity", "a depth against itself (residual-20 against residual-20)",
            lambda s: judge_identity(s["identity_zero_gamma"], s["identity_zero_gamma_long"], s["identity_fit_fair"],
                                     depths=(20, 20)), "lean", HOLDS),
    Control("overfitting", "plain and residual labels swapped",
            lambda s: judge_overfitting({_swap_kind(k): v for k, v in s["ensemble_gaps"].items()}), "lean", OPEN),
    Control("noise", "another image is the same image (the intact net)",
            lambda s: judge_noise(_noise_with(s, _same_image)), "lean", HOLDS),
    Control("noise", "another image's output is nothing at all (deletion)",
            lambda s: judge_noise(_noise_with(s, _no_output)), "lean", HOLDS),
    Control("noise", "branches worth nothing (intact = deleted)",
            lambda s: judge_noise(_noise_with(s, _useless_branches)), "lean", WRONG),
    Control("rnn", "the tanh RNN and the LSTM without forget gate swapped",
            lambda s: judge_rnn(_swap_labels(s["transformers_recall"], "tanh RNN", "LSTM, no forget gate"),
                                s["transformers_depth"], s["transformers_noresid"], s["transformers_race"]),
            "lean", WRONG),
    Control("rnn", "in the fair race, the LSTM with forget bias 3 and the one without forget gate swapped",
            lambda s: judge_rnn(s["transformers_recall"], s["transformers_depth"], s["transformers_noresid"],
                                _swap_labels(s["transformers_race"], "LSTM, forget bias 3", "LSTM, no forget gate")),
            "lean", HOLDS),
    Control("messy", "the plain twin, which has no sum, in place of the residual stream",
            lambda s: judge_messy(_plain_as_residual(s["identity_decode"]), _plain_as_residual(
                s["identity_decode_control"])), "lean", OPEN),
    Control("messy", "the input alone in place of the stream (each write read from x_0)",
            lambda s: judge_messy(s["identity_decode"], _input_alone(s["identity_decode_control"])), "lean", OPEN),
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
