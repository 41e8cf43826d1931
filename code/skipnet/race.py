"""Several trainings side by side: the labs' live races (chapters: intro, highway, identity, ensemble).

:func:`race` runs :class:`~skipnet.train.Trainer` s until all are done, with one progress callback over all of
them. With two or more cores each trainer runs in its own forked process on one thread
(:func:`skipnet.parallel.side_by_side`) and its model, optimizer and data order come back when it ends;
otherwise, or when a model draws from torch's global generator (:func:`draws_at_random`), they take one step
each in turn in this process. Both give the same numbers. :func:`race_runs` builds the networks, races them and
returns their :class:`~skipnet.history.Run` records.
"""
from __future__ import annotations

import time

import torch.nn as nn

from skipnet.config import Config
from skipnet.data import Dataset
from skipnet.history import History, Run
from skipnet.parallel import side_by_side, workers
from skipnet.train import Progress, Task, TrainConfig, Trainer

__all__ = ["race", "race_runs", "draws_at_random", "REPORT_EVERY_S"]


def race(trainers: dict[str, Trainer], progress: Progress | None = None) -> float:
    """Run several trainers side by side until all are done; return the seconds taken.

    ``progress(fraction, text, {name: history})`` runs as they go; returning ``False`` stops them all. Forked
    workers where :func:`~skipnet.parallel.workers` allows and no model :func:`draws_at_random` (interleaved
    trainings would share torch's global generator), else one step of each in turn here (module docstring).
    """
    t0 = time.perf_counter()
    if workers(len(trainers)) > 1 and not any(draws_at_random(t.model) for t in trainers.values()):
        _race_in_workers(trainers, progress)
        return time.perf_counter() - t0
    while not all(t.done for t in trainers.values()):
        for t in trainers.values():
            t.step()
        if progress is not None and _race_progress(trainers, progress) is False:
            for t in trainers.values():
                t.stop()
            break
    return time.perf_counter() - t0


REPORT_EVERY_S = 0.25         # how often a worker sends its history to the race's progress callback


def _race_progress(trainers: dict[str, Trainer], progress: Progress) -> bool | None:
    done = sum(t.history.steps_done for t in trainers.values())
    total = sum(t.total for t in trainers.values())
    text = "; ".join(f"{name}: {t.describe()}" for name, t in trainers.items())
    return progress(done / max(1, total), text, {name: t.history for name, t in trainers.items()})


def draws_at_random(model: nn.Module) -> bool:
    """Whether training ``model`` draws from torch's global generator: a module says so itself with a
    ``draws_at_random`` attribute (stochastic depth, a dropout shortcut); torch's own dropout when ``p > 0``."""
    return any(getattr(m, "draws_at_random", False) or (isinstance(m, nn.Dropout) and m.p > 0)
               for m in model.modules())


def _race_in_workers(trainers: dict[str, Trainer], progress: Progress | None) -> None:
    def task(trainer: Trainer):
        def run(report):
            last = 0.0
            while trainer.step():
                now = time.perf_counter()
                if now - last >= REPORT_EVERY_S:
                    last = now
                    if not report(trainer.history):
                        trainer.stop()
            return {"history": trainer.history, "model": trainer.model.state_dict(),
                    "opt": trainer.opt.state_dict(), "gen": trainer.gen.get_state(), "order": trainer._order}
        return run

    def on_report(name: str, history: History) -> bool | None:
        trainers[name].history = history           # this process's copy only shows the worker's progress
        return None if progress is None else _race_progress(trainers, progress)

    results = side_by_side({name: task(t) for name, t in trainers.items()}, on_report)
    for name, state in results.items():                # the trainer here continues where the worker's ended
        t = trainers[name]
        t.history, t._order = state["history"], state["order"]
        t.model.load_state_dict(state["model"])
        t.opt.load_state_dict(state["opt"])
        t.gen.set_state(state["gen"])
    if progress is not None:
        _race_progress(trainers, progress)


def race_runs(models: dict[str, Config], data: Dataset | Task, train: TrainConfig | dict[str, TrainConfig],
              seed: int = 0, progress: Progress | None = None) -> dict[str, Run]:
    """Build each network with ``seed``, race them (:func:`race`) with their training configs seeded the same,
    and return their :class:`~skipnet.history.Run` records."""
    trains = {k: train for k in models} if isinstance(train, TrainConfig) else train
    trainers = {k: Trainer(m.build(seed), data, trains[k].with_(seed=seed)) for k, m in models.items()}
    seconds = race(trainers, progress)
    return {k: Run(models[k], trains[k].with_(seed=seed), t.history, seconds, t.model.eval())
            for k, t in trainers.items()}
