"""The labs of *An ensemble of relatively shallow paths*, driven as a reader would.

No wall-clock asserts here (the speed of the labs is measured in bench/); a live training is compared with
the stored sweep only through the span of the stored seeds (bands.py), never bit for bit: the sweep was
made on another CPU, where a seed is in effect another seed.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bands import assert_in_seed_band
from skipnet.experiments import ensemble as E
from skipnet.probes.lesions import lesioned_accuracy, recalibrated
from skipnet.runtime import eval_mode, generator
from skipnet.store import load_result
from skipnet.widgets.ensemble import LesionLab, LesionState, PathExplorer

DATA = Path(__file__).resolve().parents[1] / "book" / "data"
ACC_FLOOR = 3 / 359                         # 359 test images: accuracies come in steps of 1/359


@pytest.fixture(scope="module")
def trained_lab():
    lab = LesionLab()
    lab.run_button.click()
    lab.wait(timeout=600)
    return lab


@pytest.fixture(scope="module")
def small_nets(digits):
    short = E.DEFAULT_TRAIN.with_(steps=3, eval_every=0)
    small = E.ENSEMBLE_MODEL.with_(width=4)
    return {"residual": E.train_net(8, True, seed=0, model=small, train=short, data=digits),
            "plain": E.train_net(8, False, seed=0, model=small, train=short, data=digits)}


@pytest.mark.slow
def test_lesion_lab_default_run_trains_both_nets_and_draws(trained_lab):
    lab = trained_lab
    assert lab.error is None, lab.error
    state = lab.result
    assert isinstance(state, LesionState) and state.depth == 20
    assert {n.status for n in state.nets.values()} == {"finished"}
    assert len(lab.boxes) == 9 and lab.k.max == 9
    assert lab.image.value[:4] == b"\x89PNG" and lab.progress.value == 1.0
    assert "residual-20" in lab.message.value and "plain-20" in lab.message.value
    assert lab.first_update_s is not None                   # progress was reported (its speed: bench/)


@pytest.mark.slow
def test_lab_nets_fall_inside_the_stored_seeds_and_support_the_chapter(trained_lab, digits):
    """The lab trains the sweep's nets (same function, same configs, seed 0). On another CPU its seed 0 is in
    effect another seed, so the lesion study of the live nets is checked against the span of the five stored
    seeds (bands.py), and against the claims the chapter draws from them."""
    rec = load_result(DATA / "ensemble_lesions.json")
    nets = trained_lab.result.nets
    for name, residual in (("residual", True), ("plain", False)):
        run = nets[name]
        assert run.model == E.ENSEMBLE_MODEL.with_(depth=20, residual=residual) and run.seed == 0
        # the sweep's training, without its evaluations every 5 steps (they do not change the trained net:
        # tests/test_train.py::test_evaluations_along_the_way_do_not_change_the_training)
        assert json.loads(json.dumps(run.train.as_dict())) == {**rec["config"]["train"], "seed": 0, "eval_every": 0}
        stored = rec["data"][run.label]
        study = E.lesion_study(run.net, digits, run.label, ks=[0, 1, 2], n_samples=rec["config"]["n_samples"], seed=0)
        assert_in_seed_band(study.intact, [r["intact"] for r in stored], floor=ACC_FLOOR,
                            what=f"{run.label} intact accuracy")
        assert_in_seed_band(study.median_single, [np.median(r["single"]) for r in stored], floor=ACC_FLOOR,
                            what=f"{run.label} median single-deletion accuracy")
        assert_in_seed_band(study.k_means[1], [np.mean(r["k_accs"][1]) for r in stored], floor=ACC_FLOOR,
                            what=f"{run.label} mean accuracy with one random block deleted")
        # the chapter's reading, each as the live seed's place in the stored seeds' band (one live seed cannot carry
        # a claim about the distribution): residual-20, one deletion costs a few points (stored: 2-7 below intact)
        # and block 1 is the weak point (stored: 51-64 points below the median deletion); plain-20, any deletion
        # sends it near chance (the median and k = 1 bands above: stored at most 0.12 and 0.16)
        if residual:
            assert_in_seed_band(study.median_single - study.intact,
                                [np.median(r["single"]) - r["intact"] for r in stored], floor=ACC_FLOOR,
                                what=f"{run.label} median single-deletion cost")
            assert_in_seed_band(study.single[0] - study.median_single,
                                [r["single"][0] - np.median(r["single"]) for r in stored], floor=ACC_FLOOR,
                                what=f"{run.label} block 1 against the median deletion")


@pytest.mark.slow
def test_ticking_a_box_updates_both_accuracies_at_once(trained_lab, digits):
    """Both accuracies are the lesioned nets' (the lesion probe on the test images, exactly), and where they land is
    checked against the stored seeds' band: a middle block costs the residual net a few points (stored: 2-10) and
    sends the plain net toward chance (stored: 0.07-0.23); with every branch gone the residual net is near chance."""
    lab = trained_lab
    state = lab.result
    nets = {name: run.net for name, run in state.nets.items()}
    X, y = digits.X_test, digits.y_test
    stored = load_result(DATA / "ensemble_lesions.json")["data"]
    lab.boxes[4].value = True                                # a middle block: the residual net barely notices
    assert state.deleted == [4]
    assert state.acc == {name: lesioned_accuracy(net, X, y, [4]) for name, net in nets.items()}
    assert_in_seed_band(state.acc["residual"] - state.intact["residual"],
                        [r["single"][4] - r["intact"] for r in stored["residual-20"]], floor=ACC_FLOOR,
                        what="residual-20 cost of deleting block 5")
    assert_in_seed_band(state.acc["plain"], [r["single"][4] for r in stored["plain-20"]], floor=ACC_FLOOR,
                        what="plain-20 accuracy without block 5")
    image = lab.image.value
    lab.boxes[4].value = False
    assert state.deleted == [] and state.acc == state.intact and lab.image.value != image
    lab.set_deleted(range(9))                                # every branch gone
    assert state.acc == {name: lesioned_accuracy(net, X, y, range(9)) for name, net in nets.items()}
    assert_in_seed_band(state.acc["residual"], [r["k_accs"][-1][0] for r in stored["residual-20"]], floor=ACC_FLOOR,
                        what="residual-20 accuracy with every branch deleted")
    lab.clear_button.click()
    assert state.deleted == []
    with pytest.raises(ValueError, match="block indices must be in 0..8"):
        lab.set_deleted([9])


@pytest.mark.slow
def test_k_slider_moves_the_marker_without_retraining(trained_lab):
    lab = trained_lab
    nets = dict(lab.result.nets)
    lab.k.value = 4
    assert lab.result.k == 4 and "Deleting 4 random blocks" in lab.message.value
    assert lab.result.nets == nets


def test_lesion_lab_starts_from_given_nets_and_validates(small_nets):
    lab = LesionLab(threaded=False, nets=small_nets)
    assert isinstance(lab.result, LesionState) and len(lab.boxes) == 3 and lab.image.value[:4] == b"\x89PNG"
    lab.boxes[0].value = True
    assert lab.result.deleted == [0]
    with pytest.raises(ValueError, match="nets must have the keys"):
        LesionLab(nets={"residual": small_nets["residual"]})
    bad = LesionLab(threaded=False)
    bad.seed.value = -1
    bad.run_button.click()
    assert bad.result is None and "seed must be an integer between 0 and" in bad.error and "seed" in bad.message.value
    with pytest.raises(ValueError, match="train the networks first"):
        bad.set_deleted([0])


def test_lesion_lab_controls_before_training_say_what_to_do():
    """Every control of a lab that has not trained yet goes through the safe path: nothing raises, and the
    message line tells the reader what to do."""
    lab = LesionLab(threaded=False)
    lab.clear_button.click()                                 # "restore all" before training
    assert "train the networks first" in lab.message.value and "Train" in lab.message.value
    assert lab.result is None and lab.error is None
    lab = LesionLab(threaded=False)
    lab.k.value = 0                                          # the k slider before training: nothing to draw yet
    assert lab.result is None and lab.error is None and "press the button" in lab.message.value
    lab.stop_button.click()                                  # Stop with nothing running
    assert lab.result is None and lab.error is None


def test_every_control_callback_of_the_lesion_lab_goes_through_the_safe_path(small_nets, monkeypatch):
    """With the drawing broken on purpose, ticking a box, moving the k slider and pressing "restore all"
    each show the error in the message line instead of raising into the notebook."""
    lab = LesionLab(threaded=False, nets=small_nets)

    def broken(_state):
        raise RuntimeError("drawing broke")
    monkeypatch.setattr(lab, "_draw", broken)
    for what, act in (("tick a box", lambda: setattr(lab.boxes[1], "value", True)),
                      ("move k", lambda: setattr(lab.k, "value", 2)), ("restore all", lab.clear_button.click)):
        lab.message.value, lab.error = "", None
        act()
        assert "drawing broke" in lab.message.value and "RuntimeError" in lab.error, what
    lab.stop_button.click()                                  # Stop with nothing running: nothing happens


def _end_path_norms(model, digits, seed, batch_size=128):
    """The gradient norm at the first block's input along the all-skip and the all-branch path, on the batch
    path_study draws (``batch_size`` training images picked by ``generator(seed)``), computed as a chain of
    vector-Jacobian products of each block's parts: independent of the path probe."""
    idx = torch.randperm(len(digits.X_train), generator=generator(seed))[:batch_size]
    X, y = digits.X_train[idx], digits.y_train[idx]

    def vjp(fn, at, v):
        at = at.detach().requires_grad_(True)
        return torch.autograd.grad(fn(at), at, v)[0]

    out = []
    with eval_mode(model):
        with torch.no_grad():
            states = model.blocks_forward(model.embed(X))
        for use_branch in (False, True):
            g = vjp(lambda h: F.cross_entropy(model.readout(h), y), states[-1], torch.tensor(1.0))
            for block, x in zip(list(model.blocks)[::-1], states[-2::-1]):
                with torch.no_grad():
                    z = block.branch(x) + block.shortcut(x)
                g = vjp(block.branch if use_branch else block.shortcut, x, vjp(block.post, z, g))
            out.append(g.norm().item())
    return out


