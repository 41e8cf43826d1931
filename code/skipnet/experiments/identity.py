"""Experiments of the chapter *The identity mapping*: pure functions of (config, seed) returning data.

* :func:`fit_identity`: a deep stack of blocks is asked to compute the identity (or a near-identity
  map) of the digits. A residual block is the identity when its branch is zero; a plain block has
  to find it in its weights.
* :func:`train_digits`: train any :class:`~skipnet.models.ModelConfig` on the digits (the trained
  branches, the zero-gamma comparison, the branch initializations without normalization).
* :data:`INIT_VARIANTS` / :func:`train_init`: a deep residual CNN without normalization and four
  ways to initialize its branches (SkipInit / ReZero, Fixup, 1/sqrt(L)).

The shortcut and activation-placement study of He et al. (2016) is in :mod:`skipnet.experiments.identity_variants`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.data import load_digits
from skipnet.experiments.degradation import DEFAULT_TRAIN
from skipnet.models import ModelConfig, ResidualNet, build_model
from skipnet.runtime import generator
from skipnet.train import History, TrainConfig, Trainer

__all__ = [
    "IdentityFitConfig", "IdentityFit", "identity_target", "fit_identity", "identity_sweep",
    "DigitsRun", "train_digits", "BRANCH_MODEL", "ZERO_GAMMA_MODEL",
    "NO_NORM_MODEL", "NO_NORM_TRAIN", "INIT_VARIANTS", "INIT_LABELS", "init_config", "train_init",
]


# -- 1. fitting the identity ----------------------------------------------------------------------
@dataclass(frozen=True)
class IdentityFitConfig:
    """The identity-fitting task: blocks of ``width`` = 64 units (one per pixel) map the standardized
    digits ``X`` (N, 64) to ``X + eps * tanh(X A)`` (``eps = 0``: the identity itself).
    The error is measured on the test digits, with BatchNorm using the statistics of that batch.

    The blocks are the book's MLP blocks (``norm``, ``order``) without the stem and the classifier,
    so the network is ``x -> block_L(... block_1(x))`` and nothing else has to be learned.
    Trained by SGD (momentum) on the mean squared error for ``steps`` steps.
    """

    width: int = 64
    norm: str = "batch"
    order: str = "pre"
    block_layers: int = 2
    steps: int = 300
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 128
    eps: float = 0.0
    eval_every: int = 25

    def __post_init__(self) -> None:
        if self.width != 64:
            raise ValueError(f"width must be 64 (one unit per pixel of the 8x8 digits), got {self.width}")
        if not 1 <= self.steps <= 100_000:
            raise ValueError(f"steps must be between 1 and 100000, got {self.steps}")
        if not 0 < self.lr <= 1:
            raise ValueError(f"lr must be in (0, 1], got {self.lr}")
        if not 0 <= self.eps <= 2:
            raise ValueError(f"eps must be in [0, 2], got {self.eps}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")

    def with_(self, **changes) -> "IdentityFitConfig":
        return replace(self, **changes)


@dataclass
class IdentityFit:
    """One identity fit. ``rel_error`` is the test-set squared error over the targets' variance
    (0: perfect; 1: no better than predicting the mean), at ``steps`` (step 0 = initialization)."""

    depth: int
    residual: bool
    seed: int
    steps: list[int] = field(default_factory=list)
    rel_error: list[float] = field(default_factory=list)
    status: str = "finished"
    seconds: float = 0.0

    @property
    def initial(self) -> float:
        return self.rel_error[0]

    @property
    def final(self) -> float:
        """The last recorded relative error (``inf`` if the run diverged)."""
        return self.rel_error[-1] if self.status == "finished" else math.inf

    @property
    def label(self) -> str:
        return f"{'residual' if self.residual else 'plain'}, {self.depth} blocks"


def identity_target(X: torch.Tensor, eps: float, seed: int = 0) -> torch.Tensor:
    """``X + eps * tanh(X A)`` with a fixed random ``A`` (64 x 64, entries N(0, 1/64)); ``X`` when eps = 0."""
    if eps == 0:
        return X.clone()
    A = torch.randn(X.shape[1], X.shape[1], generator=generator(7_000 + seed)) / math.sqrt(X.shape[1])
    return X + eps * torch.tanh(X @ A)


def _stack(depth: int, residual: bool, cfg: IdentityFitConfig, seed: int) -> nn.Sequential:
    net = build_model(arch="mlp", depth=depth, width=cfg.width, norm=cfg.norm, order=cfg.order, residual=residual,
                      block_layers=cfg.block_layers, in_shape=(cfg.width,), n_classes=cfg.width, seed=seed)
    return nn.Sequential(*net.blocks)                                  # (B, 64) -> (B, 64): blocks only


@torch.no_grad()
def _rel_error(body: nn.Module, X: torch.Tensor, Y: torch.Tensor) -> float:
    # BatchNorm keeps using batch statistics (here: of the whole test set). Running statistics are
    # meaningless at step 0, where the residual stream has not been normalized yet.
    err = ((body(X) - Y) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum()
    return float(err)


def fit_identity(depth: int, residual: bool, seed: int = 0, cfg: IdentityFitConfig = IdentityFitConfig(),
                 callback: Callable[[IdentityFit], bool | None] | None = None) -> IdentityFit:
    """Train ``depth`` blocks (plain or residual) to reproduce their input; return the :class:`IdentityFit`.

    ``callback(fit)`` runs after every evaluation; returning ``False`` stops the run.
    """
    if not 1 <= depth <= 200:
        raise ValueError(f"depth must be between 1 and 200 blocks, got {depth}")
    ds = load_digits(flatten=True)
    X, X_test = ds.X_train, ds.X_test                                  # (N, 64)
    Y, Y_test = identity_target(X, cfg.eps), identity_target(X_test, cfg.eps)
    body = _stack(depth, residual, cfg, seed)
    opt = torch.optim.SGD(body.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    gen = generator(seed)
    out = IdentityFit(depth, residual, seed)
    t0 = time.perf_counter()
    out.steps.append(0)
    out.rel_error.append(_rel_error(body, X_test, Y_test))
    for k in range(cfg.steps):
        idx = torch.randint(0, len(X), (cfg.batch_size,), generator=gen)
        loss = F.mse_loss(body(X[idx]), Y[idx])
        if not torch.isfinite(loss):
            out.status = f"diverged at step {k + 1}"
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (k + 1) % cfg.eval_every == 0 or k + 1 == cfg.steps:
            err = _rel_error(body, X_test, Y_test)
            if not math.isfinite(err):
                out.status = f"diverged at step {k + 1}"
                break
            out.steps.append(k + 1)
            out.rel_error.append(err)
            if callback is not None and callback(out) is False:
                out.status = f"stopped at step {k + 1}"
                break
    out.seconds = time.perf_counter() - t0
    return out


def identity_sweep(depths=(1, 4, 16), seeds=(0,), cfg: IdentityFitConfig = IdentityFitConfig()) -> list[IdentityFit]:
    """:func:`fit_identity` for every (depth, plain/residual, seed)."""
    return [fit_identity(d, r, s, cfg) for d in depths for r in (False, True) for s in seeds]


# -- 2. training on the digits ----------------------------------------------------------------------
@dataclass
class DigitsRun:
    """A network trained on the digits, kept with its history (the model itself for probing)."""

    cfg: ModelConfig
    seed: int
    history: History
    seconds: float
    model: ResidualNet | None = None

    @property
    def final(self) -> dict:
        return self.history.final

    def row(self) -> dict:
        f = self.history.final
        return {"seed": self.seed, "status": self.history.status,
                "train_loss": f.get("train_loss"), "train_err": None if not f else 1 - f["train_acc"],
                "test_err": None if not f else 1 - f["test_acc"], "seconds": round(self.seconds, 2)}


BRANCH_MODEL = ModelConfig(arch="cnn", depth=56, width=8, norm="batch")            # post-activation, He et al. 2015
ZERO_GAMMA_MODEL = BRANCH_MODEL


def train_digits(cfg: ModelConfig, seed: int = 0, train: TrainConfig = DEFAULT_TRAIN,
                 callback: Callable[[Trainer], bool | None] | None = None, keep_model: bool = True) -> DigitsRun:
    """Train the network ``cfg`` on the digits (images for the CNN, vectors for the MLP)."""
    data = load_digits(flatten=cfg.arch == "mlp")
    if cfg.arch == "mlp" and cfg.in_shape != (64,):
        cfg = cfg.with_(in_shape=(64,))
    net = build_model(cfg, seed=seed)
    t0 = time.perf_counter()
    history = Trainer(net, data, train.with_(seed=seed), callback).run()
    return DigitsRun(cfg, seed, history, time.perf_counter() - t0, net if keep_model else None)


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
               "rezero": "SkipInit / ReZero (alpha = 0)", "fixup": "Fixup"}


def init_config(key: str, base: ModelConfig = NO_NORM_MODEL, **changes) -> ModelConfig:
    """The no-normalization network with branch initialization ``key`` (one of :data:`INIT_VARIANTS`)."""
    if key not in INIT_VARIANTS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INIT_VARIANTS))}; got {key!r}")
    return base.with_(**{**INIT_VARIANTS[key], **changes})


def train_init(key: str, seed: int = 0, base: ModelConfig = NO_NORM_MODEL, train: TrainConfig = NO_NORM_TRAIN,
               callback: Callable[[Trainer], bool | None] | None = None, **changes) -> DigitsRun:
    """Train the no-normalization network with branch initialization ``key``; a divergence is a result."""
    return train_digits(init_config(key, base, **changes), seed, train, callback, keep_model=False)
