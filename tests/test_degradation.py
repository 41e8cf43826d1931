"""The opening chapter's claim: plain-56 trains far worse than residual-56 (He et al. 2015), over seeds."""
import math
from pathlib import Path

import numpy as np
import pytest

from skipnet.experiments.degradation import train_one, race, degradation_table, DEFAULT_TRAIN
from skipnet.plotting.degradation import plot_degradation_curves, plot_final_loss_by_depth
from skipnet.tables import degradation_markdown
from skipnet.store import load_result

SEEDS = (0, 1, 2)
DATA = Path(__file__).resolve().parents[1] / "book" / "data" / "highway_degradation.json"


def assert_median_within_the_stored_spread(live, stored, what):
    """The median of the live seeds against the median of the stored seeds, in log space, within the stored seeds'
    own log range ln(max / min). One seed on another CPU is another draw; the median of three moves far less than
    one seed, and a change that shifts the loss by more than the seeds' whole spread lands outside."""
    spread = math.log(max(stored) / min(stored))
    off = math.log(np.median(live) / np.median(stored))
    assert abs(off) <= spread, (f"median {what} {np.median(live):.4g} of {[round(v, 4) for v in live]} is "
                                f"{math.exp(abs(off)):.3g}x from the stored median {np.median(stored):.4g}; "
                                f"allowed {math.exp(spread):.3g}x (the stored seeds' max / min)")


@pytest.mark.slow
def test_plain_56_trains_far_worse_than_residual_56():
    """Every seed: plain-56 at least 10x above residual-56 (stored, per seed: 106x to 1069x), residual-56 below 0.1
    (stored: at most 0.021). Residual-56's median over the live seeds: within the stored seeds' spread (a factor 9.6)
    of the stored median. Plain-56 is held to the chapter's one-sided claim, near chance (median above 1.0): its five
    stored seeds agree within 1.15x (1.99-2.28), but live seeds on another CPU kernel reached 1.56 and 1.86, so its
    stored spread is no measure of its seed-to-seed spread."""
    stored = load_result(DATA)["data"]
    plain = [train_one(56, False, seed=s).train_loss for s in SEEDS]
    resid = [train_one(56, True, seed=s).train_loss for s in SEEDS]
    for p, r in zip(plain, resid):
        assert p > 10 * r, (plain, resid)
    assert max(resid) < 0.1 and np.median(plain) > 1.0, (plain, resid)
    assert_median_within_the_stored_spread(resid, [r["train_loss"] for r in stored
                                                   if (r["depth"], r["residual"]) == (56, True)],
                                           "training loss of residual-56")


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
