"""The thread on trial (chapter ``verdict``): each claim, decided from the book's stored sweeps.

Nothing here trains. Each ``judge_*`` function takes stored records (as :func:`skipnet.store.load_result` returns
them) and returns a :class:`Verdict`. Every deciding contrast is a paired comparison over seeds through
:mod:`skipnet.inference`; :func:`judge_all` puts the claims of all six rules into one Holm family
(:func:`verdict_family`) and decides each rule from the adjusted outcomes (:func:`~.verdict_base.settle`).
A rule says "wrong" only from a difference detected in the other direction or an equivalence within a margin stated
in advance; otherwise "open". ``Verdict.lean`` is the answer if every observed direction held: what a confirmation
on fresh seeds would test, not a verdict.

The rules were written after the sweeps they judge were stored (exploratory). With an exact test five seeds never
reach p < 0.05, so a rule that rests on five seeds is "open" until a confirmation on at least ten fresh seeds.
Rules 1-3 are in :mod:`~.verdict_rules`; the negative controls and the sensitivity table in :mod:`~.verdict_controls`.
"""
from __future__ import annotations

import math

import numpy as np

from skipnet.experiments.verdict_base import (ALPHA, DEPTH_MARGIN, GAP_MARGIN, HOLDS, INT_RATIO, LAG_MARGIN,
                                              NOISE_MARGIN, OPEN, QUALIFIED, SOURCES, SPEED_MARGIN, UNDERFIT_RATIO,
                                              VERDICTS, WRONG, Evidence, Verdict, by_seed, load_stored, median,
                                              p_words, pair, scale, settle)
from skipnet.experiments.verdict_rules import (highway_evidence, identity_evidence, judge_highway, judge_identity,
                                               judge_overfitting, overfitting_evidence)
from skipnet.inference import EQUIVALENT, HIGHER, LOWER, Family, compare

__all__ = ["HOLDS", "QUALIFIED", "WRONG", "OPEN", "VERDICTS", "ALPHA", "SPEED_MARGIN", "INT_RATIO", "DEPTH_MARGIN",
           "GAP_MARGIN", "UNDERFIT_RATIO", "NOISE_MARGIN", "LAG_MARGIN", "Verdict", "SOURCES", "load_stored",
           "judge_highway", "judge_identity", "judge_overfitting", "judge_noise", "judge_rnn", "judge_messy",
           "noise_evidence", "rnn_evidence", "messy_evidence", "EVIDENCE", "judge_all", "verdict_family", "debated",
           "short_cost", "scale"]


