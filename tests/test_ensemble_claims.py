"""The claims of *An ensemble of relatively shallow paths*, over three seeds with wide margins.

The chapter's networks (residual-56 and plain-20, width 8, 10 epochs on the digits) are trained
once per seed for the whole module (about 10 s a seed on one idle core); the exact path spectra, the recalibrated
lesions, the branch replacements and the refinement cosines are measured on them (a few seconds a seed).

Training is chaotic: on another CPU (or under another ``ATEN_CPU_CAPABILITY``) a seed is in effect another seed. So
nothing here compares a live training with a stored number bit for bit, and no distributional claim is asserted seed
by seed: each claim is held over the live seeds (the mean of the per-seed values, :func:`over_seeds`), or a live
value (one seed's, or the mean over the live seeds) is held to the span of the stored seeds (bands.py). Only what no
seed can change (exact sums, invariants, untrained nets) is checked per seed.
"""
from pathlib import Path

import numpy as np
import pytest

from bands import assert_in_seed_band
from skipnet.experiments import ensemble as E
from skipnet.experiments import ensemble_trials as T
from skipnet.probes.lesions import LesionEvaluator, lesioned_accuracy, random_deletion_accuracies, recalibrated, \
    recalibrated_accuracy, single_deletion_accuracies
from skipnet.probes.replace import refinement_cosines
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


def over_seeds(values) -> float:
    """A claim's statistic over the live seeds: the mean of the per-seed values."""
    return float(np.mean(list(values)))


def test_both_networks_fit_the_digits(nets):
    """Every live run finishes; over the live seeds the training loss is below 0.1 and the test accuracy above 0.9
    (live seeds on three CPU capabilities: losses 0.002-0.018, accuracies 0.958-0.986)."""
    for name in ("residual", "plain"):
        runs = [pair[name] for pair in nets.values()]
        assert all(run.status == "finished" for run in runs), name
        assert over_seeds(run.train_loss for run in runs) < 0.1, name
        assert over_seeds(run.test_acc for run in runs) > 0.9, name


def test_live_nets_fall_inside_the_stored_seeds(lesions):
    """Each live seed's intact accuracy, and the live seeds' mean median single-deletion accuracy, inside the band that
    the five stored seeds span (widened by their range on each side, bands.py), whatever CPU trained them. The median
    is held over seeds: plain-20's sits at chance, where a single seed strays (0.053 under ATEN_CPU_CAPABILITY=default,
    seed 1, against stored 0.095-0.123) while the mean over seeds does not."""
    stored = load_result(DATA / "ensemble_lesions.json")["data"]
    for name, label in (("residual", "residual-56"), ("plain", "plain-20")):
        runs = stored[label]
        for seed, d in lesions.items():
            assert_in_seed_band(d[name]["intact"], [r["intact"] for r in runs], floor=ACC_FLOOR,
                                what=f"{label} seed {seed} intact accuracy")
        assert_in_seed_band(over_seeds(np.median(d[name]["single"]) for d in lesions.values()),
                            [np.median(r["single"]) for r in runs], floor=ACC_FLOOR,
                            what=f"{label} median single-deletion accuracy, mean over the live seeds")


def test_residual_median_single_deletion_stays_within_a_few_points(lesions):
    """Over the live seeds: the median single deletion costs at most 3 points, and most single deletions at most 2
    (stored seeds: median 0.3-0.8 points below intact, 70-85 % of the blocks within 2 points)."""
    res = [d["residual"] for d in lesions.values()]
    assert over_seeds(np.median(r["single"]) - r["intact"] for r in res) >= -0.03
    assert over_seeds(np.mean(r["single"] >= r["intact"] - 0.02) for r in res) >= 0.5


def test_plain_single_deletion_drops_to_near_chance(lesions):
    plain = [d["plain"] for d in lesions.values()]
    assert over_seeds(np.median(p["single"]) for p in plain) <= CHANCE + 0.15
    assert over_seeds(p["intact"] - np.median(p["single"]) for p in plain) > 0.6


def test_the_first_block_is_the_exception(lesions):
    """Deleting block 1 costs more than the median deletion (stored seeds: 25-74 points more)."""
    assert over_seeds(d["residual"]["single"][0] - np.median(d["residual"]["single"]) for d in lesions.values()) < -0.03


