"""The thread on trial (chapter ``verdict``): each claim, decided from the book's stored sweeps.

Nothing here trains. Each ``judge_*`` function takes the ``data`` of stored records (as
:func:`skipnet.store.load_result` returns them) and returns a :class:`Verdict`. Its ``verdict`` follows from
the numbers by the rule stated in the function's docstring, so that a regenerated sweep that stops supporting
a verdict changes it, and the test of the verdict fails. ``numbers`` holds every value the chapter glues,
``series`` the small data its figure draws (the plotting module only draws them).

The rules use the seeds' own spread: "in every seed", "in a majority of seeds", or a paired comparison over the
seeds (:func:`skipnet.experiments.ensemble_trials.paired`) at the 5 % level.

Over 300 lines on purpose: the six judges (one per claim, each with its rule in its docstring) stay on one page, so
that a reader can compare how each claim is decided.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..store import load_result
from .ensemble_trials import interpolated_gap, paired

__all__ = ["HOLDS", "QUALIFIED", "WRONG", "OPEN", "VERDICTS", "Verdict", "SOURCES", "load_stored",
           "judge_highway", "judge_identity", "judge_overfitting", "judge_noise", "judge_rnn", "judge_messy",
           "JUDGES", "judge_all", "debated", "scale"]

HOLDS, QUALIFIED, WRONG, OPEN = "holds", "holds, with a qualification", "wrong", "open"
VERDICTS = (HOLDS, QUALIFIED, WRONG, OPEN)
ALPHA = 0.05            # the level of the paired comparisons over seeds

#: The stored sweeps each verdict reads (files in ``book/data``).
SOURCES = {
    "highway": ("highway_convergence", "highway_intervention"),
    "identity": ("identity_zero_gamma", "identity_zero_gamma_long", "identity_fit_fair"),
    "overfitting": ("ensemble_gaps",),
    "noise": ("ensemble_noise",),
    "rnn": ("transformers_recall", "transformers_depth", "transformers_noresid"),
    "messy": ("identity_decode",),
    "debated": ("highway_hessian", "ensemble_spectra", "ensemble_noise", "ensemble_short", "identity_zero_gamma_long"),
}


@dataclass(frozen=True)
class Verdict:
    """One claim of the thread and what the data say about it."""
    key: str
    verdict: str
    reason: str
    measure: str                 # the deciding measurement, in words with its numbers
    numbers: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)


def load_stored(data_dir: str | Path) -> dict:
    """``{name: data}`` for every stored sweep that a verdict reads."""
    data_dir = Path(data_dir)
    names = sorted({n for names in SOURCES.values() for n in names})
    return {n: load_result(data_dir / f"{n}.json")["data"] for n in names}


def _median(values) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


# -- 1. the gradient highway --------------------------------------------------------------------------------
def judge_highway(convergence: list[dict], intervention: list[dict], target: float = 0.1,
                  depth: int = 56) -> Verdict:
    """"Gradients flow easily from layer to layer, so very deep nets train."

    Deciding measurement: the steps each CNN needs to reach a training loss of ``target`` within the stored
    budget, plain against residual at ``depth`` layers. Qualification: holding plain-56's weights at their
    initial norm brings its first/last gradient ratio near 1 (a gradient that reaches the lowest layer) without
    letting it train.

    Rule: *wrong* unless the residual net reaches the target in every seed and the plain net in fewer than
    half; then *holds, with a qualification* if the plain net with the healthy-gradient intervention still ends
    at least ten times above the residual one in every seed (the gradient reaching the bottom is not enough),
    else *holds*.
    """
    def rows(d, residual):
        return [r for r in convergence if r["depth"] == d and r["residual"] == residual]

    keys = {float(k): k for r in convergence for k in r["steps_to"]}
    if target not in keys:
        raise ValueError(f"target must be one of the stored thresholds {sorted(keys)}, got {target!r}")
    key = keys[target]
    depths = sorted({r["depth"] for r in convergence})
    steps = {}
    for residual in (False, True):
        kind = "residual" if residual else "plain"
        steps[kind] = []
        for d in depths:
            reached = [r["steps_to"][key] for r in rows(d, residual) if r["steps_to"].get(key) is not None]
            steps[kind].append({"depth": d, "n": len(rows(d, residual)), "reached": len(reached),
                                "median": _median(reached) if reached else None,
                                "budget": max(r["budget"] for r in rows(d, residual))})
    at = {kind: next(s for s in steps[kind] if s["depth"] == depth) for kind in steps}

    proj = {res: [r for r in intervention if r["mode"] == "project" and r["residual"] == res]
            for res in (False, True)}
    by_seed = {r["seed"]: r["epoch_loss"][-1] for r in proj[True]}
    ratio = [r["ratio_last10"] for r in proj[False]]
    loss_ratio = [r["epoch_loss"][-1] / by_seed[r["seed"]] for r in proj[False]]
    numbers = {
        "target": target, "depth": depth, "budget": at["plain"]["budget"], "seeds": at["plain"]["n"],
        "plain_reached": at["plain"]["reached"], "res_reached": at["residual"]["reached"],
        "res_steps": at["residual"]["median"],
        "deepest_plain_all": max((s["depth"] for s in steps["plain"] if s["reached"] == s["n"]), default=0),
        "max_depth": max(depths),
        "res_steps_deepest": steps["residual"][-1]["median"],
        "res_reached_deepest": steps["residual"][-1]["reached"], "seeds_deepest": steps["residual"][-1]["n"],
        "int_seeds": len(proj[False]),
        "int_ratio": float(np.exp(np.mean(np.log(ratio)))),
        "int_plain_loss": _median([r["epoch_loss"][-1] for r in proj[False]]),
        "int_res_loss": _median(list(by_seed.values())),
        "int_min_loss_ratio": min(loss_ratio),
    }
    trains = numbers["res_reached"] == numbers["seeds"] and 2 * numbers["plain_reached"] < numbers["seeds"]
    if not trains:
        verdict, reason = WRONG, "the residual network does not train reliably where the plain one fails"
    elif numbers["int_min_loss_ratio"] >= 10:
        verdict = QUALIFIED
        reason = ("residual nets train where plain ones stall, but a plain net whose gradient does reach its "
                  "lowest layer still does not train: the skip speeds up optimization, it is not only a pipe")
    else:
        verdict, reason = HOLDS, "residual nets train where plain ones stall, and a healthy gradient suffices"
    measure = (f"to a training loss of {target:g} at {depth} layers: residual in {numbers['res_reached']} of "
               f"{numbers['seeds']} seeds (median {numbers['res_steps']:.0f} steps), plain in "
               f"{numbers['plain_reached']} of {numbers['seeds']} within {numbers['budget']:,} steps")
    return Verdict("highway", verdict, reason, measure, numbers, {"steps": steps})


# -- 2. the identity-mapping argument ------------------------------------------------------------------------
def judge_identity(zero_gamma: dict, zero_gamma_long: dict, fit_fair: dict) -> Verdict:
    """"If the block learned nothing it would be the identity, so adding depth cannot make things worse."

    Deciding measurements: residual-56 against residual-20 (standard init) in training loss after the chapter's
    110 steps and after four times as many; and how far a deep plain stack is from fitting the identity map,
    at its best learning rate, against a residual one.

    Rule: *wrong* if residual-56 ends below residual-20 in fewer than a majority of seeds at the long budget;
    otherwise *holds, with a qualification* if at the short budget its median loss is above residual-20's
    (deeper is worse until the budget suffices), else *holds*.
    """
    def med(rows, depth, init="standard"):
        return _median([r["train_loss"] for r in rows if (r["depth"], r["init"]) == (depth, init)])

    def wins(rows, init="standard"):
        loss = {d: {r["seed"]: r["train_loss"] for r in rows if (r["depth"], r["init"]) == (d, init)}
                for d in (20, 56)}
        return sum(loss[56][s] < loss[20][s] for s in loss[56]), len(loss[56])

    short, long = zero_gamma["runs"], zero_gamma_long["runs"]
    steps_short, steps_long = len(short[0]["loss"]), len(long[0]["loss"])          # one loss per step

    fair = [r for r in fit_fair["runs"] if not r["lift"]]
    deep = max(r["n_blocks"] for r in fair)

    def best(residual, n):
        by_lr = {}
        for r in fair:
            if r["residual"] == residual and r["n_blocks"] == n:
                by_lr.setdefault(r["lr"], []).append(math.inf if r["rel_error"] is None else r["rel_error"])
        return min(_median(v) for v in by_lr.values())

    w_long, n_long = wins(long)
    w_short, n_short = wins(short)
    w_long_zg, _ = wins(long, "zero_gamma")
    numbers = {"steps_short": int(steps_short), "steps_long": int(steps_long),
               "short_20": med(short, 20), "short_56": med(short, 56), "short_wins": w_short, "short_n": n_short,
               "long_20": med(long, 20), "long_56": med(long, 56), "long_wins": w_long, "long_n": n_long,
               "long_wins_zg": w_long_zg, "long_56_zg": med(long, 56, "zero_gamma"),
               "fit_blocks": deep, "fit_plain_1": best(False, 1), "fit_plain_deep": best(False, deep),
               "fit_res_deep": best(True, deep)}
    numbers["short_ratio"] = numbers["short_56"] / numbers["short_20"]
    if 2 * w_long <= n_long:
        verdict, reason = WRONG, "given the steps, the deeper residual network still does not fit better"
    elif numbers["short_ratio"] > 1:
        verdict = QUALIFIED
        reason = ("the identity is free for a residual block and hard for a plain stack, and given the steps the "
                  "deeper network fits better; but at a short budget depth still costs a little")
    else:
        verdict, reason = HOLDS, "the deeper residual network fits at least as well at every budget measured"
    measure = (f"residual-56 / residual-20 training loss: {numbers['short_ratio']:.1f}x after {steps_short:.0f} "
               f"steps; 56 lower in {w_long} of {n_long} seeds after {steps_long:.0f}")
    series = {"budgets": [int(steps_short), int(steps_long)],
              "res20": [numbers["short_20"], numbers["long_20"]], "res56": [numbers["short_56"], numbers["long_56"]]}
    return Verdict("identity", verdict, reason, measure, numbers, series)


# -- 3. "it is about overfitting" -----------------------------------------------------------------------------
def judge_overfitting(gaps: dict, levels=(0.1, 0.05, 0.03, 0.02), depths=(8, 20)) -> Verdict:
    """"It is about overfitting: a simple model that is good enough generalizes."

    Deciding measurements: the training loss of plain-56 against residual-56 (underfitting, not overfitting),
    and the generalization gap (test minus training loss) of plain and residual twins compared where both
    reached the same training loss, paired over seeds.

    Rule: *holds* if at matched training loss the plain net's gap is larger at the 5 % level somewhere and
    the deep plain net fits its training set (within ten times the residual net's loss); *wrong* if the deep
    plain net underfits (ten times the residual loss or more) and no matched comparison is significant;
    otherwise *open*.
    """
    def final(label, key):
        return [r["evals"][-1][key] for r in sorted(gaps[label], key=lambda r: r["seed"])]

    def gaps_at(label, level):
        return [interpolated_gap(r["evals"], level) for r in sorted(gaps[label], key=lambda r: r["seed"])]

    matched = []
    for d in depths:
        for lv in levels:
            a, b = gaps_at(f"plain-{d}", lv), gaps_at(f"residual-{d}", lv)
            if None in a or None in b:
                continue
            matched.append({"depth": d, "level": lv, **paired(a, b)})
    deep = max(int(label.split("-")[1]) for label in gaps)
    numbers = {"deep": deep, "seeds": len(gaps[f"plain-{deep}"]),
               "plain_deep_loss": float(np.mean(final(f"plain-{deep}", "train_loss"))),
               "res_deep_loss": float(np.mean(final(f"residual-{deep}", "train_loss"))),
               "plain_deep_gap": float(np.mean(np.subtract(final(f"plain-{deep}", "test_loss"),
                                                          final(f"plain-{deep}", "train_loss")))),
               "plain_deep_test": float(np.mean(final(f"plain-{deep}", "test_acc"))),
               "res_deep_test": float(np.mean(final(f"residual-{deep}", "test_acc"))),
               "matched_tests": len(matched), "matched_min_p": min(m["p"] for m in matched),
               "matched_depths": " and ".join(str(d) for d in depths)}
    numbers["underfit_ratio"] = numbers["plain_deep_loss"] / numbers["res_deep_loss"]
    significant = [m for m in matched if m["p"] < ALPHA and m["mean"] > 0]
    underfits = numbers["underfit_ratio"] >= 10
    if significant and not underfits:
        verdict, reason = HOLDS, "at equal training loss the residual network generalizes better"
    elif underfits and not [m for m in matched if m["p"] < ALPHA]:
        verdict = WRONG
        reason = ("the deep plain net underfits, it does not overfit; at equal training loss the generalization "
                  "gaps do not differ")
    else:
        verdict, reason = OPEN, "the data do not separate the two readings"
    measure = (f"plain-{deep} training loss {numbers['plain_deep_loss']:.2f} against "
               f"{numbers['res_deep_loss']:.3f}; matched-loss gap differences: smallest p "
               f"{numbers['matched_min_p']:.2f} over {len(matched)} comparisons")
    series = {label: {"train_loss": float(np.mean(final(label, "train_loss"))),
                      "gap": float(np.mean(np.subtract(final(label, "test_loss"), final(label, "train_loss"))))}
              for label in gaps}
    return Verdict("overfitting", verdict, reason, measure, numbers, series)


# -- 4. "useful noise" --------------------------------------------------------------------------------------------
def judge_noise(noise: dict, label: str = "residual-56", m: int = 6) -> Verdict:
    """"The inner convolutions are forced to generate some useful noise with reference to the skip signal?"

    Deciding measurement: test accuracy of the trained network when ``m`` branches (block 1 never among them)
    output what they compute on *another* image, against deleting them, paired over the stored seeds.

    Rule: *wrong* if another image's output is worse than deletion at the 5 % level (the branch output is
    input-specific signal); *holds* if it is better at that level (any branch output serves); otherwise *open*.
    """
    recs = sorted(noise[label], key=lambda r: r["seed"])
    ms = recs[0]["no_first"]["ms"]
    j = ms.index(m)

    def acc(variant, jj=j):
        return [float(np.mean(r["no_first"][variant][jj])) for r in recs]

    other, delete, matched = acc("other image"), acc("delete"), acc("noise")
    vs = paired(other, delete)
    numbers = {"label": label, "m": m, "seeds": len(recs), "intact": float(np.mean([r["all"]["intact"] for r in recs])),
               "delete": float(np.mean(delete)), "other": float(np.mean(other)), "noise": float(np.mean(matched)),
               "diff_points": 100 * vs["mean"], "p": vs["p"], "worse_seeds": vs["n"] - vs["ahead"]}
    if vs["p"] < ALPHA and vs["mean"] < 0:
        verdict = WRONG
        reason = ("a branch's output on another image is worse than no output: the branches add small, "
                  "input-specific corrections, not noise")
    elif vs["p"] < ALPHA:
        verdict, reason = HOLDS, "any image's branch output serves better than none"
    else:
        verdict, reason = OPEN, "another image's branch output and no output cannot be told apart"
    measure = (f"{m} branches of {label} replaced by their output on another image: "
               f"{numbers['other']:.0%} correct, against {numbers['delete']:.0%} deleted "
               f"(p = {numbers['p']:.3f}, {numbers['seeds']} seeds)")
    series = {"ms": ms, **{v: [float(np.mean([np.mean(r["no_first"][v][k]) for r in recs])) for k in range(len(ms))]
                           for v in ("delete", "other image", "noise", "channel mean")},
              "intact": numbers["intact"]}
    return Verdict("noise", verdict, reason, measure, numbers, series)


# -- 5. "is it like an RNN?" ---------------------------------------------------------------------------------------
def judge_rnn(recall: list[dict], depth: list[dict], noresid: list[dict]) -> Verdict:
    """"Is it like an RNN?" and the replies: not plain RNNs; LSTM/GRU gates are the relatives; Transformers use
    skips to train deep stacks.

    Deciding measurements: the longest recall lag T that each recurrent net solves in every seed (at its better
    learning rate); and the 6-block Transformer without residual connections at every learning rate swept.

    Rule: *holds, with a qualification* if the tanh RNN fails at a lag the LSTM without forget gate solves,
    every no-residual run of the swept depth is stuck while the residual ones train, and the forget gate
    (the gate the reply names) solves fewer lags than the ungated carousel; *holds* without that last
    condition; *wrong* if either of the first two fails.
    """
    def solved_all(label):
        """Longest T solved in every seed at some lr, scanning T upward until a lag fails."""
        rows = [r for r in recall if r["label"] == label]
        best = 0
        for T in sorted({r["seq_len"] for r in rows}):
            ok = any(all(r["solved"] for r in rows if r["seq_len"] == T and r["lr"] == lr)
                     for lr in {r["lr"] for r in rows if r["seq_len"] == T})
            if not ok:
                break
            best = T
        return best

    labels = sorted({r["label"] for r in recall})
    longest = {label: solved_all(label) for label in labels}
    max_T = max(r["seq_len"] for r in recall)
    nr_blocks = max(r["n_blocks"] for r in noresid)
    nr = [r for r in noresid if r["n_blocks"] == nr_blocks]
    res = [r for r in depth if r["residual"] and r["n_blocks"] >= nr_blocks]
    plain_depth = [r for r in depth if not r["residual"]]
    numbers = {"tanh": longest["tanh RNN"], "tanh128": longest.get("tanh RNN, width 128", 0),
               "lstm": longest["LSTM, no forget gate"], "lstm_fg": longest["LSTM (forget gate)"],
               "linear": longest.get("linear attention", 0), "max_T": max_T,
               "linear_decay": longest.get("linear attention, decay 0.9", 0),
               "nr_blocks": nr_blocks, "nr_runs": len(nr), "nr_lrs": len({r["lr"] for r in nr}),
               "nr_stuck": sum(r["stuck"] for r in nr), "nr_best_loss": min(r["train_loss"] for r in nr),
               "res_runs": len(res), "res_trained": sum(not r["stuck"] for r in res),
               "res_worst_loss": max(r["train_loss"] for r in res),
               "plain_first_stuck": min(r["n_blocks"] for r in plain_depth if r["stuck"])}
    rnn_side = numbers["tanh"] < numbers["lstm"]
    tf_side = numbers["nr_stuck"] == numbers["nr_runs"] and numbers["res_trained"] == numbers["res_runs"]
    if not (rnn_side and tf_side):
        verdict, reason = WRONG, "the additive paths do not separate the nets that learn from those that fail"
    elif numbers["lstm_fg"] < numbers["lstm"]:
        verdict = QUALIFIED
        reason = ("the relative is the LSTM's additive cell, a skip along time; the forget gate the reply "
                  "names is not what helps (it costs the long lags), and without skips a deep Transformer is stuck")
    else:
        verdict, reason = HOLDS, "the gated, additive recurrences and the residual Transformers are the ones that learn"
    measure = (f"longest lag solved in every seed: tanh RNN {numbers['tanh']}, LSTM {numbers['lstm']} "
               f"({numbers['lstm_fg']} with forget gate); {nr_blocks}-block Transformer without skips stuck in "
               f"{numbers['nr_stuck']} of {numbers['nr_runs']} runs at {numbers['nr_lrs']} learning rates")
    tried = {label: max(r["seq_len"] for r in recall if r["label"] == label) for label in labels}
    series = {"longest": longest, "tried": tried}
    return Verdict("rnn", verdict, reason, measure, numbers, series)


# -- 6. "shouldn't 1 + 1 make everything messy?" ------------------------------------------------------------------
def judge_messy(decode: dict, readable: float = 0.5) -> Verdict:
    """The original question: "Shouldn't they be different enough that a simple 1 + 1 addition will make
    everything messy?"

    Deciding measurement: linear probes on the last stream of a trained residual MLP (test R^2), reading the
    input x_0 and each block's write F_k, with the plain and concatenation twins beside it.

    Rule: *wrong* (the sum is not messy) if the median R^2 of x_0 and of the worst-kept write are both at least
    ``readable`` in the residual stream; *holds* if both are below it; otherwise *open*.
    """
    rows = decode["runs"]
    n = max(r["n_blocks"] for r in rows)

    def med(kind, what):
        sub = [r["decode"][str(n)] for r in rows if r["kind"] == kind and r["n_blocks"] == n]
        vals = {"x0": [d["x0"] for d in sub], "worst": [min(d["writes"]) for d in sub],
                "class": [d["class_acc"] for d in sub]}[what]
        return _median(vals)

    numbers = {"n_blocks": n, "seeds": len({r["seed"] for r in rows}), "readable": readable,
               **{f"{kind}_{what}": med(kind, what) for kind in ("residual", "plain", "dense")
                  for what in ("x0", "worst", "class")}}
    if numbers["residual_x0"] >= readable and numbers["residual_worst"] >= readable:
        verdict = WRONG
        reason = ("the terms are superposed, not blended: a linear map still reads the input and every block's "
                  "write from the sum")
    elif numbers["residual_x0"] < readable and numbers["residual_worst"] < readable:
        verdict, reason = HOLDS, "the sum hides its terms from a linear read-out"
    else:
        verdict, reason = OPEN, "some terms stay readable, others are lost"
    measure = (f"after {n} additions a linear probe reads {numbers['residual_x0']:.0%} of the input's variance "
               f"and at least {numbers['residual_worst']:.0%} of every block's write (plain net: "
               f"{numbers['plain_x0']:.0%} of the input)")
    series = {kind: [numbers[f"{kind}_x0"], numbers[f"{kind}_worst"]] for kind in ("residual", "plain", "dense")}
    return Verdict("messy", verdict, reason, measure, numbers, series)


JUDGES: dict[str, Callable[[dict], Verdict]] = {
    "highway": lambda s: judge_highway(s["highway_convergence"], s["highway_intervention"]),
    "identity": lambda s: judge_identity(s["identity_zero_gamma"], s["identity_zero_gamma_long"],
                                         s["identity_fit_fair"]),
    "overfitting": lambda s: judge_overfitting(s["ensemble_gaps"]),
    "noise": lambda s: judge_noise(s["ensemble_noise"]),
    "rnn": lambda s: judge_rnn(s["transformers_recall"], s["transformers_depth"], s["transformers_noresid"]),
    "messy": lambda s: judge_messy(s["identity_decode"]),
}


def judge_all(stored: dict) -> dict[str, Verdict]:
    """Every verdict, in the order of the thread's claims."""
    return {key: judge(stored) for key, judge in JUDGES.items()}


