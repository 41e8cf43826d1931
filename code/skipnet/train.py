"""One fast training loop over tensors already in memory; it knows nothing of the model it trains.

A frozen :class:`TrainConfig` goes in, a :class:`History` comes out. The loop

* shuffles with its own seeded ``torch.Generator`` (same seed, bit-identical history on one machine);
* uses SGD (momentum / Nesterov, weight decay), AdamW or RAdam with fused updates where torch has them, a linear warm-up
  then a cosine (or constant) learning rate;
* stops at the first non-finite loss and records ``"diverged at step k"``: a divergence is a
  result, never a crash, and no NaN ever enters the recorded curves;
* reports progress through the one protocol of the package, ``progress(fraction, text, partial)``,
  after each step (``partial`` is the history so far); returning ``False`` stops the run (the labs'
  Stop buttons).

It trains on a :class:`~skipnet.data.Dataset` (epochs over a fixed training set) or on a :class:`Task`
that draws a fresh batch each step (the Transformer chapter's sorting task, the RNN's recall task, the
identity chapter's regression onto the input); a task may bring its own loss and evaluation.

:class:`Trainer` exposes the loop one step at a time (so :mod:`skipnet.race` can run trainers side by side)
and takes callbacks, as minGPT's trainer does: ``trainer.add_callback("on_step_end", fn)`` calls ``fn(trainer)``
after every completed step, which is how a chapter records an extra quantity along a run without a loop of its
own. :func:`fit` runs the loop to the end; :func:`train_run` builds, trains and returns the
:class:`~skipnet.history.Run` record (what was trained, what came out). Used in every chapter.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.checks import check_choice, check_float, check_int, check_seed
from skipnet.config import Config
from skipnet.data import Dataset
from skipnet.history import History, Run
from skipnet.runtime import device as default_device, eval_mode, generator, seed_everything

__all__ = ["TrainConfig", "Trainer", "Task", "Progress", "fit", "evaluate", "train_run", "sub_progress",
           "make_optimizer", "EVENTS", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adamw", "radam")
EVENTS = ("on_step_end",)           # when a Trainer calls its callbacks
SCHEDULES = ("cosine", "constant")

Progress = Callable[[float, str, Any], "bool | None"]
"""The progress protocol: ``progress(fraction, text, partial)`` with ``fraction`` in [0, 1], a line of
text and a partial result (a :class:`History`, or a dict of them in a race); returning ``False`` stops."""


def sub_progress(progress: Progress | None, low: float, high: float, prefix: str = "") -> Progress | None:
    """``progress`` for one part of a longer job: maps fraction 0..1 onto ``low``..``high`` and prefixes the text."""
    if progress is None:
        return None

    def report(fraction: float, text: str = "", partial: Any = None) -> bool | None:
        return progress(low + (high - low) * fraction, f"{prefix}{text}", partial)
    return report


@dataclass(frozen=True)
class TrainConfig(Config):
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
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_float("lr", self.lr, 0, 10, low_open=True)
        check_int("batch_size", self.batch_size, 2, 65536)
        if self.steps is None:
            check_int("epochs", self.epochs, 1, 10000)
        else:
            check_int("steps", self.steps, 1, 10_000_000)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_float("momentum", self.momentum, 0, 1, high_open=True)
        check_float("weight_decay", self.weight_decay, 0, 10)
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, 0, 1e9, low_open=True)
        check_seed(self.seed)
        check_int("eval_every", self.eval_every, 0)
        check_int("record_grads_every", self.record_grads_every, 0)

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


class Task(Protocol):
    """A task that draws a fresh batch each step (the sorting and recall tasks, the identity fit).

    ``sample(batch_size, generator) -> (X, y)`` is required. A task may also define
    ``loss(outputs, y) -> (loss, score)`` (default: cross-entropy and accuracy) and
    ``evaluate(model, seed) -> dict`` (default: cross-entropy and accuracy on a fixed batch drawn with
    ``generator(10_000 + seed)``); the dict's values are recorded in ``History.evals``.
    """

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...


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
    elif cfg.optimizer == "radam":     # rectified Adam (Liu L. et al. 2020), the Transformer chapter's warm-up triage
        make, kw = torch.optim.RAdam, dict(lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                           decoupled_weight_decay=True)
    else:
        make, kw = torch.optim.AdamW, dict(lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    try:
        return make(params, fused=True, **kw)
    except (RuntimeError, ValueError, TypeError):     # a device or dtype without a fused kernel
        return make(params, foreach=True, **kw)


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) on ``(X, y)``."""
    total_loss, total_correct, n = 0.0, 0.0, 0
    with eval_mode(model):
        for i in range(0, len(X), batch_size):
            logits = model(X[i:i + batch_size])
            flat = logits.reshape(-1, logits.shape[-1])
            target = y[i:i + batch_size].reshape(-1)
            total_loss += F.cross_entropy(flat, target, reduction="sum").item()
            total_correct += (flat.argmax(-1) == target).sum().item()
            n += target.numel()
    return total_loss / n, total_correct / n


