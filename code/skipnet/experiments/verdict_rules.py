"""The first three verdict rules of the closing chapter (``verdict``): the gradient highway, the identity argument
and "it is about overfitting". Each has an ``*_evidence`` function (its numbers and paired claims) and a
``judge_*`` function that decides it alone; :func:`skipnet.experiments.verdict.judge_all` decides all six in one
Holm family. The margins are the named constants of :mod:`skipnet.experiments.verdict_base`.
"""
from __future__ import annotations

import math

import numpy as np

from skipnet.experiments.ensemble_trials import interpolated_gap
from skipnet.experiments.verdict_base import (ALPHA, DEPTH_MARGIN, GAP_MARGIN, HOLDS, INT_RATIO, OPEN, QUALIFIED,
                                              SPEED_MARGIN, UNDERFIT_RATIO, WRONG, Evidence, Verdict, by_seed,
                                              median, pair, p_words, settle)
from skipnet.inference import EQUIVALENT, HIGHER, LOWER

__all__ = ["highway_evidence", "judge_highway", "identity_evidence", "judge_identity", "overfitting_evidence",
           "judge_overfitting"]


# -- 1. the gradient highway --------------------------------------------------------------------------------
def highway_evidence(convergence: list[dict], intervention: list[dict], target: float = 0.1, depth: int = 56,
                     speed_margin: float = SPEED_MARGIN, int_ratio: float = INT_RATIO) -> Evidence:
    keys = {float(k): k for r in convergence for k in r["steps_to"]}
    if target not in keys:
        raise ValueError(f"target must be one of the stored thresholds {sorted(keys)}, got {target!r}")
    key = keys[target]

    def rows(d, residual):
        return [r for r in convergence if r["depth"] == d and r["residual"] == residual]

    def censored(r):                       # a run that never reached the target counts as reaching it at the budget
        return r["budget"] if r["steps_to"].get(key) is None else r["steps_to"][key]

    depths = sorted({r["depth"] for r in convergence})
    steps = {}
    for residual in (False, True):
        steps["residual" if residual else "plain"] = [
            {"depth": d, "n": len(rows(d, residual)),
             "reached": sum(r["steps_to"].get(key) is not None for r in rows(d, residual)),
             "median": median([r["steps_to"][key] for r in rows(d, residual) if r["steps_to"].get(key) is not None])
             if any(r["steps_to"].get(key) is not None for r in rows(d, residual)) else None,
             "budget": max(r["budget"] for r in rows(d, residual))} for d in depths]
    at = {kind: next(s for s in steps[kind] if s["depth"] == depth) for kind in steps}
    plain, res, _ = pair(by_seed(rows(depth, False), censored), by_seed(rows(depth, True), censored))
    proj = {res_: by_seed([r for r in intervention if r["mode"] == "project" and r["residual"] == res_],
                          lambda r: r["epoch_loss"][-1]) for res_ in (False, True)}
    ip, ir, _ = pair(proj[False], proj[True])
    def ratio_gm(mode, residual):          # first-to-last layer gradient ratio over the last ten steps, geometric mean
        values = [r["ratio_last10"] for r in intervention if r["mode"] == mode and r["residual"] == residual]
        return float(np.exp(np.mean(np.log(values)))) if values else float("nan")
    numbers = {
        "target": target, "depth": depth, "budget": at["plain"]["budget"], "seeds": at["plain"]["n"],
        "plain_reached": at["plain"]["reached"], "res_reached": at["residual"]["reached"],
        "res_steps": at["residual"]["median"] if at["residual"]["median"] is not None else float("nan"),
        "speedup": float(10 ** np.mean(np.log10(plain) - np.log10(res))),
        "deepest_plain_all": max((s["depth"] for s in steps["plain"] if s["reached"] == s["n"]), default=0),
        "max_depth": max(depths), "res_steps_deepest": steps["residual"][-1]["median"] or float("nan"),
        "res_reached_deepest": steps["residual"][-1]["reached"], "seeds_deepest": steps["residual"][-1]["n"],
        "int_seeds": len(ip), "int_ratio": ratio_gm("project", False), "int_ratio_sgd_plain": ratio_gm("sgd", False),
        "int_ratio_sgd_res": ratio_gm("sgd", True),
        "int_plain_loss": median(ip), "int_res_loss": median(ir),
        "int_loss_ratio": float(10 ** np.mean(np.log10(ip) - np.log10(ir))),
        "speed_margin": speed_margin, "int_threshold": int_ratio}
    claims = {
        "speed": (np.log10(plain), np.log10(res), f"plain-{depth} needs more steps than residual-{depth} to a "
                  f"training loss of {target:g} (log10 steps, censored at the budget)",
                  {"margin": math.log10(speed_margin), "fmt": ".2f", "unit": "log10 steps"}),
        "intervention": (np.log10(ip) - math.log10(int_ratio), np.log10(ir), f"with a healthy gradient, plain-56 "
                         f"still ends more than {int_ratio:g}x above residual-56 (log10 loss minus "
                         f"log10 {int_ratio:g})", {"fmt": ".2f", "unit": "log10 loss"})}

    def decide(d):
        s = d("speed")
        if s == HIGHER:
            return QUALIFIED if d("intervention") == HIGHER else HOLDS
        return WRONG if s in (LOWER, EQUIVALENT) else OPEN

    def words(verdict, n, c):
        reason = {
            QUALIFIED: "residual nets reach the loss many times faster, and a plain net whose gradient does reach "
                       "its lowest layer still does not train within the budget: the skip speeds up optimization, it is not only a pipe",
            HOLDS: "residual nets reach the loss many times faster; that a healthy gradient alone is not enough "
                   "was not shown",
            WRONG: f"the plain net reaches the loss as fast (within {speed_margin:g}x) or faster",
            OPEN: f"the speed-up was not detected at the {c['speed'].alpha:.0%} level after Holm's correction"}[verdict]
        measure = (f"steps to a training loss of {target:g} at {depth} layers, plain over residual (censored at "
                   f"{n['budget']:,}): at least {n['speedup']:.0f}x (geometric mean, {c['speed'].higher} of "
                   f"{c['speed'].n} seeds slower; {p_words(c['speed'])})")
        return reason, measure

    return Evidence("highway", numbers, {"steps": steps}, claims, decide, words)


