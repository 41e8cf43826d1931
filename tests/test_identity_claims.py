"""The claims of *The identity mapping*, over at least three seeds with wide margins.

Two kinds of check: live trainings over three seeds (the identity fit, the branch initializations
without normalization, the trained branches of residual-56), and the precomputed five-seed sweeps in
``book/data/identity_*.json`` that the chapter reads. A live run is compared with a stored sweep only
through the band its seeds span (``tests/bands.py``): on another CPU a seed is, in effect, another seed."""
import math
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


def test_the_plain_stacks_depth_trend_survives_a_learning_rate_sweep_and_the_lifted_stream():
    """Each stack at its best of four learning rates, on x and on [x, -x]: the plain stack's error grows several
    times from 1 to 16 blocks in every seed, and stays far above the residual stack's; one plain block is handicapped."""
    from skipnet.experiments.identity import best_lr_errors
    rows = stored("fit_fair")["data"]["runs"]
    assert len({r["seed"] for r in rows}) >= 3 and {r["lift"] for r in rows} == {False, True}
    for lift in (False, True):
        plain, res = best_lr_errors(rows, lift, False), best_lr_errors(rows, lift, True)
        deep = max(plain)
        assert min(plain[deep][1]) > 4 * max(plain[1][1]), lift               # measured: about 8x, every seed
        assert min(plain[deep][1]) > 8 * max(res[deep][1]), lift               # measured: 18x (lifted) to 190x
        assert min(plain[1][1]) > 20 * max(res[1][1]), lift                     # the one-block handicap
        assert all(math.isfinite(v) for v in plain[deep][1] + res[deep][1])
    std, lifted = best_lr_errors(rows, False, False), best_lr_errors(rows, True, False)
    assert np.median(lifted[1][1]) < np.median(std[1][1])                      # lifting helps the plain block


# -- trained branches are small corrections --------------------------------------------------------
@pytest.mark.data
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


def test_a_live_residual56_has_branches_within_the_stored_seeds_and_trains(digits):
    """The branches' median ||F||/||x|| lies in the band of the stored seeds (they agree within 0.04). The training
    loss spreads over a factor 10 between the stored seeds, so one live seed is held to the chapter's one-sided claim
    instead ("classifies its training digits almost perfectly"): training error below 1 % and loss below 0.1, 7x
    and 5x above the worst stored seed (0.14 %, 0.021). The median over three seeds is in tests/test_degradation.py."""
    run = ie.train_digits(ie.BRANCH_MODEL, seed=0)
    st = branch_stats(run.net, digits.X_test)
    refs = [r for r in stored("zero_gamma")["data"]["runs"] if r["depth"] == 56 and r["init"] == "standard"]
    assert len(refs) >= 3 and st.median_rel_norm < 0.5
    assert_in_seed_band(st.median_rel_norm, [np.median(r["rel_norm"]) for r in refs], what="median ||F||/||x||")
    assert max(r["train_err"] for r in refs) < 0.01 / 5 and max(r["train_loss"] for r in refs) < 0.1 / 4
    assert run.final["train_acc"] > 0.99 and run.final["train_loss"] < 0.1, run.final


# -- branch initialization without normalization ---------------------------------------------------
def test_without_normalization_standard_diverges_while_scaled_or_zero_inits_train():
    """Live, the chapter's network (residual-56 without normalization, lr 0.05, 10 epochs): the standard init
    diverges in every seed, the 1/sqrt(L) branch trains in every seed, Fixup's seed 0 is another draw of the stored
    seeds. "Trains" is the chapter's rule (finished, training loss below 1; the stored seeds end at 0.06-0.28 and
    spread over a factor 5, so a fixed bound near them would fail a fresh seed now and then)."""
    rows = stored("init")["data"]["runs"]
    band = {k: [r["train_loss"] for r in rows if r["init"] == k] for k in ("1/sqrt(L)", "fixup")}
    for seed in SEEDS:
        std = ie.train_init("standard", seed)
        assert std.history.status.startswith("diverged at step") and std.history.diverged_at <= 20, seed
        assert all(np.isfinite(std.history.loss))
        scaled = ie.train_init("1/sqrt(L)", seed)
        assert scaled.history.status == "finished" and scaled.final["train_loss"] < 1.0, seed
        assert_in_seed_band(scaled.final["train_loss"], band["1/sqrt(L)"], log=True, what="1/sqrt(L) train loss")
    fixup = ie.train_init("fixup", 0)
    assert fixup.history.status == "finished" and fixup.final["train_loss"] < 1.0
    assert_in_seed_band(fixup.final["train_loss"], band["fixup"], log=True, what="Fixup-style train loss")


