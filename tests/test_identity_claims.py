"""The claims of *The identity mapping*, over at least three seeds with wide margins.

Two kinds of check: live trainings over three seeds (the identity fit, the branch initializations
without normalization, the trained branches of residual-56), and the precomputed five-seed sweeps in
``book/data/identity_*.json`` that the chapter reads. A live run is compared with a stored sweep only
through the band its seeds span (``tests/bands.py``): on another CPU a seed is, in effect, another seed."""
from pathlib import Path

import numpy as np
import pytest

from skipnet.experiments import identity as ie
from skipnet.experiments import identity_variants as iv
from skipnet.probes.branches import branch_stats
from skipnet.store import load_result

from bands import assert_in_seed_band

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2)
DATA = Path(__file__).resolve().parents[1] / "book" / "data"
SCALED = ("scale", "scale_both", "exclusive_gate_0", "shortcut_gate_0", "dropout")


def stored(name: str) -> dict:
    return load_result(DATA / f"identity_{name}.json")


# -- learning the identity -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fits8():
    return {seed: {res: ie.fit_identity(8, res, seed) for res in (False, True)} for seed in SEEDS}


def test_residual_stack_learns_the_identity_far_better_than_the_plain_one(fits8):
    for seed, pair in fits8.items():
        plain, res = (ie.final_rel_error(pair[r]) for r in (False, True))
        assert pair[False].status == pair[True].status == "finished"
        assert plain > 3 * res, seed                                 # measured: about 7x
        assert res < 0.2 and plain > 0.4, seed
        assert pair[True].curve("rel_error")[1][0] > res * 20, seed  # it starts far away and still gets there


def test_stored_identity_fits_agree_with_live_ones_and_hold_over_depth(fits8):
    rows = stored("fit")["data"]["runs"]
    assert len({r["seed"] for r in rows}) >= 3
    for res in (False, True):
        band = [r["rel_error"][-1] for r in rows if r["n_blocks"] == 8 and r["residual"] == res]
        for seed in SEEDS:
            assert_in_seed_band(ie.final_rel_error(fits8[seed][res]), band, log=True, what=f"8 blocks, seed {seed}")
    finals = {}
    for r in rows:
        finals.setdefault((r["n_blocks"], r["residual"]), []).append(r["rel_error"][-1])
    for (depth, res), v in finals.items():
        if not res and depth >= 4:
            assert min(v) > 3 * max(finals[(depth, True)]), depth   # best plain seed vs worst residual seed
    assert min(finals[(16, False)]) > 4 * max(finals[(16, True)])    # the chapter's 16 blocks: 6x and more
    assert np.median(finals[(32, False)]) > 0.8                       # the deepest plain stack: near "the mean"
    assert max(max(v) for (d, res), v in finals.items() if res) < 0.4


# -- trained branches are small corrections --------------------------------------------------------
def test_trained_branches_are_small_corrections_over_seeds():
    rows = [r for r in stored("zero_gamma")["data"]["runs"] if r["depth"] == 56]
    assert len({r["seed"] for r in rows}) >= 3
    for r in rows:
        assert np.median(r["rel_norm"]) < 0.5, (r["init"], r["seed"])          # well below "equal parts"
        assert min(r["cosine"]) > 0.5, (r["init"], r["seed"])                  # no block turns it by 60 deg
        if r["init"] == "zero_gamma":
            assert max(r["rel_norm_init"]) == 0.0                               # they start at exactly zero
    med = {init: np.median([np.median(r["rel_norm"]) for r in rows if r["init"] == init])
           for init in ("standard", "zero_gamma")}
    assert med["zero_gamma"] < 0.75 * med["standard"]                           # "smaller still with zero-gamma"


def test_a_live_residual56_has_branches_and_loss_within_the_stored_seeds(digits):
    run = ie.train_digits(ie.BRANCH_MODEL, seed=0)
    st = branch_stats(run.net, digits.X_test)
    refs = [r for r in stored("zero_gamma")["data"]["runs"] if r["depth"] == 56 and r["init"] == "standard"]
    assert len(refs) >= 3 and st.median_rel_norm < 0.5
    assert_in_seed_band(st.median_rel_norm, [np.median(r["rel_norm"]) for r in refs], what="median ||F||/||x||")
    assert_in_seed_band(run.final["train_loss"], [r["train_loss"] for r in refs], log=True, what="train loss")


