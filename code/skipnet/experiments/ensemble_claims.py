"""The claims of the chapter *An ensemble of relatively shallow paths*, over the stored seeds, through the inference
protocol (:mod:`skipnet.inference`): the records of every ensemble sweep (exploratory or, by tag, confirmatory),
the chapter's family of tests, the small family declared in advance for the claims the main page rests on, and the
number of seeds a confirmation needs for each. Pure functions of the stored records.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from skipnet.experiments.ensemble_trials import interpolated_gap
from skipnet.inference import ALPHA, Family, min_p
from skipnet.store import load_sweep

__all__ = ["ENSEMBLE_SWEEPS", "TRUNC_MARGIN", "GAP_MARGIN", "MEAN_MARGIN", "GAP_LEVELS", "ensemble_records",
           "kept_by_random_blocks", "stratified_two", "survival", "predicted_mean_length", "PRIMARY", "seeds_needed",
           "ensemble_primary_family", "ensemble_family"]

# -- the chapter's claims over the stored seeds, through the inference protocol -------------------------------------
ENSEMBLE_SWEEPS = ("lesions", "paths", "streams", "gaps", "spectra", "recal", "noise", "short", "members",
                   "truncated")
TRUNC_MARGIN = 0.01      # accuracy: "training on paths of at most K branches costs nothing" within 1 point
GAP_MARGIN = 0.02        # nats: a 2 % change in the per-digit test likelihood (exp(0.02) = 1.02), the tolerance for
                         # "equal gaps"; not chosen blind: it is also about half the stored end-of-training difference
MEAN_MARGIN = 0.02       # accuracy: "the channel mean is as good as deleting" within 2 points
GAP_LEVELS = (0.3, 0.2, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01, 0.007, 0.005)


def ensemble_records(tag: str | None = None) -> dict:
    """Every stored ensemble sweep as ``{sweep: {label: [records sorted by seed]}}`` (``tag``: e.g. the
    confirmation on fresh seeds, read by the same analysis)."""
    return {name: {label: sorted(rs, key=lambda r: r["seed"])
                   for label, rs in load_sweep(f"ensemble_{name}", tag)["data"].items()} for name in ENSEMBLE_SWEEPS}


def kept_by_random_blocks(norms: Sequence[float], k: int) -> float:
    """Share of sum_j ||G_j|| that training through k random blocks of n keeps in expectation: a path of length j
    survives a step only if all j of its branches are drawn, with probability C(n - j, k - j) / C(n, k)."""
    norms = np.asarray(norms, dtype=np.float64)
    n = len(norms) - 1
    keep = np.array([math.comb(n - j, k - j) / math.comb(n, k) if j <= k else 0.0 for j in range(n + 1)])
    return float((keep * norms).sum() / norms.sum())


def stratified_two(k_accs: Sequence, k_sets: Sequence, blocks=(0, 1)) -> tuple[list[float], list[int]]:
    """k-deletion accuracy pooled over seeds on the deleted sets that contain none of ``blocks`` (mean per k, NaN
    where none), with the number of such sets per k. ``k_accs`` / ``k_sets``: per seed, per k, per set."""
    means, counts = [], []
    for j in range(len(k_accs[0])):
        accs = [a for seed_a, seed_s in zip(k_accs, k_sets) for a, s in zip(seed_a[j], seed_s[j])
                if not set(blocks) & set(s)]
        means.append(float(np.mean(accs)) if accs else float("nan"))
        counts.append(len(accs))
    return means, counts


def survival(n_blocks: int, drop_prob: float) -> np.ndarray:
    """Stochastic depth's survival probability of each block (as built in :mod:`skipnet.models`): linear from
    1 - drop_prob / n at the first block to 1 - drop_prob at the last; at test time each branch is scaled by it."""
    return 1.0 - drop_prob * np.arange(1, n_blocks + 1) / n_blocks


def predicted_mean_length(gains: Sequence[float], scale: Sequence[float] | None = None) -> float:
    """Mean path length of the gains prediction (``gains_prediction``: sum_l r_l / (1 + r_l)), with each gain
    divided by ``scale`` first (stochastic depth's survival probabilities undo its test-time scaling of the
    branches, to first order: the forward pass is not recomputed)."""
    r = np.asarray(gains, dtype=np.float64)
    if scale is not None:
        r = r / np.asarray(scale, dtype=np.float64)
    return float(np.sum(r / (1.0 + r)))


# The claims the main page rests on, declared before the confirmation: Holm within these few, a confirmation on
# seeds_needed(len(PRIMARY)) fresh seeds can decide every one (the full family above needs more).
# Every sentence of the main page's answer in brief that compares conditions over seeds is one of these rows: the
# lesion gap at equal depth (residual-20 minus plain-20; plain-56 does not fit its training set, so no equal-depth
# pair at 56), the fit at depth 56, the mean path length, training on paths of at most four and one branch, the
# matched-loss gap early in training (0.3, the level the brief states), another image's output.
PRIMARY = ("single20", "fit56", "spectrum", "trunc K=4", "trunc K=1", "gap20_0.3", "other20")


def seeds_needed(m: int, alpha: float | None = None) -> int:
    """The fewest seeds with which every one of ``m`` Holm-adjusted exact sign-flip tests could reach ``alpha``:
    the smallest n with min_p(n) * m < alpha (the smallest adjusted p is m times the smallest raw p)."""
    alpha = ALPHA if alpha is None else alpha
    n = 2
    while min_p(n) * m >= alpha:
        n += 1
    return n


def ensemble_primary_family(rec: dict, keys: Sequence[str] = PRIMARY):
    """The main page's claims (``PRIMARY``) as their own family, Holm-adjusted within these few: the same paired
    differences, margins and wording as in :func:`ensemble_family`."""
    full = ensemble_family(rec).results()
    fam = Family("ensemble, main page")
    for k in keys:
        c = full[k]
        fam.add(k, list(c.differences), 0.0, c.claim, margin=c.margin, scale=c.scale, unit=c.unit, fmt=c.fmt)
    return fam


def ensemble_family(rec: dict):
    """The chapter's family of paired claims over the stored seeds (``rec`` from :func:`ensemble_records`),
    Holm-adjusted within the chapter (:class:`skipnet.inference.Family`)."""
    fam = Family("ensemble")
    pts = dict(scale=100, unit="points", fmt=".1f")
    les, rc, sh, sp, gp, nz = (rec[k] for k in ("lesions", "recal", "short", "spectra", "gaps", "noise"))
    fam.add("single", [np.median(r["single"]) for r in les["residual-56"]],
            [np.median(r["single"]) for r in les["plain-20"]],
            "one block deleted, median accuracy: residual-56 minus plain-20", **pts)
    fam.add("single20", [np.median(r["single"]) for r in les["residual-20"]],
            [np.median(r["single"]) for r in les["plain-20"]],
            "one block deleted, median accuracy: residual-20 minus plain-20 (equal depth)", **pts)
    fam.add("b1_recal", [r["single_recal"][0] for r in rc["residual-56"]], [r["single"][0] for r in rc["residual-56"]],
            "residual-56, block 1 deleted: recalibrated minus stale BatchNorm", **pts)
    fam.add("b2_cost", [r["intact"] for r in les["residual-56"]], [r["single"][1] for r in les["residual-56"]],
            "residual-56: intact minus block 2 deleted (stale BatchNorm)", **pts)
    fam.add("spectrum", [r["mean_length"] for r in sp["residual-56"]], 13.5,
            "residual-56 trained: exact gradient-weighted mean path length minus 13.5", unit="blocks", fmt=".1f")
    fam.add("spectrum_init", [r["mean_length"] for r in sp["residual-56, trained, batch statistics"]],
            [r["mean_length"] for r in sp["residual-56, fresh, batch statistics"]],
            "mean path length, both with batch statistics: trained minus fresh", unit="blocks", fmt=".1f")
    sdsp = sp["residual-56 (drop 0.5)"]
    fam.add("sd_spectrum", [r["mean_length"] for r in sdsp], [r["mean_length"] for r in sp["residual-56"]],
            "exact mean path length (eval mode): stochastic depth minus ordinary residual-56", unit="blocks", fmt=".1f")
    keep = survival(len(sdsp[0]["gains"]), 0.5)
    fam.add("sd_gains", [predicted_mean_length(r["gains"], keep) for r in sdsp],
            [predicted_mean_length(r["gains"]) for r in sp["residual-56"]],
            "gains-predicted mean length, test-time scaling divided out: stochastic depth minus ordinary",
            unit="blocks", fmt=".1f")
    acc = {k: [r["test_acc"] for r in v] for k, v in sh.items()}
    for key, label in (("short13", "k=13 (paths)"), ("short7", "k=7 (paths)"), ("short3", "k=3 (paths)"),
                       ("update7", "k=7 (updates)")):
        fam.add(key, acc["normal"], acc[label], f"test accuracy: normal minus {label}", **pts)
    sd, r56 = les["residual-56 (drop 0.5)"], les["residual-56"]
    for label in rec.get("truncated", {}):
        if label != "normal":
            fam.add(f"trunc {label}", [r["test_acc"] for r in rec["truncated"]["normal"]],
                    [r["test_acc"] for r in rec["truncated"][label]],
                    f"test accuracy: normal minus trained on paths of at most {label[2:]}", margin=TRUNC_MARGIN, **pts)
    fam.add("sd_intact", [r["intact"] for r in sd], [r["intact"] for r in r56],
            "intact accuracy: stochastic depth minus ordinary residual-56", **pts)
    fam.add("sd_deletion", [np.mean([np.mean(a) for a in r["k_accs"][1:17]]) for r in sd],
            [np.mean([np.mean(a) for a in r["k_accs"][1:17]]) for r in r56],
            "accuracy over 1 to 16 random deletions: stochastic depth minus ordinary", **pts)

    def gap(label):
        return [r["evals"][-1]["test_loss"] - r["evals"][-1]["train_loss"] for r in gp[label]]
    fit = {label: [r["evals"][-1]["train_loss"] for r in gp[label]] for label in ("plain-56", "residual-56")}
    fam.add("fit56", fit["plain-56"], fit["residual-56"], "end of training, training loss: plain-56 minus residual-56",
            unit="nats", fmt=".2f")
    for d in (8, 20):
        fam.add(f"gap{d}", gap(f"plain-{d}"), gap(f"residual-{d}"),
                f"end of training, gap (test - train loss): plain-{d} minus residual-{d}", unit="nats", fmt=".3f")
        for lv in GAP_LEVELS:
            a = [interpolated_gap(r["evals"], lv) for r in gp[f"plain-{d}"]]
            b = [interpolated_gap(r["evals"], lv) for r in gp[f"residual-{d}"]]
            if None in a or None in b:
                continue
            fam.add(f"gap{d}_{lv}", a, b, f"at train loss {lv}: gap of plain-{d} minus residual-{d}",
                    margin=GAP_MARGIN, unit="nats", fmt=".3f")

    def rep(label, variant, m):
        j = nz[label][0]["no_first"]["ms"].index(m)
        return [np.mean(r["no_first"][variant][j]) for r in nz[label]]
    for key, label, m in (("56", "residual-56", 6), ("20", "residual-20", 2)):
        fam.add(f"other{key}", rep(label, "delete", m), rep(label, "other image", m),
                f"{label}, {m} branches (block 1 kept): deleted minus another image's output", **pts)
        fam.add(f"noise{key}", rep(label, "delete", m), rep(label, "noise", m),
                f"{label}, {m} branches (block 1 kept): deleted minus matched noise", **pts)
        fam.add(f"mean{key}", rep(label, "delete", m), rep(label, "channel mean", m),
                f"{label}, {m} branches (block 1 kept): deleted minus channel mean", margin=MEAN_MARGIN, **pts)
    fam.add("cosine", [np.mean(r["cos"]) for r in nz["residual-56"]],
            [np.mean(r["cos"]) for r in nz["residual-56, fresh"]],
            "mean cos(branch, -gradient): trained minus fresh residual-56", fmt=".3f")
    return fam
