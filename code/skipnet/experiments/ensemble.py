"""Residual networks as ensembles of relatively shallow paths (Veit et al. 2016), on the digits.

Pure functions of (config, seed) that train the chapter's networks and run its studies: lesions
(delete one block, k random blocks, swap blocks), the gradient carried by each path length, the
generalization gap of plain vs residual nets, and what each block adds to the stream. No plotting,
no I/O. Chapter: *An ensemble of relatively shallow paths*.
"""
from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Sequence

import numpy as np
import torch

from skipnet.data import Dataset, load_digits
from skipnet.experiments.degradation import DEFAULT_TRAIN as _DEGRADATION_TRAIN
from skipnet.models import ModelConfig, ResidualNet
from skipnet.probes.lesions import LesionEvaluator, random_subsets, random_swap_accuracies
from skipnet.probes.paths import binomial_length_counts, effective_mean_length, gradient_by_length, \
    path_gradient_magnitudes
from skipnet.history import History, Run
from skipnet.probes.streams import branch_stream_ratios, linear_probe_accuracies
from skipnet.runtime import generator
from skipnet.train import Progress, TrainConfig, train_run

__all__ = ["ENSEMBLE_MODEL", "DEFAULT_TRAIN", "train_net", "LesionStudy", "lesion_study",
           "PathStudy", "path_study", "gap_at_losses", "gap_summary", "StreamStudy", "stream_study",
           "Curve", "deletion_curve", "stratified_curve", "PROBE_DIMS"]

ENSEMBLE_MODEL = ModelConfig(arch="cnn", depth=56, width=8, norm="batch")
DEFAULT_TRAIN = _DEGRADATION_TRAIN.with_(eval_every=5)       # evaluations along the way: gaps at matched loss
PROBE_DIMS = 8                                                # the fixed-size probe: the first stage's width


def train_net(depth: int = 56, residual: bool = True, seed: int = 0, drop_prob: float = 0.0,
              model: ModelConfig = ENSEMBLE_MODEL, train: TrainConfig = DEFAULT_TRAIN, data: Dataset | None = None,
              progress: Progress | None = None) -> Run:
    """Train one 6n+2 CNN (width 8, BN, post-activation) on the digits; the Run keeps the trained net
    (label e.g. ``"residual-56"``, ``"residual-56 (drop 0.5)"``)."""
    cfg = model.with_(depth=depth, residual=residual, drop_prob=drop_prob)
    label = cfg.label + (f" (drop {drop_prob:g})" if drop_prob else "")
    return train_run(cfg, data if data is not None else load_digits(), train, seed, label, progress)


def _test_tensors(model: ResidualNet, data: Dataset):
    X = data.X_test.to(next(model.parameters()).device)
    return X, data.y_test.to(X.device)


# -- lesions ----------------------------------------------------------------------------------------
@dataclass
class LesionStudy:
    """Test accuracy of one trained net under lesions (Veit et al. Fig. 3-5).

    single[i]: block i deleted alone. k_accs[j]: accuracies over random sets of ks[j] deleted
    blocks (k_sets[j]: those sets). swap_accs[j]: accuracies over random orders with swap_ks[j] disjoint
    pairs swapped (swap_kendall[j]: their Kendall distances); swap_fixed_accs: the same with block 1 held
    in place.
    """

    label: str
    intact: float
    single: list[float]
    ks: list[int]
    k_accs: list[list[float]]
    swap_ks: list[int] = field(default_factory=list)
    swap_accs: list[list[float]] = field(default_factory=list)
    k_sets: list[list[list[int]]] = field(default_factory=list)
    swap_kendall: list[list[int]] = field(default_factory=list)
    swap_fixed_accs: list[list[float]] = field(default_factory=list)

    @property
    def n_blocks(self) -> int:
        return len(self.single)

    @property
    def k_means(self) -> np.ndarray:
        return np.array([np.mean(a) for a in self.k_accs])

    @property
    def swap_means(self) -> np.ndarray:
        return np.array([np.mean(a) for a in self.swap_accs])

    @property
    def swap_fixed_means(self) -> np.ndarray:
        return np.array([np.mean(a) for a in self.swap_fixed_accs])

    @property
    def median_single(self) -> float:
        return float(np.median(self.single))

    def share_within(self, points: float) -> float:
        """Share of single deletions that cost at most ``points`` accuracy points (0.02 = 2 points)."""
        return float(np.mean(np.asarray(self.single) >= self.intact - points))

    def as_dict(self) -> dict:
        return asdict(self)


