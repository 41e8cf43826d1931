"""Widget tests of *The gradient highway*: build each lab, set its controls, click, and check what it produced."""
from __future__ import annotations

import pytest

from skipnet.experiments.highway_trained import Race
from skipnet.widgets.highway import ChiLab, GradientProfileLab, TrainingRaceLab

PNG = b"\x89PNG"


def test_profile_lab_default_click():
    lab = GradientProfileLab()
    lab.run_button.click()
    result = lab.wait()
    assert lab.error is None
    assert list(result) == ["plain ReLU", "residual ReLU"]
    assert bytes(lab.image.value).startswith(PNG)
    assert "weight-gradient ratio" in lab.message.value and "stream-gradient ratio" in lab.message.value


def test_profile_lab_recomputes_on_each_control_and_shows_vanishing():
    lab = GradientProfileLab(threaded=False)
    lab.activation.value = "sigmoid"                        # auto-run: every change recomputes
    assert "vanishing" in lab.message.value
    assert lab.result["plain sigmoid"].ratio < 1e-10
    lab.residual.value = True
    assert list(lab.result)[0] == "residual sigmoid"
    assert 0.1 < lab.result["residual sigmoid"].ratio < 10
    assert "flat" in lab.message.value
    lab.activation.value, lab.norm.value, lab.residual.value = "relu", "batch", False
    assert "exploding" in lab.message.value
    lab.n_blocks.value = 5
    assert lab.result["plain ReLU + BN"].n_blocks == 5 and len(lab.result["plain ReLU + BN"].norms) == 7


def test_profile_lab_names_a_bad_number_of_blocks():
    lab = GradientProfileLab(threaded=False)
    lab.n_blocks.max = 500
    lab.n_blocks.value = 300
    assert lab.error is not None and "n_blocks" in lab.error and "between 1 and 200" in lab.error


def test_chi_lab_default_and_each_control():
    lab = ChiLab()
    lab.run_button.click()
    result = lab.wait()
    assert lab.error is None, lab.error
    assert bytes(lab.image.value).startswith(PNG) and "critical" in lab.message.value      # tanh at gain 1
    assert len(result["profile"]) == 65 and abs(result["log_ratio"]) < 3
    lab = ChiLab(threaded=False)
    lab.gain.value = 0.5                                                   # auto-run on every change
    assert "vanishes" in lab.message.value and lab.result["log_ratio"] < -10
    lab.gain.value = 2.0
    assert "explodes" in lab.message.value and lab.result["log_ratio"] > 1
    lab.variant.value = "residual"
    assert lab.result["log_ratio"] > 1
    lab.variant.value, lab.activation.value = "branch/sqrt(L)", "relu"
    assert abs(lab.result["log_ratio"]) < 2
    lab.n_blocks.value = 3
    assert len(lab.result["profile"]) == 4


def test_chi_lab_names_a_bad_setting():
    lab = ChiLab(threaded=False)
    lab.n_blocks.max = 1000
    lab.n_blocks.value = 400
    assert lab.error is not None and "n_blocks must be an integer between 1 and 256" in lab.message.value
    lab.n_blocks.value = 8
    lab.seed.value = -1
    assert "seed must be an integer between 0 and 4,294,967,295" in lab.message.value


def test_race_lab_small_run_finishes_with_curves_and_heat_maps():
    lab = TrainingRaceLab()
    lab.depth.value, lab.epochs.value = 8, 1
    lab.run_button.click()
    result = lab.wait()
    assert lab.error is None, lab.error
    assert isinstance(result, Race)
    for key in ("plain", "residual"):
        h = result.runs[key].history
        assert h.status == "finished"
        assert len(h.grad_norms) == h.steps_done and len(h.grad_norms[0]) == 8   # stem, 3 blocks x 2 convs, head
    assert bytes(lab.image.value).startswith(PNG)
    assert "plain-8" in lab.message.value and "residual-8" in lab.message.value
    assert lab.first_update_s is not None            # how soon: bench/widget_speed.py


@pytest.mark.parametrize("control,value,word", [("depth", 21, "depth"), ("lr", 7.0, "lr"), ("seed", -1, "seed"),
                                                ("seed", 10**20, "seed must be an integer between 0 and 4,294,967,295"),
                                                ("depth", 200, "depth must be an integer between 8 and 110")])
def test_race_lab_names_a_bad_parameter(control, value, word):
    lab = TrainingRaceLab(threaded=False)
    getattr(lab, control).value = value
    lab.run_button.click()
    assert lab.error is not None and word in lab.error
    assert word in lab.message.value


def test_race_lab_shows_a_divergence_as_a_status():
    lab = TrainingRaceLab(threaded=False)
    lab.depth.value, lab.epochs.value, lab.variant.value = 20, 1, "no norm + ReLU"
    lab.lr.value = 1.0
    lab.run_button.click()
    assert lab.error is None, lab.error
    statuses = [r.history.status for r in lab.result.runs.values()]
    assert any(s.startswith("diverged at step") for s in statuses), statuses
    assert "diverged at step" in lab.message.value
    for r in lab.result.runs.values():
        assert all(v == v for v in r.history.loss)                       # no NaN in the curves


@pytest.mark.slow
def test_race_lab_default_run():
    lab = TrainingRaceLab()
    lab.run_button.click()
    result = lab.wait(timeout=300)
    assert lab.error is None, lab.error
    plain, residual = result.runs["plain"].history, result.runs["residual"].history
    assert plain.status == residual.status == "finished"
    assert residual.final["train_loss"] < 0.3 < 1.0 < plain.final["train_loss"]


def test_profile_lab_reports_the_stream_ratio_beside_the_weight_ratio():
    """The unnormalized residual ReLU twin: a flat weight profile hides a stream gradient that explodes toward the
    input; the message must say both."""
    lab = GradientProfileLab(threaded=False)
    lab.residual.value = True                               # residual ReLU, no norm, 50 blocks
    prof = lab.result["residual ReLU"]
    assert 0.1 < prof.ratio < 10 and prof.act_ratio > 1e3
    assert "weight-gradient ratio" in lab.message.value and "stream-gradient ratio" in lab.message.value
    assert "flat" in lab.message.value and "exploding" in lab.message.value