class Trainer:
    """The training loop, one step at a time: ``while trainer.step(): ...``; result in ``trainer.history``.

    ``add_callback("on_step_end", fn)``: ``fn(trainer)`` runs after every completed step (its loss recorded, its
    evaluation done, before ``progress``); ``trainer.stop()`` inside it ends the run.
    """

    def __init__(self, model: nn.Module, data: Dataset | Task, cfg: TrainConfig = TrainConfig(),
                 progress: Progress | None = None, device: torch.device | str | None = None):
        self.cfg, self.progress = cfg, progress
        self.device = torch.device(device) if device is not None else default_device()
        seed_everything(cfg.seed)                   # stochastic depth / dropout shortcuts draw from torch's RNG
        self.gen = generator(cfg.seed)
        self.task = None if isinstance(data, Dataset) else data
        self.loss_fn = getattr(self.task, "loss", _loss_and_acc)
        cnn = isinstance(data, Dataset) and data.X_train.dim() == 4
        fmt = torch.channels_last if cnn else torch.contiguous_format   # +15-25 % for small CNNs on CPU
        self.model = model.to(self.device, memory_format=fmt) if cnn else model.to(self.device)
        if self.task is None:
            self.data = data.to(self.device)
            self.X = self.data.X_train.contiguous(memory_format=fmt)
            self.y = self.data.y_train
            self.X_test = self.data.X_test.contiguous(memory_format=fmt)
            n = len(self.X)
        else:
            n = cfg.batch_size
        self.per_epoch = max(1, n // cfg.batch_size)
        self.total = cfg.total_steps(n)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = make_optimizer(cfg, self._params)
        self.layers = list(model.main_layers()) if hasattr(model, "main_layers") else []
        self.history = History(total_steps=self.total, layer_names=[name for name, _ in self.layers])
        self._order: torch.Tensor | None = None
        self.callbacks: dict[str, list[Callable[[Trainer], None]]] = defaultdict(list)
        self.model.train()

    def add_callback(self, event: str, callback: Callable[[Trainer], None]) -> None:
        """Call ``callback(self)`` at ``event`` (one of :data:`EVENTS`)."""
        check_choice("event", event, EVENTS)
        self.callbacks[event].append(callback)

    def trigger_callbacks(self, event: str) -> None:
        for callback in self.callbacks.get(event, []):
            callback(self)

    @property
    def done(self) -> bool:
        h = self.history
        return h.diverged_at is not None or h.stopped_at is not None or h.steps_done >= self.total

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task is not None:
            X, y = self.task.sample(self.cfg.batch_size, self.gen)
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
        loss, acc = self.loss_fn(self.model(X), y)
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
        self.trigger_callbacks("on_step_end")
        if self.progress is not None and self.progress(h.steps_done / self.total, self.describe(), h) is False:
            self.stop()
        return not self.done

    def describe(self) -> str:
        """One line for a progress message: ``"step 12/110, loss 1.93"`` (or the status once stopped)."""
        h = self.history
        if h.diverged or h.stopped_at is not None or not h.loss:
            return h.status
        return f"step {h.steps_done}/{self.total}, loss {h.loss[-1]:.3g}"

    def _evaluate(self, step: int) -> None:
        if self.task is not None and hasattr(self.task, "evaluate"):
            row = {"step": step, **self.task.evaluate(self.model, self.cfg.seed)}
        elif self.task is not None:
            X, y = self.task.sample(max(self.cfg.batch_size, 256), generator(10_000 + self.cfg.seed))
            loss, acc = evaluate(self.model, X.to(self.device), y.to(self.device))
            row = {"step": step, "train_loss": loss, "train_acc": acc, "test_loss": loss, "test_acc": acc}
        else:
            tr_loss, tr_acc = evaluate(self.model, self.X, self.y)
            te_loss, te_acc = evaluate(self.model, self.X_test, self.data.y_test)
            row = {"step": step, "train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc}
        if not all(math.isfinite(v) for v in row.values()):
            self.history.diverged_at = step
            return
        self.history.evals.append(row)

    def run(self) -> History:
        while self.step():
            pass
        return self.history


def fit(model: nn.Module, data: Dataset | Task, cfg: TrainConfig = TrainConfig(),
        progress: Progress | None = None, device: torch.device | str | None = None) -> History:
    """Train ``model`` on ``data`` with ``cfg``; return its :class:`History` (see module docstring)."""
    return Trainer(model, data, cfg, progress, device).run()


def train_run(model: Config, data: Dataset | Task, train: TrainConfig, seed: int = 0, label: str = "",
              progress: Progress | None = None, keep: bool = True) -> Run:
    """Build ``model`` with ``seed``, train it on ``data`` with ``train`` (seeded the same), return the :class:`Run`."""
    net = model.build(seed)
    t0 = time.perf_counter()
    train = train.with_(seed=seed)
    history = Trainer(net, data, train, progress).run()
    return Run(model, train, history, time.perf_counter() - t0, net.eval() if keep else None, label)