def lesion_study(model: ResidualNet, data: Dataset, label: str = "", ks: Sequence[int] | None = None,
                 n_samples: int = 10, swap_ks: Sequence[int] = (), seed: int = 0,
                 fixed_swaps: bool = False) -> LesionStudy:
    """Delete each block, then k random blocks for each k in ``ks`` (default 0..n), then swap k disjoint pairs
    (and, with ``fixed_swaps``, again with block 1 held in place)."""
    X, y = _test_tensors(model, data)
    n = len(model.blocks)
    ks = list(range(n + 1)) if ks is None else [int(k) for k in ks]
    gen = generator(seed)
    sets = [random_subsets(n, k, n_samples, gen) for k in ks]
    ev = LesionEvaluator(model, X, y)
    kendall, swap_accs, fixed_accs = [], [], []
    if swap_ks:
        swap_accs = random_swap_accuracies(model, X, y, list(swap_ks), n_samples, seed + 1, kendall=kendall)
        if fixed_swaps:
            fixed_accs = random_swap_accuracies(model, X, y, list(swap_ks), n_samples, seed + 2, fixed=(0,))
    return LesionStudy(label, ev.intact, [ev.accuracy([i]) for i in range(n)], ks,
                       [[ev.accuracy(s) for s in ss] for ss in sets], [int(k) for k in swap_ks],
                       [a.tolist() for a in swap_accs], sets, kendall, [a.tolist() for a in fixed_accs])


# -- paths ------------------------------------------------------------------------------------------
@dataclass
class PathStudy:
    """Gradient by path length (Veit et al. Fig. 6) for a residual net of n blocks.

    counts[k] = C(n, k) paths of length k; magnitude[k]: mean gradient norm at the first block's
    input through one path of length k; weights[k]: share of the total gradient (counts x magnitude).
    """

    n: int
    ks: list[int]
    counts: list[float]
    magnitude: list[float]
    magnitude_spread: list[list[float]]
    weights: list[float]
    mean_length: float

    @property
    def typical_length(self) -> float:
        return self.n / 2

    def as_dict(self) -> dict:
        return asdict(self)


def path_study(model: ResidualNet, data: Dataset, n_samples: int = 8, batch_size: int = 128, seed: int = 0,
               progress: Progress | None = None) -> PathStudy | None:
    """Measure the gradient through paths of every length 0..n on a random training batch.

    ``progress(fraction, text, partial)`` reports progress; returning ``False`` stops, and the study is then ``None``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    idx = torch.randperm(len(data.X_train), generator=generator(seed))[:batch_size]
    dev = next(model.parameters()).device
    X, y = data.X_train[idx].to(dev), data.y_train[idx].to(dev)
    n = len(model.blocks)
    ks = list(range(n + 1))
    mags = path_gradient_magnitudes(model, X, y, ks, n_samples, seed, progress)
    if len(mags) < len(ks):
        return None
    mean = [float(np.mean(m)) for m in mags]
    weights = gradient_by_length(n, ks, mean)
    return PathStudy(n, ks, [float(c) for c in binomial_length_counts(n)], mean,
                     [[float(np.min(m)), float(np.max(m))] for m in mags], weights.tolist(),
                     effective_mean_length(ks, weights))


# -- the overfitting claim ----------------------------------------------------------------------------
def gap_at_losses(history: History, levels: Sequence[float]) -> list[dict | None]:
    """The generalization gap at the first evaluation where the training loss fell to each level.

    Each entry: ``step``, ``train_loss``, ``loss_gap`` (test minus train loss), ``acc_gap`` (train
    minus test accuracy); ``None`` where training never reached the level.
    """
    out = []
    for level in levels:
        row = next((e for e in history.evals if e["train_loss"] <= level), None)
        out.append(None if row is None else {
            "step": row["step"], "train_loss": row["train_loss"], "loss_gap": row["test_loss"] - row["train_loss"],
            "acc_gap": row["train_acc"] - row["test_acc"]})
    return out


# -- "useful noise"? ------------------------------------------------------------------------------------
@dataclass
class StreamStudy:
    """probe_acc[i]: linear-probe test accuracy of the pooled stream after the stem (i = 0) and after
    block i; probe_fixed[i]: the same probe on the PROBE_DIMS leading principal components (a probe of one size
    in every stage); ratio[i]: ||branch|| / ||shortcut|| of block i (residual nets only, else empty)."""

    label: str
    probe_acc: list[float]
    ratio: list[float]
    probe_fixed: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def stream_study(model: ResidualNet, data: Dataset, label: str = "") -> StreamStudy:
    dev = next(model.parameters()).device
    Xtr, ytr = data.X_train.to(dev), data.y_train.to(dev)
    Xte, yte = _test_tensors(model, data)
    probe = linear_probe_accuracies(model, Xtr, ytr, Xte, yte).tolist()
    fixed = linear_probe_accuracies(model, Xtr, ytr, Xte, yte, dims=PROBE_DIMS).tolist()
    ratio = branch_stream_ratios(model, Xte).tolist() if model.cfg.residual else []
    return StreamStudy(label, probe, ratio, fixed)


# -- summaries over seeds (for the precomputed sweeps) ------------------------------------------------------
@dataclass
class Curve:
    """Mean accuracy against k over seeds: ``mean[j]`` averages each seed's mean at ``ks[j]``; ``lo``/``hi``
    are the lowest and highest seed means."""

    label: str
    ks: list[int]
    mean: list[float]
    lo: list[float]
    hi: list[float]

    def at(self, k: int) -> float:
        return self.mean[self.ks.index(k)]


def _as_study(s) -> LesionStudy:
    if isinstance(s, LesionStudy):
        return s
    return LesionStudy(**{k: v for k, v in s.items() if k in LesionStudy.__dataclass_fields__})


def deletion_curve(studies: Sequence, kind: str = "delete", label: str | None = None) -> Curve:
    """The k-deletion (``kind="delete"``) or k-swap (``"swap"``) curve of several seeds' studies."""
    if kind not in ("delete", "swap"):
        raise ValueError(f"kind must be 'delete' or 'swap', got {kind!r}")
    studies = [_as_study(s) for s in studies]
    if not studies:
        raise ValueError("need at least one study")
    ks = studies[0].ks if kind == "delete" else studies[0].swap_ks
    per_seed = np.array([s.k_means if kind == "delete" else s.swap_means for s in studies])   # (seeds, len(ks))
    return Curve(label or studies[0].label, list(ks), per_seed.mean(0).tolist(), per_seed.min(0).tolist(),
                 per_seed.max(0).tolist())


