"""One fast training loop over tensors already in memory.

A frozen :class:`TrainConfig` goes in, a :class:`History` comes out. The loop

* shuffles with its own seeded ``torch.Generator`` (same seed, bit-identical history on the CPU);
* uses SGD (momentum / Nesterov, weight decay) or AdamW with fused updates, a linear warm-up
  then a cosine (or constant) learning rate;
* stops at the first non-finite loss and records ``"diverged at step k"``: a divergence is a
  result, never a crash, and no NaN ever enters the recorded curves;
* calls ``callback(trainer)`` after each step: progress for widgets; a callback returning
  ``False`` stops the run (the widgets' stop buttons).

:class:`Trainer` exposes the loop one step at a time, so a widget can race two networks side by
side; :func:`fit` runs it to the end. Used in every chapter.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, asdict, replace
from typing import Callable, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.data import Dataset
from skipnet.runtime import device as default_device, generator, seed_everything

__all__ = ["TrainConfig", "History", "Trainer", "fit", "race", "evaluate", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the CNN settings of the opening chapter (SGD Nesterov, lr 0.1,
    weight decay 5e-4, batch 128, 10 epochs, 12-step warm-up, cosine).

    steps: total optimizer steps; ``None`` means ``epochs`` passes over the training set
        (``len(train) // batch_size`` steps an epoch).
    eval_every: evaluate on the full train and test sets every this many steps (0: only at the end).
    record_grads_every: every this many steps, record the gradient norm of each main-path weight
        layer (``History.grad_norms``); 0 records none.
    """

    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 128
    epochs: int = 10
    steps: int | None = None
    warmup_steps: int = 12
    schedule: str = "cosine"
    grad_clip: float | None = None
    seed: int = 0
    eval_every: int = 0
    record_grads_every: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not (0 < self.lr <= 10):
            raise ValueError(f"lr must be in (0, 10], got {self.lr}")
        if not 2 <= self.batch_size <= 65536:
            raise ValueError(f"batch_size must be between 2 and 65536, got {self.batch_size}")
        if self.steps is None and not 1 <= self.epochs <= 10000:
            raise ValueError(f"epochs must be between 1 and 10000, got {self.epochs}")
        if self.steps is not None and not 1 <= self.steps <= 10_000_000:
            raise ValueError(f"steps must be between 1 and 10,000,000, got {self.steps}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        per_epoch = max(1, n_train // self.batch_size)
        return self.epochs * per_epoch

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate for (0-based) ``step``: linear warm-up to ``lr``, then cosine to 0 (or constant)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        t = (step - self.warmup_steps) / max(1, total - self.warmup_steps)
        return 0.5 * self.lr * (1 + math.cos(math.pi * min(1.0, t)))

    def with_(self, **changes) -> "TrainConfig":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """What a training run produced. Curves hold finite values only.

    loss / acc: per step, on the training batch. evals: dicts with ``step``, ``train_loss``,
    ``train_acc``, ``test_loss``, ``test_acc`` (full sets, eval mode). grad_norms: rows of per-layer
    gradient norms at ``grad_steps``. status: ``"finished"``, ``"stopped at step k"`` or
    ``"diverged at step k"`` (k counted from 1).
    """

    loss: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    step_time: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    grad_steps: list[int] = field(default_factory=list)
    grad_norms: list[list[float]] = field(default_factory=list)
    layer_names: list[str] = field(default_factory=list)
    diverged_at: int | None = None
    stopped_at: int | None = None
    total_steps: int = 0

    @property
    def steps_done(self) -> int:
        return len(self.loss)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def status(self) -> str:
        if self.diverged_at is not None:
            return f"diverged at step {self.diverged_at}"
        if self.stopped_at is not None:
            return f"stopped at step {self.stopped_at}"
        return "finished" if self.steps_done >= self.total_steps else "running"

    @property
    def final(self) -> dict:
        """The last full evaluation (empty if none, e.g. after an early divergence)."""
        return self.evals[-1] if self.evals else {}

    def as_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status
        return d


class TaskStream(Protocol):
    """A task that draws a fresh batch each step (e.g. the Transformer chapter's sorting task)."""

    def sample(self, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...


def _loss_and_acc(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and accuracy; ``logits`` (..., C) with labels (...) (per example or per token)."""
    flat = logits.reshape(-1, logits.shape[-1])
    target = y.reshape(-1)
    loss = F.cross_entropy(flat, target)
    acc = (flat.argmax(-1) == target).float().mean()
    return loss, acc


def make_optimizer(cfg: TrainConfig, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, with a FUSED update (one pass over each tensor) where torch has one.

    On one CPU thread the fused SGD step of ResNet-20 takes about half the time of the foreach step
    (measured in ``bench/``); where fusing is unsupported the foreach update is used.
    """
    if cfg.optimizer == "sgd":
        make, kw = torch.optim.SGD, dict(lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                                         weight_decay=cfg.weight_decay)
    else:
        make, kw = torch.optim.AdamW, dict(lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    try:
        return make(params, fused=True, **kw)
    except (RuntimeError, ValueError, TypeError):     # a device or dtype without a fused kernel
        return make(params, foreach=True, **kw)


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) on ``(X, y)``."""
    was_training = model.training
    model.eval()
    total_loss, total_correct, n = 0.0, 0.0, 0
    for i in range(0, len(X), batch_size):
        logits = model(X[i:i + batch_size])
        flat = logits.reshape(-1, logits.shape[-1])
        target = y[i:i + batch_size].reshape(-1)
        total_loss += F.cross_entropy(flat, target, reduction="sum").item()
        total_correct += (flat.argmax(-1) == target).sum().item()
        n += target.numel()
    model.train(was_training)
    return total_loss / n, total_correct / n


class Trainer:
    """The training loop, one step at a time: ``while trainer.step(): ...``; result in ``trainer.history``."""

    def __init__(self, model: nn.Module, data: Dataset | TaskStream, cfg: TrainConfig = TrainConfig(),
                 callback: Callable[["Trainer"], bool | None] | None = None,
                 device: torch.device | str | None = None):
        self.cfg, self.callback = cfg, callback
        self.device = torch.device(device) if device is not None else default_device()
        seed_everything(cfg.seed)                   # stochastic depth / dropout shortcuts draw from torch's RNG
        self.gen = generator(cfg.seed)
        self.stream = None if isinstance(data, Dataset) else data
        cnn = isinstance(data, Dataset) and data.X_train.dim() == 4
        fmt = torch.channels_last if cnn else torch.contiguous_format   # +15-25 % for small CNNs on CPU
        self.model = model.to(self.device, memory_format=fmt) if cnn else model.to(self.device)
        if self.stream is None:
            self.data = data.to(self.device)
            self.X = self.data.X_train.contiguous(memory_format=fmt)
            self.y = self.data.y_train
            self.X_test = self.data.X_test.contiguous(memory_format=fmt)
            n = len(self.X)
        else:
            n = cfg.batch_size
        self.per_epoch = max(1, n // cfg.batch_size)
        self.total = cfg.total_steps(n)
        self.opt = self._optimizer()
        self.layers = list(model.main_layers()) if hasattr(model, "main_layers") else []
        self.history = History(total_steps=self.total, layer_names=[name for name, _ in self.layers])
        self._order: torch.Tensor | None = None
        self.model.train()

    def _optimizer(self) -> torch.optim.Optimizer:
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        return make_optimizer(self.cfg, [p for p in self.model.parameters() if p.requires_grad])

    @property
    def done(self) -> bool:
        h = self.history
        return h.diverged_at is not None or h.stopped_at is not None or h.steps_done >= self.total

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stream is not None:
            X, y = self.stream.sample(self.cfg.batch_size, self.gen)
            return X.to(self.device), y.to(self.device)
        k = step % self.per_epoch
        if k == 0:
            self._order = torch.randperm(len(self.X), generator=self.gen).to(self.device)
        idx = self._order[k * self.cfg.batch_size:(k + 1) * self.cfg.batch_size]
        return self.X[idx], self.y[idx]

    def stop(self) -> None:
        """Stop before the next step (records ``stopped at step k``)."""
        if not self.done:
            self.history.stopped_at = self.history.steps_done

    def step(self) -> bool:
        """Run one optimizer step; return whether more steps remain."""
        if self.done:
            return False
        h, c = self.history, self.cfg
        k = h.steps_done
        t0 = time.perf_counter()
        lr = c.lr_at(k, self.total)
        for group in self.opt.param_groups:
            group["lr"] = lr
        X, y = self._batch(k)
        loss, acc = _loss_and_acc(self.model(X), y)
        loss_value, acc_value = torch.stack([loss.detach(), acc]).tolist()   # ONE host sync a step, not two
        if not math.isfinite(loss_value):
            h.diverged_at = k + 1
            return False
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in self._params:
            if p.grad is None:              # e.g. a branch that stochastic depth skipped this step: a zero
                p.grad = torch.zeros_like(p)  # gradient keeps momentum and weight decay going (and fused SGD working)
        if c.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip, foreach=True)
        if c.record_grads_every and k % c.record_grads_every == 0 and self.layers:
            norms = torch.stack([w.weight.grad.norm() for _, w in self.layers]).tolist()
            if not all(math.isfinite(v) for v in norms):
                h.diverged_at = k + 1
                return False
            h.grad_steps.append(k)
            h.grad_norms.append(norms)
        self.opt.step()
        h.loss.append(loss_value)
        h.acc.append(acc_value)
        h.lr.append(lr)
        h.step_time.append(time.perf_counter() - t0)
        if (c.eval_every and (k + 1) % c.eval_every == 0) or k + 1 == self.total:
            self._evaluate(k + 1)
        if self.callback is not None and self.callback(self) is False:
            self.stop()
        return not self.done

    def _evaluate(self, step: int) -> None:
        if self.stream is not None:
            X, y = self.stream.sample(max(self.cfg.batch_size, 256), generator(10_000 + self.cfg.seed))
            loss, acc = evaluate(self.model, X.to(self.device), y.to(self.device))
            row = {"step": step, "train_loss": loss, "train_acc": acc, "test_loss": loss, "test_acc": acc}
        else:
            tr_loss, tr_acc = evaluate(self.model, self.X, self.y)
            te_loss, te_acc = evaluate(self.model, self.X_test, self.data.y_test)
            row = {"step": step, "train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc}
        if not math.isfinite(row["train_loss"]):
            self.history.diverged_at = step
            return
        self.history.evals.append(row)

    def run(self) -> History:
        while self.step():
            pass
        return self.history


def fit(model: nn.Module, data: Dataset | TaskStream, cfg: TrainConfig = TrainConfig(),
        callback: Callable[[Trainer], bool | None] | None = None,
        device: torch.device | str | None = None) -> History:
    """Train ``model`` on ``data`` with ``cfg``; return its :class:`History` (see module docstring)."""
    return Trainer(model, data, cfg, callback, device).run()


def race(trainers: dict[str, Trainer], on_step: Callable[[dict[str, Trainer]], bool | None] | None = None) -> float:
    """Run several trainers side by side, one step of each in turn, until all are done (the labs' live races).

    ``on_step(trainers)`` runs after every round (progress, live curves); returning ``False`` stops them all.
    Returns the seconds taken.
    """
    t0 = time.perf_counter()
    while not all(t.done for t in trainers.values()):
        for t in trainers.values():
            t.step()
        if on_step is not None and on_step(trainers) is False:
            for t in trainers.values():
                t.stop()
            break
    return time.perf_counter() - t0