def judge_highway(convergence: list[dict], intervention: list[dict], target: float = 0.1, depth: int = 56,
                  speed_margin: float = SPEED_MARGIN, int_ratio: float = INT_RATIO, alpha: float = ALPHA) -> Verdict:
    """"Gradients flow easily from layer to layer, so very deep nets train."

    Deciding contrast: steps to a training loss of ``target`` at ``depth`` layers, plain against residual, paired
    over seeds in log10 steps; a run that never reached the target counts as reaching it at the budget (censored,
    which understates the speed-up). Qualification: plain-56 with its weights held at their initial norm (its
    gradient reaches the lowest layer) still ends more than ``int_ratio`` times above the residual net.

    Rule: *wrong* if the plain net is detected faster, or equivalent within ``speed_margin`` (TOST); if it is
    detected slower, *holds, with a qualification* when the intervention contrast is detected, else *holds*;
    otherwise *open*. A large speed-up is never "wrong".
    """
    return settle([highway_evidence(convergence, intervention, target, depth, speed_margin, int_ratio)],
                  alpha, "highway")[0]["highway"]


# -- 2. the identity-mapping argument ------------------------------------------------------------------------
def identity_evidence(zero_gamma: dict, zero_gamma_long: dict, fit_fair: dict,
                      depth_margin: float = DEPTH_MARGIN, depths=(20, 56)) -> Evidence:
    shallow, deep_d = depths

    def loss(rows, depth, init="standard"):
        return by_seed([r for r in rows if (r["depth"], r["init"]) == (depth, init)], lambda r: r["train_loss"])

    short, long = zero_gamma["runs"], zero_gamma_long["runs"]
    steps_short, steps_long = len(short[0]["loss"]), len(long[0]["loss"])          # one loss per step
    s56, s20, _ = pair(loss(short, deep_d), loss(short, shallow))
    l56, l20, _ = pair(loss(long, deep_d), loss(long, shallow))
    z56, z20, _ = pair(loss(long, deep_d, "zero_gamma"), loss(long, shallow, "zero_gamma"))

    fair = [r for r in fit_fair["runs"] if not r["lift"]]
    deep = max(r["n_blocks"] for r in fair)

    def best(residual, n):
        by_lr = {}
        for r in fair:
            if r["residual"] == residual and r["n_blocks"] == n:
                by_lr.setdefault(r["lr"], []).append(math.inf if r["rel_error"] is None else r["rel_error"])
        return min(median(v) for v in by_lr.values())

    numbers = {"steps_short": int(steps_short), "steps_long": int(steps_long),
               "short_20": median(s20), "short_56": median(s56), "short_wins": int(np.sum(s56 < s20)),
               "short_n": len(s56), "long_20": median(l20), "long_56": median(l56),
               "long_wins": int(np.sum(l56 < l20)), "long_n": len(l56), "long_wins_zg": int(np.sum(z56 < z20)),
               "long_56_zg": median(z56), "fit_blocks": deep, "fit_plain_1": best(False, 1),
               "fit_plain_deep": best(False, deep), "fit_res_deep": best(True, deep),
               "short_ratio": float(10 ** np.mean(np.log10(s56) - np.log10(s20))),
               "long_ratio": float(10 ** np.mean(np.log10(l56) - np.log10(l20))), "depth_margin": depth_margin,
               "short_err_max": max(r["train_err"] for r in short if r["init"] == "standard"
                                    and r["depth"] in depths)}
    claims = {
        "long": (np.log10(l56), np.log10(l20), f"residual-{deep_d} ends above residual-{shallow} after "
                 f"{steps_long} steps (log10 training loss)",
                 {"margin": math.log10(depth_margin), "unit": "log10 loss"}),
        "short": (np.log10(s56), np.log10(s20), f"residual-{deep_d} ends above residual-{shallow} after "
                  f"{steps_short} steps (log10 training loss)", {"unit": "log10 loss"})}

    def decide(d):
        long_ = d("long")
        if long_ == HIGHER:
            return WRONG
        if long_ in (LOWER, EQUIVALENT):
            return QUALIFIED if d("short") == HIGHER else HOLDS
        return OPEN

    def words(verdict, n, c):
        reason = {
            WRONG: "given the steps, the deeper residual network still fits worse",
            QUALIFIED: ("given the steps, the deeper network fits no worse; at a short budget its training loss is "
                        f"still higher, though both networks have fitted the training set (training error at most "
                        f"{n['short_err_max']:.1%})"),
            HOLDS: "the deeper residual network fits no worse at every budget measured",
            OPEN: "whether depth costs at the longer budget was not decided over these seeds"}[verdict]
        measure = (f"residual-{deep_d} / residual-{shallow} training loss (geometric mean of the per-seed ratios): "
                   f"{n['short_ratio']:.1f}x after "
                   f"{steps_short} steps; {n['long_ratio']:.2f}x after {steps_long}, lower in "
                   f"{c['long'].lower} of {c['long'].n} seeds ({p_words(c['long'])})")
        return reason, measure

    series = {"budgets": [int(steps_short), int(steps_long)],
              "res20": [numbers["short_20"], numbers["long_20"]], "res56": [numbers["short_56"], numbers["long_56"]]}
    return Evidence("identity", numbers, series, claims, decide, words)


