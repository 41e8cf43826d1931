"""Widget tests of the chapter *Residual connections in Transformers (and the RNN question)*:
build each lab, set its controls, press its button, and check what it produced. No wall-clock asserts
(the labs' speed is measured in bench/)."""
from __future__ import annotations

import time

import pytest

from skipnet.experiments.transformers import SORT_MODEL, DEFAULT_TRAIN
from skipnet.history import History, Run
from skipnet.widgets.transformers import RankCollapseExplorer, TransformerLab


def test_rank_explorer_default_and_switches():
    lab = RankCollapseExplorer(threaded=False)
    lab.run_button.click()
    assert lab.error is None and len(lab.image.value) > 1000
    assert "stay distinct" in lab.message.value
    lab.skip.value = False                                  # auto_run: redraws on its own
    assert "collapse" in lab.message.value and lab.result["key"] == (False, True, True)
    lab.n_blocks.value = 2
    assert lab.result["curves"][(False, True, True)].ratios.shape == (1, 3)


def test_rank_explorer_bad_seed_is_named():
    lab = RankCollapseExplorer(threaded=False)
    lab.seed.value = -1
    assert lab.error is not None and "seed" in lab.error


def test_transformer_lab_default_run():
    lab = TransformerLab()
    lab.run_button.click()
    run = lab.wait(timeout=900)            # ~6 s on an idle core; generous for a busy CI machine
    assert lab.error is None, lab.error
    assert isinstance(run, Run) and run.status == "finished" and len(run.history.loss) == lab.steps.value == 150
    assert run.model == SORT_MODEL.with_(n_blocks=4, placement="pre", residual=True) and run.seed == 0
    assert lab.first_update_s is not None                   # progress was reported (its speed: bench/)
    assert len(lab.image.value) > 1000 and "Trained" in lab.message.value


def test_transformer_lab_stop_and_bad_input():
    lab = TransformerLab()
    lab.steps.value = 600
    lab.run_button.click()
    time.sleep(0.5)
    lab.stop_button.click()
    run = lab.wait(timeout=600)
    assert run.history.status.startswith("stopped at step")
    assert lab.error is None and "stopped at step" in lab.message.value
    lab = TransformerLab(threaded=False)
    lab.lr.value = 5.0
    lab.run_button.click()
    assert lab.error is not None and "lr" in lab.error and lab.result is None
    lab.lr.value, lab.warmup.value, lab.steps.value = 3e-3, 200, 100
    lab.run_button.click()
    assert "warm-up" in lab.error


@pytest.mark.parametrize("diverged", [True, False])
def test_transformer_lab_reports_divergence_and_stuck_runs(diverged):
    lab = TransformerLab(threaded=False)
    h = History(loss=[2.77] * 5, acc=[0.06] * 5, total_steps=5)
    if diverged:
        h.diverged_at = 6
    else:
        h.evals.append({"step": 5, "train_loss": 2.7, "train_acc": 0.07, "test_loss": 2.7, "test_acc": 0.07})
    run = Run(SORT_MODEL, DEFAULT_TRAIN, h, 1.0, label="x")
    text = lab.summary(run)
    assert ("diverged at step 6" in text) if diverged else ("Stuck" in text)
    assert len(lab.render(run).axes) == 2
