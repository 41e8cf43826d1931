"""Experiments of the chapter *The identity mapping*: pure functions of (config, seed) returning data.

* :func:`fit_identity`: a deep stack of blocks is asked to compute the identity (or a near-identity
  map) of the digits. A residual block is the identity when its branch is zero; a plain block has
  to find it in its weights. Trained by :class:`~skipnet.train.Trainer` on an :class:`IdentityTask`.
* :func:`train_digits`: train any :class:`~skipnet.models.ModelConfig` on the digits (the trained
  branches, the zero-gamma comparison, the branch initializations without normalization).
* :data:`INIT_VARIANTS` / :func:`train_init`: a deep residual CNN without normalization and four
  ways to initialize its branches (SkipInit / ReZero, Fixup-style, 1/sqrt(L)); :func:`train_init_traced`
  also records each step's largest ReZero scalar (the learning-rate sweep).

The shortcut and activation-placement study of He et al. (2016) is in :mod:`skipnet.experiments.identity_variants`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.checks import check_float, check_int
from skipnet.config import Config
from skipnet.data import load_digits
from skipnet.experiments.degradation import DEFAULT_TRAIN
from skipnet.history import Run
from skipnet.models import ModelConfig, build_model
from skipnet.runtime import generator
from skipnet.train import Progress, TrainConfig, Trainer, train_run

__all__ = [
    "IdentityFitConfig", "IdentityTask", "identity_target", "fit_identity", "final_rel_error", "train_digits",
    "BRANCH_MODEL", "NO_NORM_MODEL", "NO_NORM_TRAIN", "INIT_VARIANTS", "INIT_LABELS", "init_config", "train_init",
    "train_init_traced", "INIT_LRS", "LONG_TRAIN", "lifted",
    "median_error", "group_rows", "best_lr_errors",
]


# -- 1. fitting the identity ----------------------------------------------------------------------
@dataclass(frozen=True)
class IdentityFitConfig(Config):
    """The identity-fitting task: blocks of ``width`` = 64 units (one per pixel) map the standardized
    digits ``X`` (N, 64) to ``X + eps * tanh(X A)`` (``eps = 0``: the identity itself).
    The error is measured on the test digits, with BatchNorm using the statistics of that batch.

    ``lift=True`` is the control for the plain stack's handicap: a ReLU block cannot pass a negative
    pixel, so the stream is 128 wide and holds ``[x, -x]``; only the first 64 coordinates are scored,
    and ``x = relu(x) - relu(-x)`` is within reach of a single weight layer.

    The blocks are the book's MLP blocks (``norm``, ``placement``) without the stem and the classifier,
    so the network is ``x -> block_L(... block_1(x))`` and nothing else has to be learned.
    Trained by SGD (momentum, constant lr) on the mean squared error for ``steps`` steps.
    """

    width: int = 64
    norm: str = "batch"
    placement: str = "pre"
    block_layers: int = 2
    steps: int = 300
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 128
    eps: float = 0.0
    eval_every: int = 25
    lift: bool = False

    def __post_init__(self) -> None:
        check_int("width", self.width, 64, 64)           # one unit per pixel of the 8x8 digits
        check_int("steps", self.steps, 1, 100_000)
        check_float("lr", self.lr, 0, 1, low_open=True)
        check_float("eps", self.eps, 0, 2)
        check_int("eval_every", self.eval_every, 1)
        if not isinstance(self.lift, bool):
            raise ValueError(f"lift must be True or False, got {self.lift!r}")

    @property
    def stream_width(self) -> int:
        """Units of every block: 64, or 128 for the lifted stream ``[x, -x]``."""
        return 2 * self.width if self.lift else self.width

    def model(self, n_blocks: int, residual: bool) -> ModelConfig:
        w = self.stream_width
        return ModelConfig(arch="mlp", n_blocks=n_blocks, width=w, norm=self.norm, placement=self.placement,
                           residual=residual, block_layers=self.block_layers, in_shape=(w,), n_classes=w)

    @property
    def train(self) -> TrainConfig:
        return TrainConfig(lr=self.lr, optimizer="sgd", momentum=self.momentum, nesterov=False, weight_decay=0.0,
                           batch_size=self.batch_size, steps=self.steps, warmup_steps=0, schedule="constant",
                           eval_every=self.eval_every)


def identity_target(X: torch.Tensor, eps: float, seed: int = 0) -> torch.Tensor:
    """``X + eps * tanh(X A)`` with a fixed random ``A`` (64 x 64, entries N(0, 1/64)); ``X`` when eps = 0."""
    if eps == 0:
        return X.clone()
    A = torch.randn(X.shape[1], X.shape[1], generator=generator(7_000 + seed)) / math.sqrt(X.shape[1])
    return X + eps * torch.tanh(X @ A)


class IdentityTask:
    """A :class:`~skipnet.train.Task`: regress the training digits ``X`` onto ``Y``, batches drawn with
    replacement; evaluated as ``rel_error``, the test-set squared error over the targets' variance
    (0: perfect; 1: no better than predicting the mean). BatchNorm keeps using batch statistics (here:
    of the whole test set): running statistics are meaningless at step 0, where the stream has not
    been normalized yet."""

    def __init__(self, X: torch.Tensor, Y: torch.Tensor, X_test: torch.Tensor, Y_test: torch.Tensor):
        self.X, self.Y, self.X_test, self.Y_test = X, Y, X_test, Y_test

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.X), (batch_size,), generator=generator)
        return self.X[idx], self.Y[idx]

    @staticmethod
    def loss(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared error on the target's coordinates (the first ``y.shape[1]`` of the stream), and the
        batch's R^2 as the score."""
        out = out[:, :y.shape[1]]
        loss = F.mse_loss(out, y)
        return loss, 1 - ((out - y) ** 2).sum().detach() / ((y - y.mean(0)) ** 2).sum()

    @torch.no_grad()
    def evaluate(self, body: nn.Module, seed: int = 0) -> dict:
        out = body(self.X_test)[:, :self.Y_test.shape[1]]
        err = ((out - self.Y_test) ** 2).sum() / ((self.Y_test - self.Y_test.mean(0)) ** 2).sum()
        return {"rel_error": float(err)}


