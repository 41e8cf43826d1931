"""The claims of *An ensemble of relatively shallow paths*, over three seeds with wide margins.

The chapter's networks (residual-56 and plain-20, width 8, 10 epochs on the digits) are trained
once per seed for the whole module (about 10 s a seed on one idle core). Nothing here compares a live
training with a stored number bit for bit: on another CPU a seed is in effect another seed. The live nets
are checked against the claims the chapter draws, and against the span of the stored seeds (bands.py).
"""
from pathlib import Path

import numpy as np
import pytest

from bands import assert_in_seed_band
from skipnet.experiments import ensemble as E
from skipnet.models import build_model
from skipnet.probes.lesions import random_deletion_accuracies, single_deletion_accuracies
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
def path_studies(nets, digits):
    """Per seed: the path study of the trained residual-56 and of the same net at initialization."""
    return {seed: {"trained": E.path_study(pair["residual"].net, digits, n_samples=4, seed=seed),
                   "fresh": E.path_study(build_model(E.DEFAULT_MODEL, seed=seed).eval(), digits, n_samples=3,
                                         seed=seed)}
            for seed, pair in nets.items()}


def test_gradient_weighted_path_length_is_well_below_half_the_blocks(path_studies):
    for seed, s in path_studies.items():
        study = s["trained"]
        assert study.n == 27
        assert study.mean_length < 0.6 * study.n / 2, (seed, study.mean_length)
        assert sum(study.weights[:14]) > 0.9, seed                           # paths shorter than n/2 carry > 90 %


def test_short_paths_are_learned_not_built_in(path_studies):
    """At initialization the gradient-weighted mean length is close to n/2 (every branch passes the
    gradient on about as well as a skip); training is what makes the short paths dominate: the trained
    net's mean length is well below the fresh one's, seed by seed (a probe that mirrored k and n - k would
    put the trained net above it)."""
    for seed, s in path_studies.items():
        fresh, trained = s["fresh"], s["trained"]
        assert 0.8 * fresh.n / 2 < fresh.mean_length < 1.2 * fresh.n / 2, (seed, fresh.mean_length)
        assert trained.mean_length < fresh.mean_length - 0.2 * fresh.n / 2, (seed, trained.mean_length,
                                                                              fresh.mean_length)
