"""A lab's default training with one other CPU-bound process running, over the same without it.

The other process is a Python busy loop started by this benchmark (and ended by it) in a session
of its own, like a reader's other programs: Linux's scheduler (autogroup) shares the CPU between
sessions first, so a busy loop in the benchmark's own session would halve the benchmark's share on
an already loaded machine whatever the threads do. Rounds alternate: without, with, without,
with; the slowdown is the best busy run over the best idle run.
Beside it, the same contrast for ResNet-20 steps on one and on two torch threads shows why the
package uses one (thread oversubscription: ../shared/SCIENCE.md section 7).
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import torch

from benchlib import sync, threads
from skipnet.data import load_digits
from skipnet.models import build_model
from skipnet.train import TrainConfig, Trainer

BUSY_LOOP = "while True:\n    pass\n"


@contextlib.contextmanager
def busy_process():
    """One other CPU-bound process for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(0.3)                               # let it reach the CPU
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def default_workload():
    """(name, fn) of the training to time: the opening chapter's lab at its defaults if present,
    else the same training through the experiment function it calls."""
    try:
        from skipnet.widgets.degradation import DegradationRace
    except Exception:
        DegradationRace = None
    if DegradationRace is not None:
        def run_lab() -> float:
            lab = DegradationRace(threaded=False)
            lab.run_button.click()
            lab.wait()
            if lab.error:
                raise RuntimeError(f"DegradationRace failed: {lab.error}")
            return lab.elapsed_s
        return "widgets.degradation.DegradationRace (default run)", run_lab

    from skipnet.experiments.degradation import DEFAULT_TRAIN, race

    def run_race() -> float:
        t0 = time.perf_counter()
        race(20, train=DEFAULT_TRAIN.with_(epochs=6))
        return time.perf_counter() - t0
    return "experiments.degradation.race(20), 6 epochs", run_race


def steps_rate(n_threads: int, device: torch.device, seconds: float = 1.5, min_steps: int = 3) -> float:
    """ResNet-20 (width 16) training images/s on ``n_threads`` threads, timed for about ``seconds``."""
    trainer = Trainer(build_model(depth=20, width=16, seed=0), load_digits(),
                      TrainConfig(batch_size=128, steps=10 ** 6), device=device)
    with threads(n_threads):
        trainer.step()
        sync(device)
        t0, n = time.perf_counter(), 0
        while n < min_steps or time.perf_counter() - t0 < seconds:
            trainer.step()
            n += 1
        sync(device)
    return n * 128 / (time.perf_counter() - t0)


def _autogroup() -> bool | None:
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "1"
    except OSError:
        return None


def busy_section(device: torch.device, quick: bool = False, warm: bool = False) -> dict:
    """``warm``: the workload already ran in this process (the labs section), so skip the warm-up run."""
    name, workload = default_workload()
    rounds = 1 if quick else 2
    idle, busy = [], []
    if not warm:
        workload()                                     # warm-up: first calls of a model are slower
    for _ in range(rounds):
        idle.append(workload())
        with busy_process():
            busy.append(workload())
    out = {
        "busy_machine_slowdown": min(busy) / min(idle),
        "busy": {"workload": name, "idle_s": [round(x, 2) for x in idle], "busy_s": [round(x, 2) for x in busy],
                 "other_process": "python busy loop (one core), own session", "autogroup": _autogroup()},
    }
    if device.type == "cpu":
        contrast = {}
        for n in (1, 2):
            r_idle = steps_rate(n, device)
            with busy_process():
                r_busy = steps_rate(n, device)
            contrast[f"{n}_thread{'s' if n > 1 else ''}"] = {
                "idle_images_per_s": round(r_idle, 1), "busy_images_per_s": round(r_busy, 1),
                "slowdown": r_idle / r_busy}
        out["busy"]["resnet20_steps"] = contrast
    return out
