"""The claims of *An ensemble of relatively shallow paths*, over three seeds with wide margins.

The chapter's networks (residual-56 and plain-20, width 8, 10 epochs on the digits) are trained
once per seed for the whole module (about 10 s a seed on one idle core); the exact path spectra, the recalibrated
lesions, the branch replacements and the refinement cosines are measured on them (a few seconds a seed). Nothing here compares a live
training with a stored number bit for bit: on another CPU a seed is in effect another seed. The live nets
are checked against the claims the chapter draws, and against the span of the stored seeds (bands.py).
"""
from pathlib import Path

import numpy as np
import pytest

from bands import assert_in_seed_band
from skipnet.experiments import ensemble as E
from skipnet.experiments import ensemble_trials as T
from skipnet.probes.lesions import lesioned_accuracy, random_deletion_accuracies, recalibrated, \
    recalibrated_accuracy, single_deletion_accuracies
from skipnet.probes.replace import Replacer, refinement_cosines
from skipnet.store import load_result

DATA = Path(__file__).resolve().parents[1] / "book" / "data"
SEEDS = (0, 1, 2)
KS = list(range(0, 13))                     # where the residual curve does its falling
CHANCE = 0.1
ACC_FLOOR = 3 / 359                         # 359 test images: accuracies come in steps of 1/359

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nets(digits):
    return {seed: {"residual": E.train_net(56, True, seed=seed, data=digits),
                   "plain": E.train_net(20, False, seed=seed, data=digits)} for seed in SEEDS}


@pytest.fixture(scope="module")
def lesions(nets, digits):
    X, y = digits.X_test, digits.y_test
    out = {}
    for seed, pair in nets.items():
        out[seed] = {}
        for name, run in pair.items():
            single = single_deletion_accuracies(run.net, X, y)
            curve = random_deletion_accuracies(run.net, X, y, KS if name == "residual" else [0, 1, 2], 10, seed)
            out[seed][name] = {"intact": run.test_acc, "single": single, "means": np.array([c.mean() for c in curve])}
    return out


def test_both_networks_fit_the_digits(nets):
    for pair in nets.values():
        for run in pair.values():
            assert run.status == "finished" and run.train_loss < 0.1 and run.test_acc > 0.9, run.label


def test_live_nets_fall_inside_the_stored_seeds(lesions):
    """Intact accuracy and median single-deletion accuracy of each live seed, inside the band that the five
    stored seeds span (widened by their range on each side, bands.py), whatever CPU trained them."""
    stored = load_result(DATA / "ensemble_lesions.json")["data"]
    for name, label in (("residual", "residual-56"), ("plain", "plain-20")):
        runs = stored[label]
        for seed, d in lesions.items():
            live = d[name]
            assert_in_seed_band(live["intact"], [r["intact"] for r in runs], floor=ACC_FLOOR,
                                what=f"{label} seed {seed} intact accuracy")
            assert_in_seed_band(float(np.median(live["single"])), [np.median(r["single"]) for r in runs],
                                floor=ACC_FLOOR, what=f"{label} seed {seed} median single-deletion accuracy")


def test_residual_median_single_deletion_stays_within_a_few_points(lesions):
    for seed, d in lesions.items():
        r = d["residual"]
        assert np.median(r["single"]) >= r["intact"] - 0.03, seed
        assert np.mean(r["single"] >= r["intact"] - 0.02) >= 0.5, seed        # most single deletions cost <= 2 points


def test_plain_single_deletion_drops_to_near_chance(lesions):
    for seed, d in lesions.items():
        p = d["plain"]
        assert np.median(p["single"]) <= CHANCE + 0.15, seed
        assert p["intact"] - np.median(p["single"]) > 0.6, seed


def test_the_first_block_is_the_exception(lesions):
    for seed, d in lesions.items():
        r = d["residual"]
        assert r["single"][0] < np.median(r["single"]) - 0.03, seed


def test_residual_accuracy_falls_smoothly_with_k_while_plain_falls_off_a_cliff(lesions):
    for seed, d in lesions.items():
        r, p = d["residual"]["means"], d["plain"]["means"]
        steps = r[:-1] - r[1:]
        assert steps.max() < 0.4, (seed, np.round(r, 2))                 # no cliff between neighbouring k
        assert r[1] > r[0] - 0.1, seed                                      # one random deletion costs little
        assert r[-1] < r[0] - 0.2, seed                                     # ... but the blocks do matter
        assert p[0] - p[1] > 0.6, seed                                      # the plain net's cliff at k = 1


@pytest.fixture(scope="module")
def spectra(nets, digits):
    """Per seed: the exact spectrum of the trained residual-56, and of a fresh one with BatchNorm switched off
    (untrained running statistics), with batch statistics and with calibrated statistics; and Veit's sampled
    estimate for the trained net."""
    out = {}
    for seed, pair in nets.items():
        fresh = E.ENSEMBLE_MODEL.build(seed)
        out[seed] = {"trained": T.spectrum_study(pair["residual"].net, digits, seed),
                     "sampled": E.path_study(pair["residual"].net, digits, n_samples=3, seed=seed),
                     "off": T.spectrum_study(fresh, digits, seed),
                     "batch": T.spectrum_study(fresh, digits, seed, bn="batch"),
                     "calibrated": T.spectrum_study(fresh, digits, seed, calibrate=True)}
    return out