# -- 4. "useful noise" --------------------------------------------------------------------------------------------
def noise_evidence(noise: dict, label: str = "residual-56", m: int = 6, margin: float = NOISE_MARGIN) -> Evidence:
    recs = noise[label]
    ms = recs[0]["no_first"]["ms"]
    j = ms.index(m)

    def acc(variant):
        return by_seed(recs, lambda r: float(np.mean(r["no_first"][variant][j])))

    other, delete, _ = pair(acc("other image"), acc("delete"))
    intact, _, _ = pair(by_seed(recs, lambda r: float(r["no_first"]["intact"])), acc("delete"))
    if len(intact) != len(other):
        raise ValueError("the intact and replaced accuracies must hold the same seeds")
    kw = {"margin": margin, "scale": 100, "unit": "points", "fmt": ".1f"}
    claims = {"useful": (intact, delete, f"deleting {m} branches of {label} costs test accuracy (intact - deleted)",
                         kw),
              "specific": (other, intact, f"{m} branches of {label} answering for another image do as well as "
                           "their own output (another image - intact)", kw)}
    numbers = {"label": label, "m": m, "seeds": len(recs), "intact": float(np.mean(intact)),
               "delete": float(np.mean(delete)), "other": float(np.mean(other)),
               "noise": float(np.mean(list(acc("noise").values()))),
               "diff_points": 100 * float(np.mean(other - delete)),
               "worse_seeds": int(np.sum(other < delete)), "margin_points": 100 * margin}

    def decide(d):
        useful, specific = d("useful"), d("specific")
        if useful in (LOWER, EQUIVALENT):
            return WRONG
        if useful != HIGHER:
            return OPEN
        return QUALIFIED if specific == LOWER else HOLDS if specific in (HIGHER, EQUIVALENT) else OPEN

    def words(verdict, n, c):
        worse = ", and worse than none at all" if n["other"] < n["delete"] else ""
        reason = {
            QUALIFIED: ("the branches add a useful perturbation to the stream (the ResNet paper's reading), but an "
                        f"input-specific one: another image's branch output costs accuracy against the image's own"
                        f"{worse}, so it is a correction, not noise"),
            HOLDS: "the branches are useful and any image's branch output serves as well: noise in the literal sense",
            WRONG: "deleting the branches costs nothing: they add no useful perturbation",
            OPEN: "the usefulness of the branches, or how input-specific they are, was not decided over these seeds",
        }[verdict]
        n["p"] = c["specific"].p
        measure = (f"{m} branches of {label} replaced by their output on another image: {n['other']:.0%} correct, "
                   f"against {n['intact']:.0%} intact ({p_words(c['specific'])}) and {n['delete']:.0%} with "
                   f"them deleted (worse than deleted in {n['worse_seeds']} of {n['seeds']} seeds)")
        return reason, measure

    series = {"ms": ms, **{v: [float(np.mean([np.mean(r["no_first"][v][k]) for r in recs])) for k in range(len(ms))]
                           for v in ("delete", "other image", "noise", "channel mean")},
              "intact": float(np.mean([r["all"]["intact"] for r in recs]))}
    return Evidence("noise", numbers, series, claims, decide, words)


def judge_noise(noise: dict, label: str = "residual-56", m: int = 6, margin: float = NOISE_MARGIN,
                alpha: float = ALPHA) -> Verdict:
    """"The inner convolutions are forced to generate some useful noise with reference to the skip signal?"

    The thread's reading: "useful noise with reference to the skip signal" is the ResNet paper's "perturbations
    with reference to an identity mapping", so the claim is that the branches add a useful perturbation to the
    stream. Two contrasts over the stored seeds, ``m`` branches (never block 1) of ``label``: intact against those
    branches deleted (useful?), and the branches answering for *another* image against their own output, the intact
    network (interchangeable, as noise would be, or input-specific?). The second contrast tests the literal "noise"
    reading, which the asker probably did not mean; it qualifies the verdict, it does not decide it. Another
    image's output against none at all (deleted) is reported beside it.

    Rule: *wrong* if deleting is detected to cost nothing (lower, or equivalent within ``margin``); if the branches
    are detected useful, *holds, with a qualification* (input-specific) when another image's output is detected
    worse than their own, *holds* (any output serves) when it is detected equivalent (or better); otherwise
    *open*.
    """
    return settle([noise_evidence(noise, label, m, margin)], alpha, "noise")[0]["noise"]


# -- 5. "is it like an RNN?" ---------------------------------------------------------------------------------------
def _longest_per_seed(recall: list[dict], label: str) -> dict:
    """``{seed: longest lag T}`` such that the seed solved every lag up to T (at its better learning rate for each
    lag); a seed that solved none gets half the shortest lag tried, so that its log is finite (censored)."""
    rows = [r for r in recall if r["label"] == label]
    lags = sorted({r["seq_len"] for r in rows})
    out = {}
    for seed in sorted({r["seed"] for r in rows}):
        best = lags[0] / 2
        for T in lags:
            if not any(r["solved"] for r in rows if r["seed"] == seed and r["seq_len"] == T):
                break
            best = T
        out[seed] = best
    return out


def _solved_all(recall: list[dict], label: str) -> int:
    """Longest T solved in every seed at one learning rate, scanning T upward until a lag fails."""
    rows = [r for r in recall if r["label"] == label]
    best = 0
    for T in sorted({r["seq_len"] for r in rows}):
        if not any(all(r["solved"] for r in rows if r["seq_len"] == T and r["lr"] == lr)
                   for lr in {r["lr"] for r in rows if r["seq_len"] == T}):
            break
        best = T
    return best


