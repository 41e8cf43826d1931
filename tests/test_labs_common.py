"""What every lab of the book does alike, checked on every lab: it builds with no arguments, a small run ends
without an error and draws, a seed out of range is refused with the accepted range named, and a training lab
stops when Stop is pressed once it has started. What is particular to one lab stays in its chapter's widget tests.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import time

import pytest

import skipnet.widgets
from skipnet.widgets.base import Lab

MAX_SEED_TEXT = "4,294,967,295"             # the accepted range the labs name: 0 .. 2^32 - 1
PNG = b"\x89PNG"

# lab -> controls for a run of a few seconds
SMALL = {
    "DegradationRace": dict(which="residual", depth=8, epochs=1),
    "TrainingRaceLab": dict(depth=8, epochs=1),
    "GradientProfileLab": dict(n_blocks=5),
    "ChiLab": dict(n_blocks=8),
    "ShortcutLab": dict(n_blocks=4, epochs=1),
    "BranchInitLab": dict(depth=20, epochs=1),
    "LesionLab": dict(depth=8),
    "PathExplorer": dict(trained=False, depth=8, samples=2),
    "TransformerLab": dict(n_blocks=1, steps=50, warmup=0),
    "RankCollapseExplorer": dict(n_blocks=2),
}
# training lab -> controls for a run long enough to be stopped half-way
LONG = {
    "DegradationRace": dict(depth=20, epochs=20),
    "TrainingRaceLab": dict(depth=20, epochs=10),
    "LesionLab": dict(depth=56),
    "TransformerLab": dict(steps=600),
}


def _labs() -> list[type[Lab]]:
    for info in pkgutil.iter_modules(skipnet.widgets.__path__):
        importlib.import_module(f"skipnet.widgets.{info.name}")
    found, todo = [], list(Lab.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("skipnet.widgets.") and not cls.__name__.startswith("_"):
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


LABS = _labs()


def _set(lab: Lab, controls: dict) -> None:
    for name, value in controls.items():
        getattr(lab, name).value = value


def test_every_lab_has_small_settings_here():
    assert {c.__name__ for c in LABS} == set(SMALL), "a new lab: give it small settings in SMALL (and LONG if it trains)"


@pytest.mark.parametrize("cls", LABS, ids=lambda c: c.__name__)
def test_a_lab_builds_and_a_small_run_ends_without_error(cls):
    for threaded in (True, False):
        lab = cls(threaded=threaded)
        assert lab.widget is not None and lab.result is None and not lab.running
    _set(lab, SMALL[cls.__name__])                  # an auto-run lab already recomputes on each change
    lab.run_button.click()
    assert lab.error is None, lab.error
    assert lab.result is not None and bytes(lab.image.value).startswith(PNG)
    assert not lab.run_button.disabled and lab.stop_button.disabled


@pytest.mark.parametrize("cls", [c for c in LABS if hasattr(c(), "seed")], ids=lambda c: c.__name__)
def test_a_seed_out_of_range_is_named_with_the_accepted_range(cls):
    lab = cls(threaded=False)
    _set(lab, SMALL[cls.__name__])
    lab.seed.value = 10 ** 20
    lab.run_button.click()
    assert lab.result is None
    for text in (lab.error, lab.message.value):
        assert "seed" in text and "between 0 and" in text and MAX_SEED_TEXT in text, text
    assert "Traceback" not in lab.message.value


@pytest.mark.parametrize("cls", [c for c in LABS if c.__name__ in LONG], ids=lambda c: c.__name__)
def test_a_training_lab_stops_once_started(cls):
    lab = cls()
    _set(lab, LONG[cls.__name__])
    lab.run_button.click()
    deadline = time.time() + 60
    while lab.progress.value == 0 and time.time() < deadline:
        time.sleep(0.05)
    lab.stop_button.click()
    lab.wait(timeout=300)
    assert lab.error is None, lab.error
    assert "stopped at step" in lab.message.value
    assert bytes(lab.image.value).startswith(PNG)
