"""Trials of the ensemble view, for the chapter *An ensemble of relatively shallow paths*.

Pure functions of (network or config, data, seed) returning plain data, beside :mod:`skipnet.experiments.ensemble`:

* :func:`spectrum_study`: the exact gradient by path length (:mod:`skipnet.probes.path_spectrum`) on the same
  training batch as Veit's sampled estimate (:func:`~skipnet.experiments.ensemble.path_study`);
* :func:`recal_study`: lesions with BatchNorm recalibrated after the deletion (the control for stale statistics);
* :func:`noise_study`: branch outputs replaced by another image's or by matched noise (:mod:`skipnet.probes.replace`);
* :func:`train_short_paths`: Veit et al.'s causal test, training while the gradient goes through only k random
  branches a step (forward and backward hooks around the package's Trainer; the model code is untouched), and its
  control that updates the same k blocks but lets the gradient through every branch;
* :func:`ensemble_deletion`: a real ensemble (average logits) with members deleted;
* :func:`interpolated_gap`: the generalization gap at a matched training loss (the tests over seeds are
  :func:`skipnet.inference.compare`'s).

The chapter's claims over the stored seeds, through the inference protocol, are in
:mod:`skipnet.experiments.ensemble_claims`.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from skipnet.data import Dataset, load_digits
from skipnet.experiments.ensemble import ENSEMBLE_MODEL, DEFAULT_TRAIN
from skipnet.history import Run
from skipnet.models import ModelConfig, ResidualNet
from skipnet.probes.lesions import LesionEvaluator, random_subsets, recalibrated, recalibrated_accuracy
from skipnet.probes.path_spectrum import Spectrum, exact_path_spectrum
from skipnet.probes.replace import Replacer, refinement_cosines
from skipnet.runtime import generator
from skipnet.train import TrainConfig, Trainer

__all__ = ["SPECTRUM_BATCH", "train_batch", "spectrum_study", "RecalStudy", "recal_study", "noise_study",
           "refinement_study", "ShortPaths", "train_short_paths", "train_truncated", "SHORT_MODES",
           "ensemble_deletion", "interpolated_gap"]

SPECTRUM_BATCH = 128
SHORT_MODES = ("paths", "updates")


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_batch(data: Dataset, seed: int, batch_size: int = SPECTRUM_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """The random training batch that :func:`~skipnet.experiments.ensemble.path_study` uses for ``seed``."""
    idx = torch.randperm(len(data.X_train), generator=generator(seed))[:batch_size]
    return data.X_train[idx], data.y_train[idx]


def spectrum_study(model: ResidualNet, data: Dataset, seed: int = 0, bn: str = "eval", calibrate: bool = False,
                   label: str = "") -> Spectrum:
    """The exact spectrum of ``model`` on seed's training batch; ``bn="batch"`` with batch statistics, or
    ``calibrate=True``: running statistics first recomputed on the training set (for a fresh net)."""
    X, y = train_batch(data, seed)
    if calibrate:
        model, _ = recalibrated(model, data.X_train.to(_device(model)))
    dev = _device(model)
    return exact_path_spectrum(model, X.to(dev), y.to(dev), bn=bn, label=label)


# -- lesions with recalibrated BatchNorm ------------------------------------------------------------------
@dataclass
class RecalStudy:
    """Accuracy after deletions with stale BN statistics (as tested) and recalibrated (``*_recal``) on the
    training set. ``sets[j]``: the deleted sets at ``ks[j]``; ``k_stale[j][s]`` / ``k_recal[j][s]`` their accuracies."""

    label: str
    intact: float
    intact_recal: float
    single: list[float]
    single_recal: list[float]
    ks: list[int]
    sets: list[list[list[int]]]
    k_stale: list[list[float]]
    k_recal: list[list[float]]

    def as_dict(self) -> dict:
        return asdict(self)


def recal_study(model: ResidualNet, data: Dataset, label: str = "", ks: Sequence[int] = (2, 4, 8, 13),
                n_samples: int = 10, seed: int = 0) -> RecalStudy:
    """Single deletions and ``n_samples`` random k-sets, each tested with stale and with recalibrated BN."""
    dev = _device(model)
    X, y, calib = data.X_test.to(dev), data.y_test.to(dev), data.X_train.to(dev)
    n = len(model.blocks)
    ks = [k for k in ks if k <= n]
    ev = LesionEvaluator(model, X, y)
    gen = generator(50_000 + seed)
    sets = [random_subsets(n, k, n_samples, gen) for k in ks]
    return RecalStudy(label, ev.intact, recalibrated_accuracy(model, calib, X, y),
                      [ev.accuracy([i]) for i in range(n)],
                      [recalibrated_accuracy(model, calib, X, y, [i]) for i in range(n)], list(ks), sets,
                      [[ev.accuracy(s) for s in ss] for ss in sets],
                      [[recalibrated_accuracy(model, calib, X, y, s) for s in ss] for ss in sets])


# -- useful noise ----------------------------------------------------------------------------------------
def noise_study(model: ResidualNet, data: Dataset, ms: Sequence[int], n_sets: int = 10, seed: int = 0,
                exclude_first: bool = False) -> dict:
    """:meth:`Replacer.sweep` on the test set: accuracy with m branch outputs replaced, per variant."""
    dev = _device(model)
    rep = Replacer(model, data.X_test.to(dev), data.y_test.to(dev))
    pool = rep.n - (1 if exclude_first else 0)
    out = rep.sweep([m for m in ms if m <= pool], n_sets, seed=60_000 + seed, exclude=(0,) if exclude_first else ())
    return {"intact": rep.intact, **out}


def refinement_study(model: ResidualNet, data: Dataset) -> list[float]:
    """:func:`refinement_cosines` on the test set."""
    dev = _device(model)
    return refinement_cosines(model, data.X_test.to(dev), data.y_test.to(dev)).tolist()


# -- Veit et al.'s causal test: back-propagate through only k random blocks a step ----------------------------
class ShortPaths:
    """Hooks that make each training step draw k random blocks. ``mode="paths"``: the other blocks' branch outputs
    are detached, so the step's gradient flows through the k drawn branches and every skip (only paths made of
    the drawn blocks), and the other blocks get no gradient. ``mode="updates"`` (the control): the gradient flows
    through every branch, but only the k drawn blocks' parameters get it. Nothing changes in eval mode."""

    def __init__(self, net: ResidualNet, k: int, mode: str, seed: int):
        if mode not in SHORT_MODES:
            raise ValueError(f"mode must be one of {SHORT_MODES}, got {mode!r}")
        n = len(net.blocks)
        if not 1 <= k <= n:
            raise ValueError(f"k must be between 1 and {n} (the number of blocks), got {k}")
        self.net, self.k, self.mode, self.gen = net, k, mode, generator(70_000 + seed)
        self.selected: set[int] = set(range(n))
        self.handles = [net.register_forward_pre_hook(self._draw)]
        for i, block in enumerate(net.blocks):
            if mode == "paths":
                self.handles.append(block.branch.register_forward_hook(self._cut(i)))
            else:
                self.handles += [p.register_hook(self._mask(i)) for p in block.parameters()]

    def _draw(self, module, args) -> None:
        if module.training:
            n = len(self.net.blocks)
            self.selected = set(torch.randperm(n, generator=self.gen)[:self.k].tolist())

    def _cut(self, i: int):
        def hook(module, args, out):
            return out.detach() if self.net.training and i not in self.selected else out
        return hook

    def _mask(self, i: int):
        def hook(grad):
            return grad if i in self.selected else torch.zeros_like(grad)
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def train_short_paths(k: int, mode: str = "paths", seed: int = 0, depth: int = 56,
                      model: ModelConfig = ENSEMBLE_MODEL, train: TrainConfig = DEFAULT_TRAIN.with_(eval_every=0),
                      data: Dataset | None = None) -> Run:
    """Train the chapter's residual net with :class:`ShortPaths` (k blocks a step); the hooks are removed after."""
    cfg = model.with_(depth=depth)
    net = cfg.build(seed)
    hooks = ShortPaths(net, k, mode, seed)
    t0 = time.perf_counter()
    train = train.with_(seed=seed)
    history = Trainer(net, data if data is not None else load_digits(), train).run()
    hooks.remove()
    return Run(cfg, train, history, time.perf_counter() - t0, net.eval(), f"{cfg.label}, k={k} ({mode})",
               extra={"k": k, "mode": mode})