@pytest.mark.data
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


@pytest.mark.data
def test_variant_sweep_has_every_variant_over_several_seeds(variants):
    s = variants["summary"]
    assert set(s) == set(iv.VARIANTS) and min(v["n"] for v in s.values()) >= 3


@pytest.mark.data
def test_identity_shortcut_trains_and_scaled_shortcuts_fail(variants):
    s = variants["summary"]
    assert s["identity"]["fails"] == 0 and s["identity"]["test_err_range"][1] < 0.08
    for k in SCALED:
        assert s[k]["fails"] == s[k]["n"], k                          # every seed above the paper's 20 %
        assert s[k]["test_err_range"][0] > 2 * s["identity"]["test_err_range"][1], k


@pytest.mark.data
def test_near_identity_gate_lands_near_the_identity(variants):
    s = variants["summary"]
    assert s["shortcut_gate_6"]["fails"] == 0
    assert abs(s["shortcut_gate_6"]["test_err"] - s["identity"]["test_err"]) < 0.03


@pytest.mark.data
def test_exclusive_gate_minus6_trains_with_its_blocks_switched_off(variants):
    s = variants["summary"]["exclusive_gate_6"]
    assert s["fails"] == 0 and s["gate_mean"] < 0.01
    for r in variants["runs"]:
        if r["key"] == "exclusive_gate_6":
            assert max(r["gates"]) < 0.05


@pytest.mark.data
def test_one_by_one_shortcut_with_its_default_start_fails_at_the_identitys_rate(variants):
    s = variants["summary"]["conv1x1"]
    assert s["fails"] >= s["n"] - 1


# -- best against best: every ranked variant over the learning-rate grid -----------------------------------
@pytest.fixture(scope="module")
def best():
    from skipnet.experiments.identity_sum import load_identity_records, variants_grid
    return iv.best_lr(variants_grid(load_identity_records()))


@pytest.mark.data
def test_every_ranked_variant_has_the_same_grid_and_seeds(best):
    """The grid for all; 0.2 and 0.5 where its top, 0.1, was best; 1 and 2 where 0.5 was then best (and for the
    identity, their baseline)."""
    grid, top, edge = (0.01, 0.02, 0.05, 0.1), (0.2, 0.5), (1.0, 2.0)
    for k, b in best.items():
        at_top = min(grid, key=lambda lr: (b["by_lr"][lr], lr)) == 0.1
        at_edge = at_top and min(grid + top, key=lambda lr: (b["by_lr"][lr], lr)) == 0.5
        want = grid + (top if at_top else ()) + (edge if at_edge or k == "identity" else ())
        assert tuple(sorted(b["by_lr"])) == want, k
    assert {len(b["errs"]) for b in best.values()} == {3}
    assert {"identity", "conv1x1_identity", "scale", "bn_after_add", "post", "plain"} <= set(best)


@pytest.mark.data
def test_the_halving_branch_variant_has_its_best_rate_inside_the_extended_grid(best):
    """0.5x + 0.5F(x) improved over the whole first grid; on the extended one its best rate is inside it, and its
    error there is still above the paper's fail line in every seed (the chapter: did not train within the budget)."""
    sb = best["scale_both"]
    assert sb["lr"] < max(sb["by_lr"]) and sb["by_lr"][max(sb["by_lr"])] > sb["test_err"]
    assert sb["fails"] == len(sb["errs"])


@pytest.mark.data
def test_best_against_best_the_1x1_shortcut_started_at_I_trains_near_the_identity(best):
    """The chapter: at its own best rate the 1x1 shortcut started at I trains (every seed below the paper's 20 %),
    to between 1 and 3 times the identity's error (the paper: 1.85), while at the identity's rate it fails."""
    eye, idt = best["conv1x1_identity"], best["identity"]
    assert eye["lr"] < 0.1 and eye["fails"] == 0
    assert idt["test_err"] <= eye["test_err"] < 3 * idt["test_err"]
    assert eye["by_lr"][0.1] > iv.FAIL_ERR
    assert best["conv1x1_orthogonal"]["fails"] == 0