# -- what is still debated ------------------------------------------------------------------------------------------
def debated(stored: dict) -> dict:
    """The numbers behind the "what is still debated" section, from the stored sweeps: the Hessian's
    curvature at the minimum (plain-20 against residual-20 and residual-56), the exact gradient-weighted mean
    path length (trained, fresh with batch statistics, fresh without BatchNorm), the share of positive
    refinement cosines, and the short-path training cost."""
    hess = stored["highway_hessian"]

    def h(depth, residual, key):
        return np.array([r[key] for r in hess if r["depth"] == depth and r["residual"] == residual], dtype=float)

    spectra = stored["ensemble_spectra"]

    def mean_len(label):
        return float(np.mean([r["mean_length"] for r in spectra[label]]))

    cos = [c for label in ("residual-56", "residual-20", "residual-56 (drop 0.5)")
           for r in stored["ensemble_noise"][label] for c in r["cos"]]
    fresh = [c for r in stored["ensemble_noise"]["residual-56, fresh"] for c in r["cos"]]
    out = {
        "hess_seeds": len(h(20, True, "seed")),
        "hess_lmax_ratio_min": float((h(20, False, "lam_max") / h(20, True, "lam_max")).min()),
        "hess_lmax_ratio_max": float((h(20, False, "lam_max") / h(20, True, "lam_max")).max()),
        "hess_ratio_p20_max": float(h(20, False, "ratio").max()),
        "hess_ratio_r20_max": float(h(20, True, "ratio").max()),
        "hess_ratio_r56_max": float(h(56, True, "ratio").max()),
        "len_trained": mean_len("residual-56"), "len_fresh_batch": mean_len("residual-56, fresh, batch statistics"),
        "len_fresh_off": mean_len("residual-56, fresh, BN off"), "len_typical": spectra["residual-56"][0]["n"] / 2,
        "cos_positive": float(np.mean(np.array(cos) > 0)), "cos_fresh_positive": float(np.mean(np.array(fresh) > 0)),
        "cos_positive_n": int((np.array(cos) > 0).sum()), "cos_n": len(cos),
    }
    short = stored["ensemble_short"]
    out["short"] = short_cost(short)
    return out