def rnn_evidence(recall: list[dict], depth: list[dict], noresid: list[dict], race: list[dict],
                 lag_margin: float = LAG_MARGIN, rnn: str = "tanh RNN", carousel: str = "LSTM, no forget gate",
                 gated: str = "LSTM, forget bias 3") -> Evidence:
    labels = sorted({r["label"] for r in recall})
    longest = {label: _solved_all(recall, label) for label in labels}
    race_longest = {label: _solved_all(race, label) for label in sorted({r["label"] for r in race})}
    nr_blocks = max(r["n_blocks"] for r in noresid)
    nr = [r for r in noresid if r["n_blocks"] == nr_blocks]
    res = [r for r in depth if r["residual"] and r["n_blocks"] >= nr_blocks]
    plain_depth = [r for r in depth if not r["residual"]]
    lstm, tanh, _ = pair(_longest_per_seed(recall, carousel), _longest_per_seed(recall, rnn))
    fg, free, _ = pair(_longest_per_seed(race, gated), _longest_per_seed(race, carousel))
    best_nr = {}
    for r in nr:                                                 # the no-skip net at its best learning rate
        best_nr[r["seed"]] = min(best_nr.get(r["seed"], math.inf), r["train_loss"])
    placement = nr[0]["placement"]                               # the residual twin has the same LayerNorm placement
    nr_loss, res_loss, _ = pair(best_nr, by_seed([r for r in depth if r["residual"] and r["n_blocks"] == nr_blocks
                                                  and r["placement"] == placement], lambda r: r["train_loss"]))
    claims = {
        "carousel": (np.log2(lstm), np.log2(tanh), f"'{carousel}' solves longer recall lags than '{rnn}' (log2 T)",
                     {"margin": lag_margin, "fmt": ".1f", "unit": "log2 lag"}),
        "transformer": (nr_loss, res_loss, f"the {nr_blocks}-block Transformer without skips (best lr) ends above "
                        f"the residual {placement}-LN one (training loss)", {"fmt": ".2f", "unit": "nats"}),
        "forget": (np.log2(fg), np.log2(free),
                   f"in the fair race, '{gated}' solves longer recall lags than '{carousel}' (log2 T)",
                   {"margin": lag_margin, "fmt": ".1f", "unit": "log2 lag"})}
    numbers = {"tanh": longest.get(rnn, 0), "tanh128": longest.get("tanh RNN, width 128", 0),
               "lstm": longest.get(carousel, 0), "lstm_fg": longest.get("LSTM (forget gate)", 0),
               "linear": longest.get("linear attention", 0), "max_T": max(r["seq_len"] for r in recall),
               "linear_decay": longest.get("linear attention, decay 0.9", 0),
               "race_free": race_longest.get(carousel, 0), "race_gated": race_longest.get(gated, 0),
               "race_gru": race_longest.get("GRU", 0), "race_additive": race_longest.get("additive RNN", 0),
               "race_max_T": max(r["seq_len"] for r in race),
               "nr_blocks": nr_blocks, "nr_runs": len(nr), "nr_lrs": len({r["lr"] for r in nr}),
               "nr_stuck": sum(r["stuck"] for r in nr), "nr_best_loss": min(r["train_loss"] for r in nr),
               "res_runs": len(res), "res_trained": sum(not r["stuck"] for r in res),
               "res_worst_loss": max(r["train_loss"] for r in res),
               "plain_first_stuck": min(r["n_blocks"] for r in plain_depth if r["stuck"]), "lag_margin": lag_margin}

    def decide(d):
        c, t = d("carousel"), d("transformer")
        if c in (LOWER, EQUIVALENT) or t in (LOWER, EQUIVALENT):
            return WRONG
        if c == HIGHER and t == HIGHER:
            f = d("forget")
            return HOLDS if f == HIGHER else QUALIFIED if f in (LOWER, EQUIVALENT) else OPEN
        return OPEN

    def words(verdict, n, c):
        reason = {
            WRONG: "the additive paths do not separate the nets that learn from those that fail",
            QUALIFIED: ("the additive recurrences and the residual Transformers are the ones that learn, but not "
                        "because of the forget gate: in the fair race the gated cells reach no further than the "
                        "gate-free ones, on a task with nothing to forget; the addition, not the gate, carries the "
                        "signal"),
            HOLDS: ("the additive recurrences and the residual Transformers are the ones that learn, and the forget "
                    "gate carries the signal further"),
            OPEN: ("the additive cell's advantage over the tanh RNN, the stuck Transformer without skips, or the "
                   "gated cells' shorter reach in the fair race was not decided over these seeds")}[verdict]
        measure = (f"longest lag solved in every seed: {rnn} {n['tanh']}, LSTM without forget gate {n['lstm']} "
                   f"({p_words(c['carousel'])}); in the fair race to T = {n['race_max_T']}: without forget gate "
                   f"{n['race_free']}, gate-free additive RNN {n['race_additive']}, forget bias 3 "
                   f"{n['race_gated']}, GRU {n['race_gru']} ({p_words(c['forget'])}); {nr_blocks}-block "
                   f"Transformer without skips stuck in {n['nr_stuck']} of {n['nr_runs']} runs at {n['nr_lrs']} "
                   f"learning rates ({p_words(c['transformer'])})")
        return reason, measure

    tried = {label: max(r["seq_len"] for r in recall if r["label"] == label) for label in labels}
    race_tried = {label: max(r["seq_len"] for r in race if r["label"] == label) for label in race_longest}
    return Evidence("rnn", numbers, {"longest": longest, "tried": tried, "race": race_longest,
                                     "race_tried": race_tried}, claims, decide, words)