@pytest.mark.data
def test_best_against_best_halving_shortcuts_and_bn_after_addition_fail_at_every_rate(best):
    for k in (*SCALED, "bn_after_add", "conv1x1", "plain"):
        assert min(best[k]["by_lr"].values()) > iv.FAIL_ERR, k                # the chapter: at every rate tried
    for k in ("identity", "shortcut_gate_6", "relu_only_pre"):
        assert best[k]["fails"] == 0, k


def test_best_lr_reads_each_variant_at_its_own_best_rate():
    rows = [{"key": "a", "lr": lr, "seed": s, "test_err": e} for lr, errs in ((0.1, (0.5, 0.6)), (0.02, (0.1, 0.2)))
            for s, e in enumerate(errs)] + [{"key": "a", "lr": 0.05, "seed": 0, "test_err": None},
                                            {"key": "a", "lr": 0.05, "seed": 1, "test_err": None}]
    b = iv.best_lr(rows)["a"]
    assert b["lr"] == 0.02 and b["errs"] == [0.1, 0.2] and b["by_lr"][0.05] == 0.9 and b["fails"] == 0


def test_halving_shortcuts_explode_the_gradient_toward_the_input_at_the_first_step():
    """The chapter's "explode, not vanish": at initialization the input layer's gradient is more than 1e4 times the
    identity network's with a halved or default-1x1 shortcut, and within 3x of it with the 1x1 started at I
    (median over three seeds; a property of the initialization, cheap to measure)."""
    def first(key):
        return float(np.median([iv.first_step_grads(key, s)["grad_norms"][0] for s in SEEDS]))
    base = first("identity")
    assert first("scale") > 1e4 * base and first("conv1x1") > 1e4 * base
    assert first("conv1x1_identity") < 3 * base


@pytest.mark.data
def test_as_built_placements_full_preactivation_best_and_bn_after_addition_worst(variants):
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
def _zg(rows):
    loss = {}
    for r in rows:
        loss.setdefault((r["depth"], r["init"]), {})[r["seed"]] = r
    return loss


@pytest.mark.data
def test_zero_gamma_at_110_steps_deeper_wins_within_zero_gamma_only_and_in_training_loss_only():
    """The chapter: with zero-gamma residual-56 ends below residual-20 in (almost) every seed; with the standard init
    it does not; zero-gamma-56 stays above standard-20; zero-gamma-56's test error is not below zero-gamma-20's."""
    by = _zg(stored("zero_gamma")["data"]["runs"])
    seeds = sorted(by[(56, "zero_gamma")])
    assert len(seeds) >= 5
    wins = {k: sum(by[(56, k)][s]["train_loss"] < by[(20, k)][s]["train_loss"] for s in seeds)
            for k in ("standard", "zero_gamma")}
    assert wins["zero_gamma"] >= len(seeds) - 1 and wins["standard"] <= 1, wins
    med = {key: np.median([r["train_loss"] for r in v.values()]) for key, v in by.items()}
    assert med[(56, "standard")] > 1.3 * med[(20, "standard")]               # "about twice", not "no worse"
    assert med[(56, "zero_gamma")] > 2 * med[(20, "standard")]               # the zero-gamma group is slower
    err = {key: np.median([r["test_err"] for r in v.values()]) for key, v in by.items()}
    assert err[(56, "zero_gamma")] >= err[(20, "zero_gamma")]
    assert sum(r["train_err"] == 0 for r in by[(20, "standard")].values()) >= len(seeds) - 1


@pytest.mark.data
def test_zero_gamma_and_standard_converge_together_at_40_epochs():
    by = _zg(stored("zero_gamma_long")["data"]["runs"])
    assert all(len(v) >= 3 for v in by.values())
    med40 = {key: np.median([r["train_loss"] for r in v.values()]) for key, v in by.items()}
    med10 = {key: np.median([r["train_loss"] for r in v.values()])
             for key, v in _zg(stored("zero_gamma")["data"]["runs"]).items()}
    assert max(med40.values()) / min(med40.values()) < 3.5                   # measured: 2.6
    for init in ("standard", "zero_gamma"):                                   # deeper ends lower, every seed
        assert all(by[(56, init)][s]["train_loss"] < by[(20, init)][s]["train_loss"] for s in by[(56, init)]), init
    for d in (20, 56):                                                        # the standard init ends lower
        assert med40[(d, "standard")] < med40[(d, "zero_gamma")], d
    for key in med40:
        assert med40[key] < 0.5 * med10[key], key                            # all four still had room at 10 epochs
        assert all(r["status"] == "finished" and r["train_err"] <= 0.002 for r in by[key].values()), key
        steps = [e["step"] for e in next(iter(by[key].values()))["evals"]]
        assert steps == [110, 220, 330, 440]