def train_truncated(K: int, norm_match: bool = False, seed: int = 0, depth: int = 56,
                    model: ModelConfig = ENSEMBLE_MODEL, train: TrainConfig = DEFAULT_TRAIN.with_(eval_every=0),
                    data: Dataset | None = None) -> Run:
    """Train the chapter's residual net on the gradient of the paths of at most K branches
    (:class:`~skipnet.probes.path_spectrum.LengthTruncation`), optionally rescaled to the full gradient's norm."""
    from skipnet.probes.path_spectrum import LengthTruncation
    cfg = model.with_(depth=depth)
    net = cfg.build(seed)
    cut = LengthTruncation(net, K, norm_match=norm_match)
    t0 = time.perf_counter()
    train = train.with_(seed=seed)
    trainer = Trainer(net, data if data is not None else load_digits(), train)
    trainer.loss_fn = cut.loss_fn
    history = trainer.run()
    cut.remove()
    scale = float(np.median(cut.scale)) if cut.scale else 1.0
    return Run(cfg, train, history, time.perf_counter() - t0, net.eval(),
               f"{cfg.label}, K={K}" + (" (norm-matched)" if norm_match else ""),
               extra={"K": K, "norm_match": norm_match, "median_scale": scale})


# -- a real ensemble --------------------------------------------------------------------------------------
@torch.no_grad()
def ensemble_deletion(nets: Sequence[torch.nn.Module], X: torch.Tensor, y: torch.Tensor) -> dict:
    """Members' accuracies, and the accuracy of the averaged logits with m = 0..M-1 members deleted (mean, lowest
    and highest over all subsets of the survivors)."""
    for net in nets:
        net.eval()
    logits = torch.stack([net(X) for net in nets])                       # (M, N, classes)
    acc = lambda idx: (logits[list(idx)].mean(0).argmax(-1) == y).float().mean().item()
    M = len(nets)
    curve = [[acc(keep) for keep in itertools.combinations(range(M), M - m)] for m in range(M)]
    return {"members": [acc([i]) for i in range(M)], "deleted": list(range(M)),
            "mean": [float(np.mean(c)) for c in curve], "lo": [min(c) for c in curve], "hi": [max(c) for c in curve]}


# -- the gap at a matched training loss ----------------------------------------------------------------------
def interpolated_gap(evals: Sequence[dict], level: float) -> float | None:
    """The generalization gap (test minus train loss) where the training loss first reaches ``level``, linearly
    interpolated in log(train loss) between the two evaluations around that crossing (``None`` if never)."""
    prev = None
    for e in evals:
        if e["train_loss"] <= level:
            gap = e["test_loss"] - e["train_loss"]
            if prev is None or prev["train_loss"] <= level:
                return gap
            a, b = math.log(prev["train_loss"]), math.log(e["train_loss"])
            t = (a - math.log(level)) / (a - b)
            before = prev["test_loss"] - prev["train_loss"]
            return before + t * (gap - before)
        prev = e
    return None