def judge_rnn(recall: list[dict], depth: list[dict], noresid: list[dict], race: list[dict],
              lag_margin: float = LAG_MARGIN, alpha: float = ALPHA) -> Verdict:
    """"Is it like an RNN?" and the replies: not plain RNNs; LSTM/GRU "because of their forget gate";
    Transformers use skips to train deeper networks.

    Contrasts, paired over seeds: the longest recall lag each seed solves (log2 T), the LSTM without forget gate
    (an additive cell, a skip along time) against the tanh RNN; the deepest no-skip Transformer at its best
    learning rate against the residual one of that depth (training loss); and, for the reply's reason, the fair
    race (every cell at the same lags, up to T = 100): the LSTM with forget bias 3 against the one without a forget
    gate. The GRU and the gate-free additive RNN of that race are reported beside it. Recall of the first token
    never rewards forgetting, so the race asks whether the gate is *needed* to carry a signal, not whether it helps
    where forgetting pays.

    Rule: *wrong* if either of the first two contrasts is detected in the other direction or equivalent (lags
    within ``lag_margin`` doublings); if both are detected, *holds, with a qualification* when the forget gate is
    detected to cost lags in the fair race or equivalent within ``lag_margin`` (the skip along time, not the gate,
    carries the signal), *holds* when the gate is detected to help; otherwise *open*.
    """
    return settle([rnn_evidence(recall, depth, noresid, race, lag_margin)], alpha, "rnn")[0]["rnn"]