# -- branch sizes: a property of depth --------------------------------------------------------------
@pytest.mark.data
def test_trained_branches_are_about_twice_as_large_at_20_layers_as_at_56():
    rows = [r for r in stored("zero_gamma")["data"]["runs"] if r["init"] == "standard"]
    med = {(d, k): [np.median(r[k]) for r in rows if r["depth"] == d]
           for d in (20, 56) for k in ("rel_norm", "rel_norm_c", "rel_norm_init", "rel_norm_c_init")}
    for k in ("rel_norm", "rel_norm_c"):
        assert min(med[(20, k)]) > 1.7 * max(med[(56, k)]), k                 # every seed of 20 vs every seed of 56
        assert min(med[(20, k)]) > 0.5 and max(med[(56, k)]) < 0.4, k          # "not small" vs "about a third"
    ratio = np.median(med[(20, "rel_norm_init")]) / np.median(med[(56, "rel_norm_init")])
    assert 1.4 < ratio < 2.3                                                  # De & Smith: sqrt(27/9) = 1.73
    trained = np.median(med[(20, "rel_norm")]) / np.median(med[(56, "rel_norm")])
    assert trained > ratio                                                    # "training widens the gap further"
    for r in rows:
        assert r["rel_norm"][0] > 1.5 * np.median(r["rel_norm"][1:]), (r["depth"], r["seed"])   # the first block
        assert np.median(r["rel_norm_c"]) > np.median(r["rel_norm"])          # the mean inflates ||x||


# -- the no-normalization inits over learning rates ------------------------------------------------
@pytest.mark.data
def test_standard_init_trains_at_no_learning_rate_and_the_others_do():
    rows = stored("init_lr")["data"]["runs"]
    assert len({r["seed"] for r in rows}) >= 3
    std = [r for r in rows if r["init"] == "standard"]
    assert {r["lr"] for r in std} >= {1e-4, 1e-3, 0.01, 0.05, 0.1}
    for r in std:
        if r["lr"] >= 0.01:
            assert r["status"].startswith("diverged"), r["lr"]
        if r["status"] == "finished":
            assert r["train_loss"] > 2.0, r["lr"]                              # chance is ln 10 = 2.30
        else:
            assert int(r["status"].rsplit(" ", 1)[-1]) <= 20
    others = [r for r in rows if r["init"] != "standard"]
    assert sum(r["status"] != "finished" for r in others) <= 2
    for key in ("1/sqrt(L)", "rezero", "fixup"):
        best = min(0.9 if r["train_loss"] is None else np.median([x["train_loss"] for x in rows
                   if (x["init"], x["lr"]) == (key, r["lr"]) and x["train_loss"] is not None])
                   for r in rows if r["init"] == key)
        assert best < 0.2, key
        at_best = [r for r in rows if r["init"] == key]
        assert sum(r["train_loss"] is not None and r["train_loss"] < 1 for r in at_best) >= len(at_best) // 2, key


@pytest.mark.data
def test_standard_init_with_a_zero_classifier_still_trains_at_no_learning_rate():
    """The starting-loss control: every run starts at ln 10, and none ends below a training loss of 2 (chance 2.30)."""
    rows = stored("init_zero_head")["data"]["runs"]
    assert len({r["seed"] for r in rows}) >= 3 and len({r["lr"] for r in rows}) >= 4
    assert all(r["first_loss"] == pytest.approx(math.log(10), abs=1e-3) for r in rows)
    assert all(r["train_loss"] is None or r["train_loss"] > 2.0 for r in rows)


