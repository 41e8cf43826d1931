"""The RNN question: a skip connection through time (the LSTM's additive cell state) against a
multiplicative recurrence (the tanh RNN) and a gated skip (the LSTM's forget gate, like a Highway layer).

Chapter: *Residual connections in Transformers (and the RNN question)*. Pure functions of
(config, seed) returning plain data; no plotting, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from skipnet.probes.through_time import grad_through_time
from skipnet.recurrent import RecallTask, RecurrentConfig
from skipnet.runtime import generator
from skipnet.train import Progress, Run, TrainConfig, train_run

__all__ = ["RNN_CELLS", "RNN_TRAIN", "TimeGradients", "gradient_through_time", "train_recall", "recall_row"]

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
    norms: np.ndarray                  # (seeds, seq_len)

    @property
    def first_over_last(self) -> np.ndarray:
        """Per seed: gradient reaching the first step over the gradient at the last step."""
        return self.norms[:, 0] / self.norms[:, -1]


def gradient_through_time(model: RecurrentConfig, seq_len: int = 100, seeds: Iterable[int] = (0, 1, 2),
                          batch_size: int = 64) -> TimeGradients:
    """How much of the loss gradient at the last step reaches each earlier step, at initialization."""
    task = RecallTask(seq_len=seq_len, vocab=model.vocab)
    rows = []
    for s in seeds:
        net = model.build(seed=s)
        X, y = task.sample(batch_size, generator(40_000 + s))
        rows.append(grad_through_time(net, X, y))
    return TimeGradients(model, np.array(rows))


def train_recall(model: RecurrentConfig, seq_len: int, seed: int = 0, train: TrainConfig = RNN_TRAIN,
                 label: str = "", progress: Progress | None = None) -> Run:
    """Train one recurrent net to recall the first of ``seq_len`` tokens; return the :class:`~skipnet.train.Run`
    (``run.extra["seq_len"]``: the sequence length)."""
    run = train_run(model, RecallTask(seq_len=seq_len, vocab=model.vocab), train, seed, label, progress)
    run.extra["seq_len"] = seq_len
    return run


def recall_row(run: Run, curve_every: int = 5) -> dict:
    """The stored record of one recall run: label, sequence length, seed, status, final loss and accuracy,
    seconds and the loss curve."""
    return {"label": run.label, "seq_len": run.extra["seq_len"], "seed": run.seed, "status": run.status,
            "train_loss": run.train_loss, "train_acc": run.train_acc, "seconds": round(run.seconds, 2),
            "loss_curve": [round(v, 4) for v in run.history.loss[::curve_every]], "curve_every": curve_every}
