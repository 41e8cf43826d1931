"""The labs of *An ensemble of relatively shallow paths*, driven as a reader would."""
import time
from pathlib import Path

import pytest

from skipnet.experiments import ensemble as E
from skipnet.store import load_result
from skipnet.widgets.ensemble import LesionLab, LesionState, PathExplorer

DATA = Path(__file__).resolve().parents[1] / "book" / "data"


@pytest.fixture(scope="module")
def trained_lab():
    lab = LesionLab()
    lab.run_button.click()
    lab.wait(timeout=600)
    return lab


@pytest.mark.slow
def test_lesion_lab_default_run_trains_both_nets_and_draws(trained_lab):
    lab = trained_lab
    assert lab.error is None, lab.error
    state = lab.result
    assert isinstance(state, LesionState) and state.depth == 20
    assert {n.history.status for n in state.nets.values()} == {"finished"}
    assert len(lab.boxes) == 9 and lab.k.max == 9
    assert lab.image.value[:4] == b"\x89PNG" and lab.progress.value == 1.0
    assert "residual-20" in lab.message.value and "plain-20" in lab.message.value
    assert lab.first_update_s is not None and lab.first_update_s < 0.05 * lab.elapsed_s


@pytest.mark.slow
def test_lab_nets_reproduce_the_stored_sweep(trained_lab, digits):
    """The lab's residual-20 (seed 0) is the sweep's: re-run one slice of the stored sweep, same numbers
    bit for bit on one CPU thread (the lab trains with the same function and settings)."""
    rec = load_result(DATA / "ensemble_lesions.json")
    stored = next(r for r in rec["data"]["residual-20"] if r["seed"] == 0)
    net = trained_lab.result.nets["residual"]
    assert (net.depth, net.seed, net.residual) == (20, 0, True)
    study = E.lesion_study(net.model, digits, net.label, ks=[0, 1, 2], n_samples=rec["config"]["n_samples"], seed=0)
    assert study.intact == pytest.approx(stored["intact"], abs=1e-9)
    assert study.single == pytest.approx(stored["single"], abs=1e-9)
    assert study.k_accs[1] == pytest.approx(stored["k_accs"][1], abs=1e-9)


@pytest.mark.slow
def test_ticking_a_box_updates_both_accuracies_at_once(trained_lab):
    lab = trained_lab
    state = lab.result
    lab.boxes[4].value = True                                # a middle block: the residual net barely notices
    assert state.deleted == [4]
    assert state.acc["residual"] >= state.intact["residual"] - 0.15
    assert state.acc["plain"] <= 0.35                        # the plain net falls toward chance
    image = lab.image.value
    lab.boxes[4].value = False
    assert state.deleted == [] and state.acc == state.intact and lab.image.value != image
    lab.set_deleted(range(9))                                # every branch gone
    assert state.acc["residual"] < state.intact["residual"] - 0.3
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


def test_lesion_lab_starts_from_given_nets_and_validates(digits):
    short = E.DEFAULT_TRAIN.with_(steps=3, eval_every=0)
    small = E.DEFAULT_MODEL.with_(width=4)
    nets = {"residual": E.train_net(8, True, seed=0, model=small, train=short, data=digits),
            "plain": E.train_net(8, False, seed=0, model=small, train=short, data=digits)}
    lab = LesionLab(threaded=False, nets=nets)
    assert isinstance(lab.result, LesionState) and len(lab.boxes) == 3 and lab.image.value[:4] == b"\x89PNG"
    lab.boxes[0].value = True
    assert lab.result.deleted == [0]
    with pytest.raises(ValueError, match="nets must have the keys"):
        LesionLab(nets={"residual": nets["residual"]})
    bad = LesionLab(threaded=False)
    bad.seed.value = -1
    bad.run_button.click()
    assert bad.result is None and "seed must be >= 0" in bad.error and "seed" in bad.message.value
    with pytest.raises(ValueError, match="train the networks first"):
        bad.set_deleted([0])


@pytest.mark.slow
def test_lesion_lab_stop_button_stops_training():
    lab = LesionLab()
    lab.depth.value = 56
    lab.run_button.click()
    deadline = time.time() + 60
    while lab.progress.value == 0 and time.time() < deadline:
        time.sleep(0.05)
    lab.stop_button.click()
    state = lab.wait(timeout=300)
    assert "stopped at step" in state.status and "stopped at step" in lab.message.value
    assert lab.image.value[:4] == b"\x89PNG"


def test_path_explorer_at_initialization_and_bad_seed():
    lab = PathExplorer(threaded=False)
    lab.trained.value, lab.depth.value, lab.samples.value = False, 14, 2
    lab.run_button.click()
    assert lab.error is None, lab.error
    study = lab.result["study"]
    assert study.n == 6 and len(study.weights) == 7 and sum(study.weights) == pytest.approx(1.0)
    assert "at initialization" in lab.message.value and "n/2 = 3" in lab.message.value
    lab.seed.value = -2
    lab.run_button.click()
    assert lab.result is None and "seed must be >= 0" in lab.error


@pytest.mark.slow
def test_path_explorer_default_run():
    lab = PathExplorer()
    lab.run_button.click()
    result = lab.wait(timeout=600)
    assert lab.error is None, lab.error
    s = result["study"]
    assert s.n == 9 and 0 < s.mean_length < 9
    assert "trained 10 epochs" in lab.message.value and lab.image.value[:4] == b"\x89PNG"