def lifted(X: torch.Tensor) -> torch.Tensor:
    """``[x, -x]``: the stream of the lifted identity task (N, 128)."""
    return torch.cat([X, -X], dim=1)


def fit_identity(n_blocks: int, residual: bool, seed: int = 0, cfg: IdentityFitConfig = IdentityFitConfig(),
                 progress: Progress | None = None) -> Run:
    """Train ``n_blocks`` blocks (plain or residual) to reproduce their input; return the :class:`~skipnet.history.Run`.

    ``run.curve("rel_error")`` is the test error at step 0 (initialization), every ``cfg.eval_every``
    steps and at the end; :func:`final_rel_error` the last one (``inf`` after a divergence).
    """
    check_int("n_blocks", n_blocks, 1, 200)
    ds = load_digits(flatten=True)
    lift = lifted if cfg.lift else (lambda Z: Z)
    task = IdentityTask(lift(ds.X_train), identity_target(ds.X_train, cfg.eps), lift(ds.X_test),
                        identity_target(ds.X_test, cfg.eps))
    model = cfg.model(n_blocks, residual)
    body = nn.Sequential(*build_model(model, seed=seed).blocks)        # (B, 64) -> (B, 64): blocks only
    train = cfg.train.with_(seed=seed)
    t0 = time.perf_counter()
    at_init = {"step": 0, **task.evaluate(body)}
    history = Trainer(body, task, train, progress).run()
    history.evals.insert(0, at_init)
    label = f"{'residual' if residual else 'plain'}, {n_blocks} blocks" + (", [x, -x]" if cfg.lift else "")
    return Run(model, train, history, time.perf_counter() - t0, body, label)


def final_rel_error(run: Run) -> float:
    """The last recorded relative error of an identity fit, ``inf`` if the run diverged."""
    return math.inf if run.history.diverged else run.history.evals[-1]["rel_error"]


# -- 2. training on the digits ----------------------------------------------------------------------
BRANCH_MODEL = ModelConfig(arch="cnn", depth=56, width=8, norm="batch")            # post-activation, He et al. 2015
LONG_TRAIN = DEFAULT_TRAIN.with_(epochs=40, eval_every=110)     # 440 steps: every network reaches its floor


def train_digits(cfg: ModelConfig, seed: int = 0, train: TrainConfig = DEFAULT_TRAIN,
                 progress: Progress | None = None, keep_model: bool = True) -> Run:
    """Train the network ``cfg`` on the digits (images for the CNN, vectors for the MLP)."""
    if cfg.arch == "mlp" and cfg.in_shape != (64,):
        cfg = cfg.with_(in_shape=(64,))
    return train_run(cfg, load_digits(flatten=cfg.arch == "mlp"), train, seed, progress=progress, keep=keep_model)


