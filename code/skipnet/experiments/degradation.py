"""The degradation problem (He et al. 2015, Fig. 1 and 6) on the digits: deeper plain CNNs train
WORSE, residual ones do not. The opening chapter and *The gradient highway*.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from skipnet.data import load_digits
from skipnet.models import ModelConfig
from skipnet.train import Progress, Run, TrainConfig, race_runs, train_run

__all__ = ["DEFAULT_MODEL", "DEFAULT_TRAIN", "train_one", "race", "degradation_table", "degradation_row",
           "epoch_means"]

DEFAULT_MODEL = ModelConfig(arch="cnn", depth=20, width=8, norm="batch")
DEFAULT_TRAIN = TrainConfig(lr=0.1, optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4,
                            batch_size=128, epochs=10, warmup_steps=12, schedule="cosine")


def train_one(depth: int, residual: bool, seed: int = 0, model: ModelConfig = DEFAULT_MODEL,
              train: TrainConfig = DEFAULT_TRAIN, progress: Progress | None = None) -> Run:
    """Train one CNN of the given depth on the digits; return the :class:`~skipnet.train.Run`."""
    return train_run(model.with_(depth=depth, residual=residual), load_digits(), train, seed, progress=progress)


def race(depth: int, seed: int = 0, model: ModelConfig = DEFAULT_MODEL, train: TrainConfig = DEFAULT_TRAIN,
         progress: Progress | None = None, variants: Iterable[bool] = (False, True)) -> dict[str, Run]:
    """Train the plain and the residual network of one depth side by side, one step of each in turn.

    ``progress(fraction, text, {"plain": history, "residual": history})`` runs after every pair of steps
    (live curves); returning ``False`` stops both. Returns a Run per variant, keyed ``"plain"`` / ``"residual"``.
    """
    models = {("residual" if r else "plain"): model.with_(depth=depth, residual=r) for r in variants}
    return race_runs(models, load_digits(), train, seed, progress)


def degradation_table(depths: Iterable[int] = (8, 20, 56), seeds: Iterable[int] = (0,),
                      model: ModelConfig = DEFAULT_MODEL, train: TrainConfig = DEFAULT_TRAIN) -> list[Run]:
    """Every (depth, plain/residual, seed) combination, trained to the end (plain and residual side by side)."""
    depths, seeds = list(depths), list(seeds)
    races = {(d, s): race(d, s, model, train) for d in depths for s in seeds}
    return [races[(d, s)][kind] for d in depths for kind in ("plain", "residual") for s in seeds]


def epoch_means(values: list[float], per_epoch: int) -> list[float]:
    """Mean of a per-step curve over each epoch (a last partial epoch is averaged too)."""
    return [float(np.mean(values[i:i + per_epoch])) for i in range(0, len(values), per_epoch)]


def degradation_row(run: Run) -> dict:
    """The stored record of one run: :meth:`Run.row` with depth and residual, plus ``epoch_loss`` (the mean
    training-batch loss of each epoch)."""
    per_epoch = max(1, len(load_digits().X_train) // run.train.batch_size)
    row = run.row("depth", "residual")
    del row["label"]
    return {**row, "epoch_loss": epoch_means(run.history.loss, per_epoch)}