def short_cost(short: dict) -> dict:
    """Test accuracy of residual-56 trained normally against training through only k random blocks per step
    (the largest k stored, Veit's mildest cut), paired over seeds."""
    ks = {int(label.split("=")[1].split()[0]): label for label in short if label.endswith("(paths)")}
    k = max(ks)

    def acc(label):
        return [r["test_acc"] for r in sorted(short[label], key=lambda r: r["seed"])]

    p = paired(acc("normal"), acc(ks[k]))
    return {"k": k, "normal": float(np.mean(acc("normal"))), "short": float(np.mean(acc(ks[k]))),
            "cost_points": 100 * p["mean"], "p": p["p"], "seeds": p["n"]}


def scale(data_dir: str | Path) -> dict:
    """The size of what the verdicts rest on: the largest network (parameters, built from the stored configs
    of the deepest CNN, the deepest Transformer, the recurrent nets and the probed MLPs) and the longest budget
    (training steps) of the sweeps."""
    from ..models import ModelConfig, build_model
    from ..transformer import TransformerConfig

    data_dir = Path(data_dir)
    conv, depth = load_result(data_dir / "highway_convergence.json"), load_result(data_dir / "transformers_depth.json")
    recall = load_result(data_dir / "transformers_recall.json")["data"]
    decode = load_result(data_dir / "identity_decode.json")["data"]["runs"]

    def n_params(net):
        return sum(p.numel() for p in net.parameters())

    cnn_cfg = {k: v for k, v in conv["config"]["model"].items() if k != "n_blocks"}
    cnn = ModelConfig(**{**cnn_cfg, "in_shape": tuple(cnn_cfg["in_shape"]),
                         "depth": max(r["depth"] for r in conv["data"])})
    tf = TransformerConfig(**{**depth["config"]["model"], "n_blocks": max(depth["config"]["n_blocks"])})
    params = [n_params(build_model(cnn, seed=0)), n_params(build_model(tf, seed=0))]
    params += [r["n_params"] for r in recall] + [r["params"] for r in decode]
    steps = [r["budget"] for r in recall] + [r["budget"] for r in conv["data"]]
    return {"params_max": max(params), "steps_max": max(steps)}
