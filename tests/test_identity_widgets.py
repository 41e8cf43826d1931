"""The labs of *The identity mapping*: build, set controls, click, wait, check what they produced."""
import math

import pytest

from skipnet.widgets.identity import BASELINE, BranchInitLab, ShortcutLab


@pytest.mark.slow
def test_shortcut_lab_races_the_baseline_and_fills_its_table():
    lab = ShortcutLab()
    lab.n_blocks.value, lab.epochs.value = 4, 1
    lab.run_button.click()
    result = lab.wait()
    assert lab.error is None, lab.error
    assert BASELINE in result and len(result) == 2
    assert all(r["status"] == "finished" and len(r["loss"]) == 11 for r in result.values())
    assert len(lab.table) == 2 and lab.image.value[:4] == b"\x89PNG"
    assert "test error" in lab.message.value and "constant scaling" in lab.table_html.value

    lab.shortcut.value = "shortcut_gate_6"                          # the baseline is reused: one new run only
    lab.placement.value = "post"
    lab.run_button.click()
    result = lab.wait()
    assert lab.error is None and len(lab.table) == 3
    assert result[BASELINE]["loss"] == lab.table[("identity", "pre", 4, 1, 0)]["loss"]
    assert "shortcut-only gating" in lab.table_html.value and lab.table_html.value.count("<tr>") == 4


def test_shortcut_lab_names_a_bad_parameter():
    lab = ShortcutLab(threaded=False)
    lab.seed.value = -1
    lab.run_button.click()
    assert lab.error is not None and "seed" in lab.error and lab.result is None
    assert "Cannot run" in lab.message.value


@pytest.mark.slow
def test_branch_init_lab_default_diverges_and_says_so():
    lab = BranchInitLab()
    lab.run_button.click()
    result = lab.wait()
    assert lab.error is None, lab.error
    run = result["runs"][result["label"]]
    assert run["status"].startswith("diverged at step")
    assert "diverged at step" in lab.message.value
    assert all(math.isfinite(v) for v in run["loss"])                 # no NaN ever enters a curve
    assert lab.image.value[:4] == b"\x89PNG"


@pytest.mark.slow
def test_branch_init_lab_trains_rezero_and_keeps_the_session_runs():
    lab = BranchInitLab(threaded=False)
    lab.depth.value, lab.epochs.value = 20, 1
    lab.run_button.click()
    lab.init.value = "rezero"
    lab.run_button.click()
    assert lab.error is None, lab.error
    assert len(lab.result["runs"]) == 2
    run = lab.result["runs"][lab.result["label"]]
    assert run["status"] == "finished" and run["loss"][-1] < run["loss"][0]
    lab.seed.value = -3
    lab.run_button.click()
    assert lab.error is not None and "seed" in lab.error


@pytest.mark.slow
def test_shortcut_lab_default_run_finishes():
    lab = ShortcutLab()
    lab.run_button.click()
    result = lab.wait(timeout=300)
    assert lab.error is None, lab.error
    base, variant = result[BASELINE], [r for k, r in result.items() if k != BASELINE][0]
    assert base["test_err"] < 0.2 < variant["test_err"]                # the lab's default shows the effect


@pytest.mark.slow
def test_shortcut_lab_lists_a_diverged_variant_without_nan():
    lab = ShortcutLab(threaded=False)
    lab.shortcut.value, lab.n_blocks.value, lab.epochs.value = "conv1x1", 54, 1
    lab.run_button.click()
    assert lab.error is None, lab.error
    chosen = [r for k, r in lab.result.items() if k != BASELINE][0]
    assert chosen["status"].startswith("diverged at step") and chosen["test_err"] is None
    assert all(math.isfinite(v) for v in chosen["loss"])
    assert "diverged at step" in lab.message.value and "diverged at step" in lab.table_html.value
    assert len(lab.table) == 2