@pytest.mark.data
def test_rezero_failures_at_lr_005_come_with_a_jump_of_alpha():
    rows = stored("rezero_alpha")["data"]["runs"]
    assert len(rows) >= 5
    init = {r["seed"]: r for r in stored("init")["data"]["runs"] if r["init"] == "rezero"}
    for r in rows:
        assert len(r["alpha_max"]) == len(r["loss"]) == 110 and r["alpha_max"][0] < 0.1
        assert r["train_loss"] == pytest.approx(init[r["seed"]]["train_loss"], rel=1e-6)   # the same runs as --section init
    bad = [r for r in rows if r["train_loss"] >= 1.0]
    good = [r for r in rows if r["train_loss"] < 1.0]
    assert 1 <= len(bad) <= 2 and len(good) >= 3
    assert min(max(r["alpha_max"]) for r in bad) > 1.5 * max(max(r["alpha_max"]) for r in good)


# -- the reruns without confounds ------------------------------------------------------------------
@pytest.fixture(scope="module")
def fair():
    return stored("variants_fair")["data"]


@pytest.mark.data
def test_at_the_identitys_rate_the_1x1_shortcut_started_at_I_fails_through_its_product(fair):
    s = fair["summary"]
    base = stored("variants")["data"]["summary"]["identity"]
    for key in ("conv1x1_identity", "conv1x1_orthogonal"):
        assert s[key]["n"] >= 5 and s[key]["fails"] >= s[key]["n"] - 1, key        # at the identity's rate 0.1
        assert s[key]["test_err"] > 5 * base["test_err"], key
        for r in (x for x in fair["runs"] if x["key"] == key):
            assert r["prod_norm"][0] == pytest.approx(1.0, rel=1e-5)          # the product starts at norm 1
            assert max(r["prod_norm"]) > 1e3, (key, r["seed"])               # and explodes during training
    default = stored("variants")["data"]["summary"]["conv1x1"]
    assert sum(r["status"] != "finished" for r in fair["runs"] if r["key"].startswith("conv1x1")) < default["n"]


def test_a_live_identity_started_1x1_run_fails_like_the_stored_ones(fair):
    from skipnet.probes.branches import shortcut_product_norm
    live = iv.train_traced("conv1x1_identity", 0, shortcut_product_norm)
    refs = [r for r in fair["runs"] if r["key"] == "conv1x1_identity"]
    assert live["trace"][0] == pytest.approx(1.0) and max(live["trace"]) > 1e3
    if live["test_err"] is not None:
        assert live["test_err"] > iv.FAIL_ERR
        assert_in_seed_band(live["test_err"], [0.9 if r["test_err"] is None else r["test_err"] for r in refs],
                            floor=0.05, what="test error")


PLACES = ("pre", "post", "relu_only_pre", "relu_before_add", "bn_after_add")


@pytest.mark.data
def test_placements_from_the_same_loss_reorder_as_the_chapter_says(fair):
    built = stored("variants")["data"]
    arms = {"built": built["summary"],
            "final_norm": {k: fair["summary"][f"{k}_final_norm"] for k in PLACES},
            "zero_head": {k: fair["summary"][f"{k}_zero_head"] for k in PLACES}}
    for arm, s in arms.items():
        err = {k: s[k]["test_err"] for k in PLACES}
        assert err["bn_after_add"] == max(err.values()) and err["bn_after_add"] > 0.7, arm   # worst in every arm
        assert sorted(err, key=err.get).index("pre") <= 1, arm                               # at or near the top
        assert min(v["n"] for v in s.values()) >= 3, arm
    fn, b = arms["final_norm"], arms["built"]
    first = {k: next(r for r in built["runs"] if r["key"] == k and r["loss"])["loss"][0] for k in PLACES}
    assert min(first["post"], first["relu_before_add"]) > 3 * first["pre"]                   # the confound
    assert all(r["first_loss"] < 4 for r in fair["runs"] if r["key"].endswith("_final_norm"))
    assert fn["relu_before_add"]["fails"] == 0 and fn["relu_before_add"]["test_err"] < 2 * fn["pre"]["test_err"]
    assert fn["relu_before_add"]["test_err"] < fn["post"]["test_err"]                        # ranks 2nd, not 4th
    assert fn["post"]["test_err"] < b["post"]["test_err"] / 2 and fn["post"]["fails"] == 0
    assert fn["post"]["test_err"] > fn["pre"]["test_err"]                                     # still costs points
    for k in ("pre", "relu_only_pre"):                                                       # the same networks
        assert fn[k]["test_err"] == b[k]["test_err"]
    zh = arms["zero_head"]
    for k in ("post", "relu_before_add"):
        spikes = [r["max_loss"] for r in fair["runs"] if r["key"] == f"{k}_zero_head"]
        assert min(spikes) > 5 and zh[k]["test_err"] > 5 * zh["pre"]["test_err"], k
    assert all(r["first_loss"] == pytest.approx(np.log(10), abs=1e-3) for r in fair["runs"] if r["key"].endswith("zero_head"))