# -- 3. initializing the branch without normalization ------------------------------------------------
NO_NORM_MODEL = ModelConfig(arch="cnn", depth=56, width=8, norm="none")
NO_NORM_TRAIN = DEFAULT_TRAIN.with_(lr=0.05)
INIT_VARIANTS: dict[str, dict] = {
    "standard": {},
    "1/sqrt(L)": {"branch_scale": "1/sqrt(L)"},
    "rezero": {"init": "rezero"},
    "fixup": {"init": "fixup"},
}
INIT_LABELS = {"standard": "standard (He) init", "1/sqrt(L)": "branch x 1/sqrt(L)",
               "rezero": "SkipInit / ReZero (alpha = 0)", "fixup": "Fixup-style"}
INIT_LRS = {"standard": (1e-4, 1e-3, 5e-3, 0.01, 0.02, 0.05, 0.1), "1/sqrt(L)": (0.02, 0.05, 0.1, 0.2),
            "rezero": (0.02, 0.05, 0.1, 0.2), "fixup": (0.02, 0.05, 0.1, 0.2)}
"""The learning rates of the stored sweep: the standard init from far below to above 0.05, the others around it."""


def init_config(key: str, base: ModelConfig = NO_NORM_MODEL, **changes) -> ModelConfig:
    """The no-normalization network with branch initialization ``key`` (one of :data:`INIT_VARIANTS`)."""
    if key not in INIT_VARIANTS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INIT_VARIANTS))}; got {key!r}")
    return base.with_(**{**INIT_VARIANTS[key], **changes})


def train_init(key: str, seed: int = 0, base: ModelConfig = NO_NORM_MODEL, train: TrainConfig = NO_NORM_TRAIN,
               progress: Progress | None = None, **changes) -> Run:
    """Train the no-normalization network with branch initialization ``key``; a divergence is a result."""
    return train_digits(init_config(key, base, **changes), seed, train, progress, keep_model=False)


def train_init_traced(key: str, seed: int = 0, lr: float = NO_NORM_TRAIN.lr, base: ModelConfig = NO_NORM_MODEL,
                      train: TrainConfig = NO_NORM_TRAIN) -> Run:
    """:func:`train_init` at learning rate ``lr``, step by step; for ReZero ``run.extra["alpha_max"]`` holds the
    largest ``|alpha|`` over the blocks after every step (the same run as ``train_init``: same build, same seed)."""
    cfg = init_config(key, base)
    net = cfg.build(seed)
    train = train.with_(lr=lr, seed=seed)
    t0 = time.perf_counter()
    trainer = Trainer(net, load_digits(flatten=cfg.arch == "mlp"), train)
    alphas = [b.branch.alpha.value for b in net.blocks] if cfg.init == "rezero" else []
    alpha_max = []
    if alphas:          # the largest |alpha| after every step
        trainer.add_callback("on_step_end",
                             lambda _: alpha_max.append(float(torch.stack(alphas).detach().abs().max())))
    trainer.run()
    return Run(cfg, train, trainer.history, time.perf_counter() - t0, None, extra={"alpha_max": alpha_max} if alphas else {})


# -- reading the stored sweeps ---------------------------------------------------------------------------
def median_error(values) -> float:
    """The median of final errors (or losses) over seeds, a missing value (a diverged run) counted as infinite."""
    return float(np.median([math.inf if x is None else x for x in values]))


def group_rows(rows, *keys) -> dict[tuple, list]:
    """Stored rows grouped by the values of ``keys``: ``{(v1, v2, ...): [row, ...]}`` in the rows' order."""
    out = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def best_lr_errors(rows: Sequence[Mapping], lift: bool, residual: bool) -> dict[int, tuple[float, list[float]]]:
    """Per number of blocks: the learning rate with the lowest median final error over seeds (a diverged
    run counts as infinite) and the seeds' errors at it."""
    out = {}
    sub = [r for r in rows if r["lift"] == lift and r["residual"] == residual]
    for n in sorted({r["n_blocks"] for r in sub}):
        by_lr = {}
        for r in sub:
            if r["n_blocks"] == n:
                by_lr.setdefault(r["lr"], []).append(math.inf if r["rel_error"] is None else r["rel_error"])
        lr = min(by_lr, key=lambda k: (median_error(by_lr[k]), k))
        out[n] = (lr, by_lr[lr])
    return out
