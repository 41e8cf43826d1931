"""The RNN question: a skip connection through time (the LSTM's additive cell state) against a
multiplicative recurrence (the tanh RNN) and a gated skip (the LSTM's forget gate, like a Highway layer).

Chapter: *Residual connections in Transformers (and the RNN question)*. Pure functions of
(config, seed) returning plain data; no plotting, no I/O.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from skipnet.probes.through_time import grad_through_time
from skipnet.recurrent import RecallTask, RecurrentConfig, build_recurrent
from skipnet.runtime import generator
from skipnet.train import History, TrainConfig, Trainer

__all__ = ["RNN_CELLS", "RNN_TRAIN", "TimeGradients", "gradient_through_time", "RecallRun", "train_recall"]

# tanh RNN: no skip through time; LSTM without forget gate: a pure additive skip (c_t = c_{t-1} + ...);
# LSTM with forget gate (bias 1, the common default): a gated skip, open only as far as sigmoid(f_t).
RNN_CELLS = {
    "tanh RNN": RecurrentConfig(cell="tanh"),
    "LSTM, no forget gate": RecurrentConfig(cell="lstm", forget_gate=False),
    "LSTM (forget gate)": RecurrentConfig(cell="lstm", forget_gate=True, forget_bias=1.0),
}
RNN_TRAIN = TrainConfig(lr=3e-3, optimizer="adamw", betas=(0.9, 0.98), weight_decay=0.0, batch_size=64,
                        steps=200, warmup_steps=10, schedule="cosine", grad_clip=1.0)


@dataclass
class TimeGradients:
    """``||dL/ds_t||`` at every step t of a freshly initialized net, one row a seed."""

    model: RecurrentConfig
    norms: np.ndarray                  # (seeds, length)

    @property
    def first_over_last(self) -> np.ndarray:
        """Per seed: gradient reaching the first step over the gradient at the last step."""
        return self.norms[:, 0] / self.norms[:, -1]


def gradient_through_time(model: RecurrentConfig, length: int = 100, seeds: Iterable[int] = (0, 1, 2),
                          batch_size: int = 64) -> TimeGradients:
    """How much of the loss gradient at the last step reaches each earlier step, at initialization."""
    task = RecallTask(length=length, vocab=model.vocab)
    rows = []
    for s in seeds:
        net = build_recurrent(model, seed=s)
        X, y = task.sample(batch_size, generator(40_000 + s))
        rows.append(grad_through_time(net, X, y))
    return TimeGradients(model, np.array(rows))


@dataclass
class RecallRun:
    """One training on the recall task."""

    label: str
    model: RecurrentConfig
    length: int
    seed: int
    history: History
    seconds: float

    @property
    def final_acc(self) -> float | None:
        return self.history.final.get("train_acc")

    @property
    def final_loss(self) -> float | None:
        return self.history.final.get("train_loss")

    def row(self) -> dict:
        return {"label": self.label, "length": self.length, "seed": self.seed, "status": self.history.status,
                "final_loss": self.final_loss, "final_acc": self.final_acc, "seconds": round(self.seconds, 2),
                "loss_curve": [round(v, 4) for v in self.history.loss]}


def train_recall(model: RecurrentConfig, length: int, seed: int = 0, train: TrainConfig = RNN_TRAIN,
                 label: str = "", callback: Callable[[Trainer], bool | None] | None = None) -> RecallRun:
    """Train one recurrent net to recall the first of ``length`` tokens; return the :class:`RecallRun`."""
    net = build_recurrent(model, seed=seed)
    t0 = time.perf_counter()
    history = Trainer(net, RecallTask(length=length, vocab=model.vocab), train.with_(seed=seed), callback).run()
    return RecallRun(label or model.label, model, length, seed, history, time.perf_counter() - t0)