# -- is the sum messy? -----------------------------------------------------------------------------
@pytest.mark.data
def test_every_term_is_predictable_from_the_sum_and_the_deep_plain_net_barely_trained():
    rows = stored("decode")["data"]["runs"]
    by = {}
    for r in rows:
        by.setdefault((r["kind"], r["n_blocks"]), {})[r["seed"]] = r
    for n in (8, 16):
        seeds = sorted(by[("residual", n)])
        assert len(seeds) >= 5
        res, dense = by[("residual", n)], by[("dense", n)]
        assert abs(dense[0]["params"] - res[0]["params"]) / res[0]["params"] < 0.03     # matched parameters
        for s in seeds:
            r, d = res[s]["decode"][str(n)], dense[s]["decode"][str(n)]
            assert r["x0"] > 0.8 and min(r["writes"]) > 0.75, (n, s)                   # predictable from the sum
            assert d["x0"] > 0.99 and min(d["writes"]) > 0.99, (n, s)                   # concatenation: all of them
            assert r["class_acc"] > 0.9 and d["class_acc"] > 0.9, (n, s)
    plain16 = [r["test_err"] for r in by[("plain", 16)].values()]
    assert np.median(plain16) > 0.15                     # the chapter: the 16-block plain net is no fair comparison
    plain8 = [r["decode"]["8"]["class_acc"] for r in by[("plain", 8)].values()]
    res8 = [r["decode"]["8"]["class_acc"] for r in by[("residual", 8)].values()]
    assert abs(np.median(plain8) - np.median(res8)) < 0.02   # the fair plain net reads the class as well as the sum
    for kind in ("residual", "plain"):       # read from the last stream, the probe restates the network's accuracy
        acc = {s: 1 - r["test_err"] for s, r in by[(kind, 8)].items()}
        assert all(abs(r["decode"]["8"]["class_acc"] - acc[s]) < 0.015 for s, r in by[(kind, 8)].items()), kind
    mid = {k: [r["decode"]["4"]["class_acc"] for r in by[(k, 8)].values()] for k in ("residual", "plain")}
    assert min(mid["residual"]) > 0.95 and abs(np.median(mid["residual"]) - np.median(mid["plain"])) < 0.02


@pytest.mark.data
def test_removing_a_term_from_the_stream_costs_its_probe_little():
    """The read-back's control: each write F_k read from x_L - F_k loses less than 0.05 of R^2 (the margin stated
    before the control was run) in every stored seed; the writes stay predictable from a stream without them."""
    from skipnet.experiments.identity_sum import ablation_cost
    rows = stored("decode_control")["data"]["runs"]
    for n in (8, 16):
        res = [r for r in rows if r["kind"] == "residual" and r["n_blocks"] == n]
        assert len(res) >= 5
        for r in res:
            d = r["decode"][str(n)]
            assert len(d["writes_ablated"]) == len(d["writes"]) == n
            assert max(np.subtract(d["writes"], d["writes_ablated"])) < 0.05, (n, r["seed"])
            assert 0 <= ablation_cost(r, n) < 0.05
            assert min(d["writes_ablated"]) > 0.7, (n, r["seed"])
        plain = [r for r in rows if r["kind"] == "plain" and r["n_blocks"] == n]
        assert len(plain) >= 5 and all("writes_ablated" not in r["decode"][str(n)] for r in plain)


