"""The degradation problem (He et al. 2015, Fig. 1 and 6) on the digits: deeper plain CNNs train
WORSE, residual ones do not. The opening chapter and *The gradient highway*.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, asdict
from typing import Callable, Iterable

from skipnet.data import load_digits
from skipnet.models import ModelConfig, build_model
from skipnet.train import History, TrainConfig, Trainer, race as run_race

__all__ = ["DEFAULT_MODEL", "DEFAULT_TRAIN", "Run", "train_one", "race", "degradation_table"]

DEFAULT_MODEL = ModelConfig(arch="cnn", depth=20, width=8, norm="batch")
DEFAULT_TRAIN = TrainConfig(lr=0.1, optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4,
                            batch_size=128, epochs=10, warmup_steps=12, schedule="cosine")


@dataclass
class Run:
    """One finished training: what was trained and what came out."""

    depth: int
    residual: bool
    seed: int
    history: History
    seconds: float

    @property
    def label(self) -> str:
        return f"{'residual' if self.residual else 'plain'}-{self.depth}"

    @property
    def train_loss(self) -> float:
        return self.history.final.get("train_loss", float("nan"))

    def row(self) -> dict:
        f = self.history.final
        return {"depth": self.depth, "residual": self.residual, "seed": self.seed, "status": self.history.status,
                "train_loss": f.get("train_loss"), "train_err": None if not f else 1 - f["train_acc"],
                "test_err": None if not f else 1 - f["test_acc"], "seconds": round(self.seconds, 2)}


def train_one(depth: int, residual: bool, seed: int = 0, model: ModelConfig = DEFAULT_MODEL,
              train: TrainConfig = DEFAULT_TRAIN, callback: Callable[[Trainer], bool | None] | None = None) -> Run:
    """Train one CNN of the given depth on the digits; return the :class:`Run`."""
    net = build_model(model.with_(depth=depth, residual=residual), seed=seed)
    t0 = time.perf_counter()
    trainer = Trainer(net, load_digits(), train.with_(seed=seed), callback)
    history = trainer.run()
    return Run(depth, residual, seed, history, time.perf_counter() - t0)


def race(depth: int, seed: int = 0, model: ModelConfig = DEFAULT_MODEL, train: TrainConfig = DEFAULT_TRAIN,
         on_step: Callable[[dict[str, Trainer]], bool | None] | None = None,
         variants: Iterable[bool] = (False, True)) -> dict[str, Run]:
    """Train the plain and the residual network of one depth side by side, one step of each in turn.

    ``on_step(trainers)`` is called after every pair of steps (progress, live curves); returning
    ``False`` stops both. Returns a :class:`Run` per variant, keyed ``"plain"`` / ``"residual"``.
    """
    data = load_digits()
    trainers = {}
    for residual in variants:
        net = build_model(model.with_(depth=depth, residual=residual), seed=seed)
        trainers["residual" if residual else "plain"] = Trainer(net, data, train.with_(seed=seed))
    seconds = run_race(trainers, on_step)
    return {k: Run(depth, k == "residual", seed, t.history, seconds) for k, t in trainers.items()}


def degradation_table(depths: Iterable[int] = (8, 20, 56), seeds: Iterable[int] = (0,),
                      model: ModelConfig = DEFAULT_MODEL, train: TrainConfig = DEFAULT_TRAIN) -> list[Run]:
    """Every (depth, plain/residual, seed) combination, trained to the end."""
    return [train_one(d, r, s, model, train) for d in depths for r in (False, True) for s in seeds]