def judge_identity(zero_gamma: dict, zero_gamma_long: dict, fit_fair: dict, depth_margin: float = DEPTH_MARGIN,
                   depths=(20, 56), alpha: float = ALPHA) -> Verdict:
    """"If the block learned nothing it would be the identity, so adding depth cannot make things worse."

    Deciding contrast: residual-56 against residual-20 (standard init), log10 training loss paired over seeds,
    after four times the chapter's budget; the same after the chapter's 110 steps for the qualification.

    Rule: *wrong* if residual-56 is detected above residual-20 at the long budget; if it is detected below, or
    equivalent within a factor ``depth_margin`` (TOST), *holds, with a qualification* when it is detected above at
    the short budget, else *holds*; otherwise *open*.
    """
    return settle([identity_evidence(zero_gamma, zero_gamma_long, fit_fair, depth_margin, depths)], alpha,
                  "identity")[0]["identity"]


# -- 3. "it is about overfitting" -----------------------------------------------------------------------------
def overfitting_evidence(gaps: dict, levels=(0.1, 0.05, 0.03, 0.02), depths=(8, 20), gap_margin: float = GAP_MARGIN,
                         underfit_ratio: float = UNDERFIT_RATIO, labels=("plain", "residual")) -> Evidence:
    plain_l, res_l = labels

    def final(label, key):
        return by_seed(gaps[label], lambda r: r["evals"][-1][key])

    deep = max(int(label.split("-")[1]) for label in gaps)
    pd_, rd_, _ = pair(final(f"{plain_l}-{deep}", "train_loss"), final(f"{res_l}-{deep}", "train_loss"))
    claims = {"underfit": (np.log10(pd_) - math.log10(underfit_ratio), np.log10(rd_),
                           f"{plain_l}-{deep} ends more than {underfit_ratio:g}x above {res_l}-{deep} in training "
                           f"loss (log10)", {"unit": "log10 loss"})}
    for d in depths:
        # the mean gap over the levels that every run of both twins reached, one number per seed
        ga = {lv: by_seed(gaps[f"{plain_l}-{d}"], lambda r, lv=lv: interpolated_gap(r["evals"], lv)) for lv in levels}
        gb = {lv: by_seed(gaps[f"{res_l}-{d}"], lambda r, lv=lv: interpolated_gap(r["evals"], lv)) for lv in levels}
        ok = [lv for lv in levels if None not in ga[lv].values() and None not in gb[lv].values()]
        a, b, _ = pair({s: np.mean([ga[lv][s] for lv in ok]) for s in ga[ok[0]]},
                       {s: np.mean([gb[lv][s] for lv in ok]) for s in gb[ok[0]]})
        claims[f"gap{d}"] = (a, b, f"at equal training loss ({len(ok)} levels), {plain_l}-{d}'s generalization "
                             f"gap is larger than {res_l}-{d}'s (nats)",
                             {"margin": gap_margin, "fmt": ".3f", "unit": "nats"})

    def mean_final(label, key):
        return float(np.mean(list(final(label, key).values())))

    numbers = {"deep": deep, "seeds": len(gaps[f"{plain_l}-{deep}"]),
               "plain_deep_loss": mean_final(f"{plain_l}-{deep}", "train_loss"),
               "res_deep_loss": mean_final(f"{res_l}-{deep}", "train_loss"),
               "plain_deep_test": mean_final(f"{plain_l}-{deep}", "test_acc"),
               "res_deep_test": mean_final(f"{res_l}-{deep}", "test_acc"),
               "underfit_ratio": float(10 ** np.mean(np.log10(pd_) - np.log10(rd_))),
               "matched_tests": len(depths), "matched_depths": " and ".join(str(d) for d in depths),
               "gap_margin": gap_margin, "underfit_threshold": underfit_ratio}
    gap_names = [f"gap{d}" for d in depths]

    def decide(d):
        u, g = d("underfit"), [d(x) for x in gap_names]
        if HIGHER in g and u != HIGHER:
            return HOLDS
        if u == HIGHER and all(x in (EQUIVALENT, LOWER) for x in g):
            return WRONG
        return OPEN

    def words(verdict, n, c):
        reason = {
            HOLDS: "at equal training loss the residual network generalizes better",
            WRONG: (f"the deep plain net underfits, it does not overfit; at equal training loss the generalization "
                    f"gaps differ by less than the {gap_margin:g}-nat equivalence margin"),
            OPEN: "the underfitting of the deep plain net, or the equivalence of the gaps, was not established",
        }[verdict]
        gaps_txt = "; ".join(f"{x[3:]} layers {c[x].effect} (TOST p {c[x].p_equiv:.3f})" for x in gap_names)
        measure = (f"{plain_l}-{deep} training loss {n['plain_deep_loss']:.2f} against {n['res_deep_loss']:.3f} "
                   f"({p_words(c['underfit'])}); gap difference at equal loss: {gaps_txt}")
        n["matched_min_p"] = min(c[x].p for x in gap_names)
        n["matched_max_p_equiv"] = max(c[x].p_equiv for x in gap_names)
        return reason, measure

    series = {label: {"train_loss": mean_final(label, "train_loss"),
                      "gap": float(np.mean([e["evals"][-1]["test_loss"] - e["evals"][-1]["train_loss"]
                                            for e in gaps[label]]))} for label in gaps}
    return Evidence("overfitting", numbers, series, claims, decide, words)


def judge_overfitting(gaps: dict, levels=(0.1, 0.05, 0.03, 0.02), depths=(8, 20), gap_margin: float = GAP_MARGIN,
                      underfit_ratio: float = UNDERFIT_RATIO, alpha: float = ALPHA) -> Verdict:
    """"It is about overfitting: a simple model that is good enough generalizes."

    Deciding contrasts, paired over seeds: plain-56's training loss more than ``underfit_ratio`` times
    residual-56's (underfitting, not overfitting); and, for each of ``depths``, the generalization gap of the plain
    and residual twins at equal training loss (the gap where the loss crosses each of ``levels``, averaged over
    the levels every run reached).

    Rule: *holds* if a plain gap is detected larger and the deep plain net is not detected to underfit; *wrong*
    only if it is detected to underfit and every gap difference is detected lower or equivalent within
    ``gap_margin`` nats (TOST: "the gaps do not differ" is never read from a large p); otherwise *open*.
    """
    return settle([overfitting_evidence(gaps, levels, depths, gap_margin, underfit_ratio)], alpha,
                  "overfitting")[0]["overfitting"]