def test_path_explorer_at_initialization_and_bad_seed(digits):
    lab = PathExplorer(threaded=False)
    lab.trained.value, lab.depth.value, lab.samples.value = False, 14, 2
    lab.run_button.click()
    assert lab.error is None, lab.error
    study = lab.result["study"]
    assert study.n == 6 and len(study.weights) == 7 and sum(study.weights) == pytest.approx(1.0)
    assert "at initialization" in lab.message.value and "n/2 = 3" in lab.message.value
    # length k means k branches: the one path of length 0 is the all-skip path, the one of length n the
    # all-branch path (a probe that mirrored k and n - k would swap them)
    fresh, _ = recalibrated(E.ENSEMBLE_MODEL.with_(depth=14).build(seed=0), digits.X_train)   # BN as it would run
    skip_only, branch_only = _end_path_norms(fresh, digits, seed=0)
    assert abs(skip_only - branch_only) > 0.1 * skip_only
    assert study.magnitude[0] == pytest.approx(skip_only, rel=1e-4)
    assert study.magnitude[6] == pytest.approx(branch_only, rel=1e-4)
    exact = lab.result["spectrum"]                          # the exact spectrum beside the sampled estimate
    assert exact.n == 6 and exact.sum_error < 1e-4 and exact.norms[0] == pytest.approx(skip_only, rel=1e-4)
    assert "exact spectrum" in lab.message.value
    lab.seed.value = -2
    lab.run_button.click()
    assert lab.result is None and "seed must be an integer between 0 and" in lab.error


@pytest.mark.slow
def test_path_explorer_default_run():
    """The default explorer trains the sweep's residual-20 (seed 0): its gradient-weighted mean path length is
    inside the span of the stored seeds (3.6-4.0, so the band, 3.2-4.3, lies below n/2 = 4.5 as the chapter says:
    mirrored lengths would put it above)."""
    lab = PathExplorer()
    lab.run_button.click()
    result = lab.wait(timeout=600)
    assert lab.error is None, lab.error
    s = result["study"]
    assert s.n == 9
    assert_in_seed_band(s.mean_length, [r["mean_length"] for r in load_result(DATA / "ensemble_paths.json")
                                        ["data"]["residual-20"]], what="residual-20 gradient-weighted mean length")
    assert "trained 10 epochs" in lab.message.value and lab.image.value[:4] == b"\x89PNG"