# -- 6. "shouldn't 1 + 1 make everything messy?" ------------------------------------------------------------------
def messy_evidence(decode: dict, control: dict, n_blocks: int | None = None, kinds=("residual", "plain")
                   ) -> Evidence:
    rows = decode["runs"]
    n = max(r["n_blocks"] for r in rows) if n_blocks is None else n_blocks
    sum_kind, twin = kinds

    def read(d, what):
        if what in ("x0", "class"):
            return d["x0"] if what == "x0" else d["class_acc"]
        if what == "worst":
            return min(d["writes"])
        if what == "beyond":                            # each write from the stream minus from the input alone
            return float(np.mean(np.subtract(d["writes"], d["writes_from_x0"])))
        return float(np.mean(d["writes_from_x0" if what == "from_x0" else "writes"]))

    def probe(kind, what, runs=rows):
        sub = [r for r in runs if r["kind"] == kind and r["n_blocks"] == n]
        return by_seed(sub, lambda r: read(r["decode"][str(n)], what))

    x_s, x_t, seeds = pair(probe(sum_kind, "x0"), probe(twin, "x0"))
    beyond = probe(sum_kind, "beyond", control["runs"])
    b_seeds = sorted(beyond)
    claims = {"input": (x_s, x_t, f"after {n} blocks a linear probe reads more of the input from the {sum_kind} "
                        f"stream than from the {twin} twin (test R^2)", {"unit": "R^2"}),
              "beyond": (np.array([beyond[s] for s in b_seeds]), 0.0,
                         f"after {n} blocks a linear probe reads each block's write better from the {sum_kind} "
                         f"stream than from the input alone (test R^2, mean over blocks)", {"unit": "R^2"})}
    numbers = {"n_blocks": n, "seeds": len(seeds), "control_seeds": len(b_seeds),
               **{f"{kind}_{what}": median(list(probe(kind, what).values()))
                  for kind in ("residual", "plain", "dense") for what in ("x0", "worst", "class")},
               "residual_writes": median(list(probe(sum_kind, "writes", control["runs"]).values())),
               "residual_from_x0": median(list(probe(sum_kind, "from_x0", control["runs"]).values())),
               "residual_beyond": median(list(beyond.values()))}

    def decide(d):
        i, b = d("input"), d("beyond")
        if i == HIGHER and b == HIGHER:
            return WRONG
        return HOLDS if LOWER in (i, b) else OPEN

    def words(verdict, num, c):
        reason = {
            WRONG: ("the worry is unfounded as far as a linear read-out can tell: the input stays readable from "
                    "the sum, better than from a stack without it, and each block's write better than from the "
                    "input alone"),
            HOLDS: "the sum hides its terms more than a stack without one, or than the input alone, does",
            OPEN: ("that the sum keeps its terms more readable than a stack without one, and than the input "
                   "alone, was not decided over these seeds")}[verdict]
        measure = (f"after {n} blocks a linear probe reads {num['residual_x0']:.0%} of the input's variance from "
                   f"the residual stream against {num['plain_x0']:.0%} from the plain twin (higher in "
                   f"{c['input'].higher} of {c['input'].n} seeds; {p_words(c['input'])}), and a block's write "
                   f"with R^2 {num['residual_writes']:.2f} on average against {num['residual_from_x0']:.2f} from "
                   f"the input alone (higher in {c['beyond'].higher} of {c['beyond'].n} seeds; "
                   f"{p_words(c['beyond'])})")
        return reason, measure

    series = {kind: [numbers[f"{kind}_x0"], numbers[f"{kind}_worst"]] for kind in ("residual", "plain", "dense")}
    return Evidence("messy", numbers, series, claims, decide, words)


def judge_messy(decode: dict, control: dict, n_blocks: int | None = None, alpha: float = ALPHA) -> Verdict:
    """The original question: "Shouldn't they be different enough that a simple 1 + 1 addition will make
    everything messy?"

    Contrasts, on linear probes of the last stream of trained MLPs of ``n_blocks`` blocks (the deepest stored by
    default), test R^2: the input x_0 read from the residual stream (a sum) against its plain twin (no sum), paired
    by seed; and each block's write F_k read from the residual stream against F_k read from the input x_0 alone
    (``control``: the read-back's control sweep), mean over blocks, per seed. Comparative on purpose:
    an absolute R^2 threshold is passed by the plain twin too, and by any function of the input, since every F_k
    is one; a sum that only kept the input would read F_k no better than x_0 does.

    Rule: the worry is *wrong* (unfounded) if both contrasts are detected higher for the sum; it *holds* if either
    is detected lower; otherwise *open*.
    """
    return settle([messy_evidence(decode, control, n_blocks)], alpha, "messy")[0]["messy"]