# -- branch initialization without normalization ---------------------------------------------------
def test_without_normalization_standard_diverges_while_scaled_or_zero_inits_train():
    """Live, the chapter's network (residual-56 without normalization, lr 0.05, 10 epochs): the standard init
    diverges in every seed, the 1/sqrt(L) branch trains in every seed, Fixup's seed 0 reproduces."""
    rows = stored("init")["data"]["runs"]
    band = {k: [r["train_loss"] for r in rows if r["init"] == k] for k in ("1/sqrt(L)", "fixup")}
    for seed in SEEDS:
        std = ie.train_init("standard", seed)
        assert std.history.status.startswith("diverged at step") and std.history.diverged_at <= 20, seed
        assert all(np.isfinite(std.history.loss))
        scaled = ie.train_init("1/sqrt(L)", seed)
        assert scaled.history.status == "finished" and scaled.final["train_loss"] < 0.5, seed
        assert_in_seed_band(scaled.final["train_loss"], band["1/sqrt(L)"], log=True, what="1/sqrt(L) train loss")
    fixup = ie.train_init("fixup", 0)
    assert fixup.history.status == "finished" and fixup.final["train_loss"] < 1.0
    assert_in_seed_band(fixup.final["train_loss"], band["fixup"], log=True, what="Fixup-style train loss")


def test_stored_init_sweep_standard_always_diverges_and_the_others_train():
    rows = stored("init")["data"]["runs"]
    seeds = sorted({r["seed"] for r in rows})
    assert len(seeds) >= 3
    by = {(r["init"], r["seed"]): r for r in rows}
    for seed in seeds:
        assert by[("standard", seed)]["status"].startswith("diverged"), seed
        trained = [k for k in ("1/sqrt(L)", "rezero", "fixup")
                   if by[(k, seed)]["status"] == "finished" and by[(k, seed)]["train_loss"] < 1.0]
        assert len(trained) >= 2, seed                                    # at least two of the three, every seed
        assert {"1/sqrt(L)", "fixup"} <= set(trained), seed                # the chapter: these two in every seed
        assert all(by[(k, seed)]["status"] == "finished" for k in ("1/sqrt(L)", "rezero", "fixup"))


# -- He et al. (2016) shortcut variants and placements ----------------------------------------------
@pytest.fixture(scope="module")
def variants():
    return stored("variants")["data"]


def test_variant_sweep_has_every_variant_over_several_seeds(variants):
    s = variants["summary"]
    assert set(s) == set(iv.VARIANTS) and min(v["n"] for v in s.values()) >= 3


def test_identity_shortcut_trains_and_scaled_shortcuts_fail(variants):
    s = variants["summary"]
    assert s["identity"]["fails"] == 0 and s["identity"]["test_err_range"][1] < 0.08
    for k in SCALED:
        assert s[k]["fails"] == s[k]["n"], k                          # every seed above the paper's 20 %
        assert s[k]["test_err_range"][0] > 2 * s["identity"]["test_err_range"][1], k


def test_near_identity_gate_lands_near_the_identity(variants):
    s = variants["summary"]
    assert s["shortcut_gate_6"]["fails"] == 0
    assert abs(s["shortcut_gate_6"]["test_err"] - s["identity"]["test_err"]) < 0.03


def test_exclusive_gate_minus6_trains_with_its_blocks_switched_off(variants):
    s = variants["summary"]["exclusive_gate_6"]
    assert s["fails"] == 0 and s["gate_mean"] < 0.01
    for r in variants["runs"]:
        if r["key"] == "exclusive_gate_6":
            assert max(r["gates"]) < 0.05


def test_one_by_one_shortcut_fails_here(variants):
    s = variants["summary"]["conv1x1"]
    assert s["fails"] >= s["n"] - 1


def test_placements_follow_the_papers_order(variants):
    s = variants["summary"]
    err = {k: s[k]["test_err"] for k in iv.PLACEMENT_KEYS}
    assert err["pre"] == min(err.values()) or err["pre"] < min(err.values()) + 0.01
    assert err["bn_after_add"] == max(err.values())
    for k in ("post", "relu_before_add"):
        assert err["pre"] + 0.03 < err[k] < err["bn_after_add"], k
    assert s["plain"]["fails"] == s["plain"]["n"]


def test_a_live_variant_run_falls_within_the_stored_seeds(variants):
    refs = [r for r in variants["runs"] if r["key"] == "identity"]
    live = iv.train_variant("identity", seed=0)
    assert live["status"] == "finished" and set(live) == set(refs[0])
    assert_in_seed_band(live["test_err"], [r["test_err"] for r in refs], floor=2 / 359, what="test error")
    assert_in_seed_band(live["train_loss"], [r["train_loss"] for r in refs], log=True, what="train loss")


# -- zero-gamma ------------------------------------------------------------------------------------
def test_zero_gamma_lets_residual56_beat_residual20():
    rows = stored("zero_gamma")["data"]["runs"]
    loss = {}
    for r in rows:
        loss.setdefault((r["depth"], r["init"]), {})[r["seed"]] = r["train_loss"]
    seeds = sorted(loss[(56, "zero_gamma")])
    assert len(seeds) >= 3
    wins = sum(loss[(56, "zero_gamma")][s] < loss[(20, "zero_gamma")][s] for s in seeds)
    assert wins >= len(seeds) - 1
    assert np.median(list(loss[(56, "zero_gamma")].values())) < np.median(list(loss[(20, "zero_gamma")].values()))