def test_residual_accuracy_falls_smoothly_with_k_while_plain_falls_off_a_cliff(lesions):
    """The curves the chapter plots, averaged over the live seeds: no step between neighbouring k of the residual
    curve as large as 0.4 (single stored seeds reach 0.37, where block 1 first enters the random sets), while the plain
    net loses more than 0.6 at k = 1."""
    r = np.mean([d["residual"]["means"] for d in lesions.values()], axis=0)
    p = np.mean([d["plain"]["means"] for d in lesions.values()], axis=0)
    steps = r[:-1] - r[1:]
    assert steps.max() < 0.4, np.round(r, 2)                          # no cliff between neighbouring k
    assert r[1] > r[0] - 0.1                                            # one random deletion costs little
    assert r[-1] < r[0] - 0.2                                           # ... but the blocks do matter
    assert p[0] - p[1] > 0.6                                            # the plain net's cliff at k = 1


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
    """Exact spectrum: the sum over lengths is autograd's gradient (every seed); over the live seeds the trained
    net's mean length is below 0.4 n/2 (stored seeds: 0.27-0.33 n/2) and paths shorter than n/2 carry more than
    90 % of its gradient; each live seed's mean length inside the band of the stored ones (bands.py)."""
    for seed, s in spectra.items():
        t = s["trained"]
        assert t.n == 27 and t.sum_error < 1e-4, (seed, t.sum_error)
    assert over_seeds(s["trained"].mean_length for s in spectra.values()) < 0.4 * 27 / 2
    assert over_seeds(sum(s["trained"].shares[:14]) for s in spectra.values()) > 0.9
    stored = load_result(DATA / "ensemble_spectra.json")["data"]
    for seed, s in spectra.items():                 # each live seed inside the band of the stored ones (bands.py)
        for key, label in (("trained", "residual-56"), ("batch", "residual-56, fresh, batch statistics"),
                           ("off", "residual-56, fresh, BN off")):
            assert_in_seed_band(s[key].mean_length, [r["mean_length"] for r in stored[label]], floor=0.1,
                                what=f"{label} seed {seed} exact mean path length")


def test_veits_sampled_estimate_overstates_the_lengths(spectra):
    """Same-length paths partly cancel, so the sum of norms puts more weight on medium lengths than the exact
    spectrum: over the live seeds the sampled mean length exceeds the exact one by more than 0.3 (stored seeds:
    by 1.1-2.4), and it lies in the band of the stored sampled estimates (4.9-6.9; a mirrored estimate, k for n - k,
    would overstate far more)."""
    assert over_seeds(s["sampled"].mean_length - s["trained"].mean_length for s in spectra.values()) > 0.3
    stored = load_result(DATA / "ensemble_paths.json")["data"]["residual-56"]
    assert_in_seed_band(over_seeds(s["sampled"].mean_length for s in spectra.values()),
                        [r["mean_length"] for r in stored], what="Veit's sampled mean length, mean over the live seeds")


def test_short_paths_are_half_built_in_by_batchnorm_and_half_learned(spectra):
    """A fresh residual-56 with BatchNorm as it trains (batch or calibrated statistics) already has a mean length
    between 0.45 and 0.75 n/2 (stored: about 0.6 n/2); with BN switched off (untrained running statistics make it
    the identity) it is more than 2 blocks longer (stored: about 4). These nets are untrained, the same on every CPU
    up to rounding: checked per seed. Training shortens the length further, by more than 2 over the live seeds."""
    for seed, s in spectra.items():
        n2 = s["trained"].n / 2
        for mode in ("batch", "calibrated"):
            assert 0.45 * n2 < s[mode].mean_length < 0.75 * n2, (seed, mode, s[mode].mean_length)
        assert s["off"].mean_length > s["batch"].mean_length + 2, (seed, s["off"].mean_length, s["batch"].mean_length)
    assert over_seeds(s["batch"].mean_length - s["trained"].mean_length for s in spectra.values()) > 2