#: Each rule's evidence from the stored sweeps, with its free constants as keyword arguments.
EVIDENCE = {
    "highway": lambda s, **kw: highway_evidence(s["highway_convergence"], s["highway_intervention"], **kw),
    "identity": lambda s, **kw: identity_evidence(s["identity_zero_gamma"], s["identity_zero_gamma_long"],
                                                  s["identity_fit_fair"], **kw),
    "overfitting": lambda s, **kw: overfitting_evidence(s["ensemble_gaps"], **kw),
    "noise": lambda s, **kw: noise_evidence(s["ensemble_noise"], **kw),
    "rnn": lambda s, **kw: rnn_evidence(s["transformers_recall"], s["transformers_depth"], s["transformers_noresid"],
                                        s["transformers_race"], **kw),
    "messy": lambda s, **kw: messy_evidence(s["identity_decode"], s["identity_decode_control"], **kw),
}


def _settled(stored: dict, alpha: float, constants: dict | None):
    constants = constants or {}
    return settle([EVIDENCE[k](stored, **constants.get(k, {})) for k in EVIDENCE], alpha, "the thread's claims")


def judge_all(stored: dict, alpha: float = ALPHA, constants: dict | None = None) -> dict[str, Verdict]:
    """Every verdict, in the order of the thread's claims, from one Holm family of all their contrasts;
    ``constants`` overrides a rule's free constants (``{"noise": {"m": 1}}``)."""
    return _settled(stored, alpha, constants)[0]


def verdict_family(stored: dict, alpha: float = ALPHA, constants: dict | None = None) -> Family:
    """The chapter's family of tests (``.table()`` prints it)."""
    return _settled(stored, alpha, constants)[1]


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
    def paired(key):                      # plain-20 and residual-20, matched by seed
        return pair(by_seed([r for r in hess if (r["depth"], r["residual"]) == (20, False)], lambda r: r[key]),
                    by_seed([r for r in hess if (r["depth"], r["residual"]) == (20, True)], lambda r: r[key]))[:2]
    lp, lr = paired("lam_max")
    rp, rr = paired("ratio")
    out = {
        "hess_seeds": len(lp),
        "hess_lmax_ratio_min": float((lp / lr).min()), "hess_lmax_ratio_max": float((lp / lr).max()),
        "hess_ratio_p20_above": int(np.sum(rp > rr)),
        "hess_ratio_p20_max": float(h(20, False, "ratio").max()),
        "hess_ratio_r20_max": float(h(20, True, "ratio").max()),
        "hess_ratio_r56_max": float(h(56, True, "ratio").max()),
        "len_trained": mean_len("residual-56"), "len_fresh_batch": mean_len("residual-56, fresh, batch statistics"),
        "len_fresh_off": mean_len("residual-56, fresh, BN off"), "len_typical": spectra["residual-56"][0]["n"] / 2,
        "cos_positive": float(np.mean(np.array(cos) > 0)), "cos_fresh_positive": float(np.mean(np.array(fresh) > 0)),
        "cos_positive_n": int((np.array(cos) > 0).sum()), "cos_n": len(cos),
        "len_trained_batch": mean_len("residual-56, trained, batch statistics")}
    out["short"] = short_cost(stored["ensemble_short"])
    return out


def short_cost(short: dict) -> dict:
    """Test accuracy of residual-56 trained normally against training through only k random blocks per step
    (the largest k stored, Veit's mildest cut), paired over seeds (:func:`skipnet.inference.compare`)."""
    ks = {int(label.split("=")[1].split()[0]): label for label in short if label.endswith("(paths)")}
    k = max(ks)
    normal, cut, seeds = pair(by_seed(short["normal"], lambda r: r["test_acc"]),
                              by_seed(short[ks[k]], lambda r: r["test_acc"]))
    c = compare(normal, cut, f"training through {k} random blocks per step costs test accuracy", scale=100,
                unit="points", fmt=".1f")
    return {"k": k, "normal": float(np.mean(normal)), "short": float(np.mean(cut)), "cost_points": 100 * c.mean,
            "p": c.p, "seeds": c.n, "outcome": c.outcome, "sentence": c.sentence}