@pytest.mark.data
def test_the_chapters_family_reads_the_stored_records():
    from skipnet.experiments.identity_sum import (FAMILY_VARIANTS, family_seeds, identity_family,
                                                  load_identity_records)
    fam = identity_family(load_identity_records())
    res = fam.results()
    assert len(res) == 18 and {f"best_{k}" for k in FAMILY_VARIANTS} <= set(res)
    for key, c in res.items():
        assert c.p_adj >= c.p and c.outcome in ("higher", "lower", "equivalent", "not detected"), key
        assert c.outcome != "not detected" or "not detected" in c.sentence
    assert res["fit16"].higher == res["fit16"].n                      # every seed the same direction ...
    assert res["fit16"].outcome == "not detected"                   # ... and still not detected with five seeds
    assert res["best_scale"].higher == res["best_scale"].n
    assert res["ablation"].lower == res["ablation"].n               # below its margin in every seed
    assert res["ablation"].margin is None                           # a test against the margin, not a TOST
    assert [c.margin is not None for c in res.values()].count(True) == 1
    assert res["class_mid"].outcome in ("equivalent", "higher")     # every seed within 2 points, residual above
    for k in ("init_scaled", "init_fixup"):
        assert res[k].lower == res[k].n, k
    assert family_seeds(fam) == {"difference": 10, "equivalence": 5}


def test_the_readback_control_can_pass_at_the_confirmation_size():
    """Finding of the review: the control, a small positive loss in every seed, must be able to pass at the
    confirmation's size; with ten seeds like the stored ones the test against the margin reads 'lower'."""
    from skipnet.inference import Family
    from skipnet.experiments.identity_sum import ABLATION_MARGIN, confirmation_seeds
    n = confirmation_seeds(18)
    fam = Family("t")
    fam.add("ablation", [0.015 + 0.0001 * i for i in range(n)], ABLATION_MARGIN, "x")
    for j in range(17):
        fam.add(f"d{j}", [1.0 + 0.01 * i for i in range(n)], 0.0, "y")
    assert fam["ablation"].outcome == "lower"


def test_init_best_losses_counts_a_diverged_run_as_chance():
    from skipnet.experiments.identity_sum import CHANCE_LOSS, init_best_losses
    rows = [{"init": "a", "lr": lr, "seed": s, "train_loss": x} for lr, xs in ((0.1, (0.1, None, 0.2)),
                                                                                (0.2, (0.3, 0.4, 0.5)))
            for s, x in enumerate(xs)]
    b = init_best_losses(rows)["a"]
    assert b["lr"] == 0.1 and b["losses"] == [0.1, CHANCE_LOSS, 0.2] and b["loss"] == 0.2


def test_a_live_residual_decode_falls_within_the_stored_seeds():
    from skipnet.experiments.identity_sum import decode_row
    live = decode_row("residual", 8, seed=0)
    refs = [r for r in stored("decode")["data"]["runs"] if r["kind"] == "residual" and r["n_blocks"] == 8]
    for what in ("x0", "pixels"):
        assert_in_seed_band(live["decode"]["8"][what], [r["decode"]["8"][what] for r in refs], floor=0.02, what=what)
    assert_in_seed_band(min(live["decode"]["8"]["writes"]), [min(r["decode"]["8"]["writes"]) for r in refs],
                        floor=0.02, what="worst F_k")


# -- the lambda map --------------------------------------------------------------------------------
def test_the_scaled_shortcut_fails_along_lambda_to_the_L_and_not_above_one():
    from skipnet.experiments.identity_sum import lambda_boundary
    rows = stored("lambda")["data"]["runs"]
    assert len({r["seed"] for r in rows}) >= 3 and {r["lam"] for r in rows} >= {0.5, 0.9, 1.0, 1.1, 1.2}
    b = lambda_boundary(rows)
    rho = b["rho"]
    # ties (five cells per depth and per lambda) get their average rank: the chapter's correlations are scipy's
    from scipy.stats import spearmanr
    below = sorted(k for k in b["ratio"] if k[0] < 1)
    ref = spearmanr([b["ratio"][k] for k in below], [k[1] for k in below]).statistic
    assert rho["L"] == pytest.approx(ref)
    # the chapter: consistent with lambda^L and clearly not with lambda alone, but not singled out from depth alone
    assert rho["lambda^L"] > 0.8 and rho["lambda^L"] > rho["lambda"] + 0.2
    lo, hi = b["rho_diff_boot"]["ci"]
    assert lo < 0 < hi
    assert b["fails_above_one"] == []                                        # lambda > 1 never fails here
    assert b["min_training_pow"] is not None and b["max_failing_pow"] is not None
    assert b["ratio"][(0.5, 54)] > 10 and b["ratio"][(0.9, 8)] < 1.5          # far from and near the identity
    assert 1e-4 < b["min_training_pow"] < 0.01 and b["max_failing_pow"] < 0.2   # a band of lambda^L, not all of it