def stratified_curve(studies: Sequence, block: int = 0) -> dict:
    """k-deletion accuracy over several seeds' studies, the deleted sets pooled and split by whether ``block`` is
    among them: ``ks``, ``with`` / ``without`` (mean accuracy, NaN where no set falls in the group) and the number
    of sets in each group, ``n_with`` / ``n_without``."""
    studies = [_as_study(s) for s in studies]
    if not studies or not all(s.k_sets for s in studies):
        raise ValueError("need studies that kept their deleted sets (k_sets)")
    ks = studies[0].ks
    out = {"ks": list(ks), "with": [], "without": [], "n_with": [], "n_without": []}
    for j in range(len(ks)):
        pairs = [(a, block in sets) for s in studies for a, sets in zip(s.k_accs[j], s.k_sets[j])]
        for key, flag in (("with", True), ("without", False)):
            accs = [a for a, cut in pairs if cut == flag]
            out[key].append(float(np.mean(accs)) if accs else float("nan"))
            out[f"n_{key}"].append(len(accs))
    return out


def gap_summary(records: Sequence[dict], levels: Sequence[float] = (0.2, 0.1, 0.05, 0.02)) -> dict:
    """Over seeds (``records``: dicts with ``evals``, as stored by the precompute script): the final
    train loss, test accuracy and gaps (mean, lowest, highest), and the mean gaps where the training
    loss first fell to each level (``None`` where fewer than all seeds got there)."""
    finals = [r["evals"][-1] for r in records if r["evals"]]
    if not finals:
        raise ValueError("no run has an evaluation")

    def stat(values):
        return {"mean": float(np.mean(values)), "lo": float(np.min(values)), "hi": float(np.max(values))}

    out = {"train_loss": stat([f["train_loss"] for f in finals]), "test_acc": stat([f["test_acc"] for f in finals]),
           "loss_gap": stat([f["test_loss"] - f["train_loss"] for f in finals]),
           "acc_gap": stat([f["train_acc"] - f["test_acc"] for f in finals]), "at_loss": {}}
    for level in levels:
        hits = [gap_at_losses(History(evals=r["evals"]), [level])[0] for r in records]
        out["at_loss"][level] = None if any(h is None for h in hits) else {
            "loss_gap": stat([h["loss_gap"] for h in hits]), "acc_gap": stat([h["acc_gap"] for h in hits])}
    return out
