"""The opening chapter's claim: plain-56 trains far worse than residual-56 (He et al. 2015), over seeds."""
import math

import numpy as np
import pytest

from skipnet.experiments.degradation import train_one, race, degradation_table, DEFAULT_TRAIN
from skipnet.plotting.degradation import plot_degradation_curves, plot_final_loss_by_depth
from skipnet.tables import degradation_markdown

SEEDS = (0, 1, 2)


@pytest.mark.slow
def test_plain_56_trains_far_worse_than_residual_56():
    plain = [train_one(56, False, seed=s).train_loss for s in SEEDS]
    resid = [train_one(56, True, seed=s).train_loss for s in SEEDS]
    # measured: plain ~2, residual ~0.01; demand a 10x gap in every seed and absolute levels with wide margins
    for p, r in zip(plain, resid):
        assert p > 10 * r, (plain, resid)
    assert np.median(plain) > 0.3 and max(resid) < 0.1


@pytest.mark.slow
def test_shallow_plain_and_residual_both_train():
    for residual in (False, True):
        run = train_one(8, residual, seed=0)
        assert run.history.status == "finished" and run.train_loss < 0.1


def test_race_alternates_and_can_stop(monkeypatch):
    """In one process a race takes one step of each net in turn (side by side in workers: tests/test_parallel.py)."""
    monkeypatch.setenv("SKIPNET_WORKERS", "1")
    calls = []

    def progress(fraction, text, histories):
        calls.append(({k: h.steps_done for k, h in histories.items()}, fraction, text))
        return len(calls) < 4

    runs = race(8, seed=0, train=DEFAULT_TRAIN.with_(epochs=1), progress=progress)
    assert [c[0] for c in calls[:2]] == [{"plain": 1, "residual": 1}, {"plain": 2, "residual": 2}]
    total = runs["plain"].history.total_steps
    assert calls[1][1] == pytest.approx(2 / total) and "plain: step 2/" in calls[1][2] and "residual:" in calls[1][2]
    assert runs["plain"].history.status == runs["residual"].history.status == "stopped at step 4"
    assert runs["plain"].label == "plain-8" and runs["residual"].net is not None


def test_table_and_figures_from_short_runs():
    runs = degradation_table(depths=(8, 14), seeds=(0,), train=DEFAULT_TRAIN.with_(epochs=1))
    assert [(r.model.depth, r.model.residual) for r in runs] == [(8, False), (8, True), (14, False), (14, True)]
    md = degradation_markdown(runs)
    assert md.count("\n") == 3 and "| 8 |" in md and "| 14 |" in md
    axes = plot_degradation_curves(runs)
    assert len(axes) == 2
    ax = plot_final_loss_by_depth(runs)
    assert ax.get_yscale() == "log"
    assert all(math.isfinite(r.train_loss) for r in runs)