def test_the_trained_gradient_comes_from_short_paths(spectra):
    """Exact spectrum: the trained net's mean length is below 0.4 n/2 (stored seeds: 0.29-0.34 n/2), and paths
    shorter than n/2 carry more than 90 % of its gradient; the sum over lengths is autograd's gradient."""
    for seed, s in spectra.items():
        t = s["trained"]
        assert t.n == 27 and t.sum_error < 1e-4, (seed, t.sum_error)
        assert t.mean_length < 0.4 * t.n / 2, (seed, t.mean_length)
        assert sum(t.shares[:14]) > 0.9, seed
    stored = load_result(DATA / "ensemble_spectra.json")["data"]
    for seed, s in spectra.items():                 # each live seed inside the band of the stored ones (bands.py)
        for key, label in (("trained", "residual-56"), ("batch", "residual-56, fresh, batch statistics"),
                           ("off", "residual-56, fresh, BN off")):
            assert_in_seed_band(s[key].mean_length, [r["mean_length"] for r in stored[label]], floor=0.1,
                                what=f"{label} seed {seed} exact mean path length")


def test_veits_sampled_estimate_overstates_the_lengths(spectra):
    """Same-length paths partly cancel, so the sum of norms puts more weight on medium lengths than the exact
    spectrum (stored seeds: sampled 4.9-6.9, exact 3.9-4.6)."""
    for seed, s in spectra.items():
        assert s["sampled"].mean_length > s["trained"].mean_length + 0.3, (seed, s["sampled"].mean_length,
                                                                           s["trained"].mean_length)


def test_short_paths_are_half_built_in_by_batchnorm_and_half_learned(spectra):
    """A fresh residual-56 with BatchNorm as it trains (batch or calibrated statistics) already has a mean length
    between 0.45 and 0.75 n/2 (stored: about 0.6 n/2); with BN switched off (untrained running statistics make it
    the identity) it is more than 2 blocks longer (stored: about 4); training shortens it further, by more than 2."""
    for seed, s in spectra.items():
        n2 = s["trained"].n / 2
        for mode in ("batch", "calibrated"):
            assert 0.45 * n2 < s[mode].mean_length < 0.75 * n2, (seed, mode, s[mode].mean_length)
        assert s["off"].mean_length > s["batch"].mean_length + 2, (seed, s["off"].mean_length, s["batch"].mean_length)
        assert s["trained"].mean_length < s["batch"].mean_length - 2, seed


def test_block_1_costs_mostly_stale_statistics(nets, digits):
    """With BatchNorm recalibrated after the deletion, block 1 of residual-56 costs far less than as tested
    (stored seeds: 0.73-0.90 recalibrated, 0.24-0.72 as tested), while plain-20 stays far below intact."""
    X, y, calib = digits.X_test, digits.y_test, digits.X_train
    for seed, pair in nets.items():
        r, p = pair["residual"], pair["plain"]
        recal = recalibrated_accuracy(r.net, calib, X, y, [0])
        stale = lesioned_accuracy(r.net, X, y, [0])
        assert recal > 0.6 and recal > stale + 0.05, (seed, recal, stale)
        assert max(recalibrated_accuracy(p.net, calib, X, y, [i]) for i in (0, 4, 8)) < 0.5, seed


def test_another_images_branch_output_costs_more_than_none(nets, digits):
    """Useful noise on trial: with 6 random branches (never block 1) replaced, their output on another image leaves
    more than 0.03 less accuracy than deleting them (stored seeds: 0.09-0.34 less, mean over sets), and noise with
    their per-channel statistics is no better than deleting."""
    for seed, pair in nets.items():
        rep = Replacer(pair["residual"].net, digits.X_test, digits.y_test)
        out = rep.sweep([6], n_sets=10, seed=seed, exclude=(0,))
        delete, other, noise = (np.mean(out[v][0]) for v in ("delete", "other image", "noise"))
        assert other < delete - 0.03, (seed, delete, other)
        assert noise < delete + 0.01, (seed, delete, noise)


def test_trained_blocks_point_downhill_and_fresh_ones_do_not(nets, digits):
    """The refinement diagnostic: cos(branch, -dL/dz) > 0 in at least 90 % of the trained net's blocks, larger in
    the last stage than in the first; a fresh net's (calibrated BN) are near zero and mostly negative (stored: mean
    -0.02, 4 % positive)."""
    X, y = digits.X_test, digits.y_test
    for seed, pair in nets.items():
        cos = refinement_cosines(pair["residual"].net, X, y)
        assert np.mean(cos > 0) >= 0.9 and cos[18:].mean() > cos[:9].mean(), (seed, np.round(cos, 3))
        fresh, _ = recalibrated(E.ENSEMBLE_MODEL.build(seed), digits.X_train)
        c0 = refinement_cosines(fresh, X, y)
        assert c0.mean() < 0.01 and np.mean(c0 > 0) < 0.5 and cos.mean() > c0.mean() + 0.03, (seed, c0)