def test_block_1_costs_mostly_stale_statistics(nets, digits):
    """With BatchNorm recalibrated after the deletion, block 1 of residual-56 costs far less than as tested, over the
    live seeds (stored seeds: 0.73-0.90 recalibrated, 0.24-0.72 as tested, 16-66 points gained), while plain-20 stays
    far below intact (stored: at most 0.36 for blocks 1, 5 and 9)."""
    X, y, calib = digits.X_test, digits.y_test, digits.X_train
    recal, stale, plain = [], [], []
    for seed, pair in nets.items():
        r, p = pair["residual"], pair["plain"]
        recal.append(recalibrated_accuracy(r.net, calib, X, y, [0]))
        stale.append(lesioned_accuracy(r.net, X, y, [0]))
        plain.append(max(recalibrated_accuracy(p.net, calib, X, y, [i]) for i in (0, 4, 8)))
    assert over_seeds(recal) > 0.6 and over_seeds(np.subtract(recal, stale)) > 0.05, (recal, stale)
    assert over_seeds(plain) < 0.5, plain


@pytest.fixture(scope="module")
def replacements(nets, digits):
    """Per seed: the chapter's noise study of the trained residual-56, 6 random branches (never block 1) replaced,
    10 sets (what ensemble_noise.json stores under "no_first" at m = 6)."""
    return {seed: T.noise_study(pair["residual"].net, digits, [6], n_sets=10, seed=seed, exclude_first=True)
            for seed, pair in nets.items()}


def test_another_images_branch_output_costs_more_than_none(replacements, nets, digits):
    """Useful noise on trial, over the live seeds. For each replacement (another image's branch output, matched
    noise, the channel mean), the live mean over seeds of its accuracy minus deletion's, on the same sets, lies inside
    the band of the stored seeds' differences (bands.py; stored: other image 9-34 points below deletion, noise 3-21
    below, channel mean 0-5 below), and so does matched noise minus another image (stored: -1 to +13 points: the
    noise curve lies between the other two). Both sides are bounded: another image's output that did no harm (as if
    it were the same image) falls outside, and so does noise twice as strong as its statistics say.

    The chapter's verdict on the direction is a paired test over the five stored seeds (verdict.judge_noise;
    test_ensemble_stored.py). Live seeds cannot carry it: on this project's CPU, under three capabilities, another
    image's output scored from 0.23 below to 0.02 above deletion, seed by seed, and the paired test over five live
    seeds gave p = 0.11 (default) and 0.15 (avx512) where the stored seeds give 0.02.

    Deletion itself is checked exactly: "delete" is the lesion evaluator's accuracy on the same sets."""
    X, y = digits.X_test, digits.y_test
    for seed, out in replacements.items():
        sets = out["sets"][0]
        assert out["ms"] == [6] and len(sets) == 10 and all(len(s) == 6 and 0 not in s for s in sets), seed
        ev = LesionEvaluator(nets[seed]["residual"].net, X, y)
        assert out["delete"][0] == [ev.accuracy(s) for s in sets], seed
        assert out["intact"] == ev.intact, seed
    stored = load_result(DATA / "ensemble_noise.json")["data"]["residual-56"]
    j = stored[0]["no_first"]["ms"].index(6)
    for variant, base in (("other image", "delete"), ("noise", "delete"), ("channel mean", "delete"),
                          ("noise", "other image")):
        live = over_seeds(np.mean(out[variant][0]) - np.mean(out[base][0]) for out in replacements.values())
        assert_in_seed_band(live, [np.mean(r["no_first"][variant][j]) - np.mean(r["no_first"][base][j])
                                   for r in stored], what=f"mean over live seeds of ({variant} - {base}), m = 6")


def test_trained_blocks_point_downhill_and_fresh_ones_do_not(nets, digits):
    """The refinement diagnostic: over the live seeds cos(branch, -dL/dz) > 0 in at least 90 % of the trained net's
    blocks and larger in the last stage than in the first (stored: every block positive); a fresh net's (calibrated
    BN, untrained: checked per seed) are near zero and mostly negative (stored: mean -0.02, 4 % positive)."""
    X, y = digits.X_test, digits.y_test
    share, late, gain = [], [], []
    for seed, pair in nets.items():
        cos = refinement_cosines(pair["residual"].net, X, y)
        fresh, _ = recalibrated(E.ENSEMBLE_MODEL.build(seed), digits.X_train)
        c0 = refinement_cosines(fresh, X, y)
        assert c0.mean() < 0.01 and np.mean(c0 > 0) < 0.5, (seed, c0)
        share.append(np.mean(cos > 0))
        late.append(cos[18:].mean() - cos[:9].mean())
        gain.append(cos.mean() - c0.mean())
    assert over_seeds(share) >= 0.9 and over_seeds(late) > 0 and over_seeds(gain) > 0.03, (share, late, gain)
