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
* :func:`paired` and :func:`interpolated_gap`: the statistics over seeds the chapter glues.
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
           "refinement_study", "ShortPaths", "train_short_paths", "SHORT_MODES", "ensemble_deletion", "paired",
           "interpolated_gap", "ensemble_records", "ensemble_family", "PRIMARY", "seeds_needed",
           "ensemble_primary_family"]

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


# -- statistics over seeds -------------------------------------------------------------------------------
def paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired comparison of ``a`` and ``b`` over seeds: mean and sd of a - b, the t statistic, its two-sided
    p-value (Student t, n - 1 degrees of freedom), how many seeds have a > b, and n."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(d)
    if n < 2:
        raise ValueError(f"a paired comparison needs at least two seeds, got {n}")
    sd = float(d.std(ddof=1))
    t = float(d.mean() / (sd / math.sqrt(n))) if sd > 0 else math.copysign(math.inf, d.mean()) if d.mean() else 0.0
    from scipy import stats                          # scipy comes with scikit-learn
    p = float(2 * stats.t.sf(abs(t), n - 1)) if math.isfinite(t) else 0.0
    return {"mean": float(d.mean()), "sd": sd, "t": t, "p": p, "ahead": int((d > 0).sum()), "n": n}


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


# -- the chapter's claims over the stored seeds, through the inference protocol -------------------------------------
ENSEMBLE_SWEEPS = ("lesions", "paths", "streams", "gaps", "spectra", "recal", "noise", "short", "members",
                   "truncated")
TRUNC_MARGIN = 0.01      # accuracy: "training on paths of at most K branches costs nothing" within 1 point
GAP_MARGIN = 0.02        # nats: a 2 % change in the per-digit test likelihood (exp(0.02) = 1.02), the tolerance for
                         # "equal gaps"; not chosen blind: it is also about half the stored end-of-training difference
MEAN_MARGIN = 0.02       # accuracy: "the channel mean is as good as deleting" within 2 points
GAP_LEVELS = (0.3, 0.2, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01, 0.007, 0.005)


def ensemble_records(tag: str | None = None) -> dict:
    """Every stored ensemble sweep as ``{sweep: {label: [records sorted by seed]}}`` (``tag``: e.g. the
    confirmation on fresh seeds, read by the same analysis)."""
    from skipnet.store import load_sweep
    return {name: {label: sorted(rs, key=lambda r: r["seed"])
                   for label, rs in load_sweep(f"ensemble_{name}", tag)["data"].items()} for name in ENSEMBLE_SWEEPS}


def kept_by_random_blocks(norms: Sequence[float], k: int) -> float:
    """Share of sum_j ||G_j|| that training through k random blocks of n keeps in expectation: a path of length j
    survives a step only if all j of its branches are drawn, with probability C(n - j, k - j) / C(n, k)."""
    norms = np.asarray(norms, dtype=np.float64)
    n = len(norms) - 1
    keep = np.array([math.comb(n - j, k - j) / math.comb(n, k) if j <= k else 0.0 for j in range(n + 1)])
    return float((keep * norms).sum() / norms.sum())


def stratified_two(k_accs: Sequence, k_sets: Sequence, blocks=(0, 1)) -> tuple[list[float], list[int]]:
    """k-deletion accuracy pooled over seeds on the deleted sets that contain none of ``blocks`` (mean per k, NaN
    where none), with the number of such sets per k. ``k_accs`` / ``k_sets``: per seed, per k, per set."""
    means, counts = [], []
    for j in range(len(k_accs[0])):
        accs = [a for seed_a, seed_s in zip(k_accs, k_sets) for a, s in zip(seed_a[j], seed_s[j])
                if not set(blocks) & set(s)]
        means.append(float(np.mean(accs)) if accs else float("nan"))
        counts.append(len(accs))
    return means, counts


# The claims the main page rests on, declared before the confirmation: Holm within these few, a confirmation on
# seeds_needed(len(PRIMARY)) fresh seeds can decide every one (the full family above needs more).
PRIMARY = ("single", "spectrum", "trunc K=4", "trunc K=1", "gap20_0.02", "other20")


def seeds_needed(m: int, alpha: float | None = None) -> int:
    """The fewest seeds with which every one of ``m`` Holm-adjusted exact sign-flip tests could reach ``alpha``:
    the smallest n with min_p(n) * m < alpha (the smallest adjusted p is m times the smallest raw p)."""
    from skipnet.inference import ALPHA, min_p
    alpha = ALPHA if alpha is None else alpha
    n = 2
    while min_p(n) * m >= alpha:
        n += 1
    return n


def ensemble_primary_family(rec: dict, keys: Sequence[str] = PRIMARY):
    """The main page's claims (``PRIMARY``) as their own family, Holm-adjusted within these few: the same paired
    differences, margins and wording as in :func:`ensemble_family`."""
    from skipnet.inference import Family
    full = ensemble_family(rec).results()
    fam = Family("ensemble, main page")
    for k in keys:
        c = full[k]
        fam.add(k, list(c.differences), 0.0, c.claim, margin=c.margin, scale=c.scale, unit=c.unit, fmt=c.fmt)
    return fam


def ensemble_family(rec: dict):
    """The chapter's family of paired claims over the stored seeds (``rec`` from :func:`ensemble_records`),
    Holm-adjusted within the chapter (:class:`skipnet.inference.Family`)."""
    from skipnet.inference import Family
    fam = Family("ensemble")
    pts = dict(scale=100, unit="points", fmt=".1f")
    les, rc, sh, sp, gp, nz = (rec[k] for k in ("lesions", "recal", "short", "spectra", "gaps", "noise"))
    fam.add("single", [np.median(r["single"]) for r in les["residual-56"]],
            [np.median(r["single"]) for r in les["plain-20"]],
            "one block deleted, median accuracy: residual-56 minus plain-20", **pts)
    fam.add("b1_recal", [r["single_recal"][0] for r in rc["residual-56"]], [r["single"][0] for r in rc["residual-56"]],
            "residual-56, block 1 deleted: recalibrated minus stale BatchNorm", **pts)
    fam.add("b2_cost", [r["intact"] for r in les["residual-56"]], [r["single"][1] for r in les["residual-56"]],
            "residual-56: intact minus block 2 deleted (stale BatchNorm)", **pts)
    fam.add("spectrum", [r["mean_length"] for r in sp["residual-56"]], 13.5,
            "residual-56 trained: exact gradient-weighted mean path length minus 13.5", unit="blocks", fmt=".1f")
    fam.add("spectrum_init", [r["mean_length"] for r in sp["residual-56, trained, batch statistics"]],
            [r["mean_length"] for r in sp["residual-56, fresh, batch statistics"]],
            "mean path length, both with batch statistics: trained minus fresh", unit="blocks", fmt=".1f")
    acc = {k: [r["test_acc"] for r in v] for k, v in sh.items()}
    for key, label in (("short13", "k=13 (paths)"), ("short7", "k=7 (paths)"), ("short3", "k=3 (paths)"),
                       ("update7", "k=7 (updates)")):
        fam.add(key, acc["normal"], acc[label], f"test accuracy: normal minus {label}", **pts)
    sd, r56 = les["residual-56 (drop 0.5)"], les["residual-56"]
    for label in rec.get("truncated", {}):
        if label != "normal":
            fam.add(f"trunc {label}", [r["test_acc"] for r in rec["truncated"]["normal"]],
                    [r["test_acc"] for r in rec["truncated"][label]],
                    f"test accuracy: normal minus trained on paths of at most {label[2:]}", margin=TRUNC_MARGIN, **pts)
    fam.add("sd_intact", [r["intact"] for r in sd], [r["intact"] for r in r56],
            "intact accuracy: stochastic depth minus ordinary residual-56", **pts)
    fam.add("sd_deletion", [np.mean([np.mean(a) for a in r["k_accs"][1:17]]) for r in sd],
            [np.mean([np.mean(a) for a in r["k_accs"][1:17]]) for r in r56],
            "accuracy over 1 to 16 random deletions: stochastic depth minus ordinary", **pts)

    def gap(label):
        return [r["evals"][-1]["test_loss"] - r["evals"][-1]["train_loss"] for r in gp[label]]
    for d in (8, 20):
        fam.add(f"gap{d}", gap(f"plain-{d}"), gap(f"residual-{d}"),
                f"end of training, gap (test - train loss): plain-{d} minus residual-{d}", unit="nats", fmt=".3f")
        for lv in GAP_LEVELS:
            a = [interpolated_gap(r["evals"], lv) for r in gp[f"plain-{d}"]]
            b = [interpolated_gap(r["evals"], lv) for r in gp[f"residual-{d}"]]
            if None in a or None in b:
                continue
            fam.add(f"gap{d}_{lv}", a, b, f"at train loss {lv}: gap of plain-{d} minus residual-{d}",
                    margin=GAP_MARGIN, unit="nats", fmt=".3f")

    def rep(label, variant, m):
        j = nz[label][0]["no_first"]["ms"].index(m)
        return [np.mean(r["no_first"][variant][j]) for r in nz[label]]
    for key, label, m in (("56", "residual-56", 6), ("20", "residual-20", 2)):
        fam.add(f"other{key}", rep(label, "delete", m), rep(label, "other image", m),
                f"{label}, {m} branches (block 1 kept): deleted minus another image's output", **pts)
        fam.add(f"noise{key}", rep(label, "delete", m), rep(label, "noise", m),
                f"{label}, {m} branches (block 1 kept): deleted minus matched noise", **pts)
        fam.add(f"mean{key}", rep(label, "delete", m), rep(label, "channel mean", m),
                f"{label}, {m} branches (block 1 kept): deleted minus channel mean", margin=MEAN_MARGIN, **pts)
    fam.add("cosine", [np.mean(r["cos"]) for r in nz["residual-56"]],
            [np.mean(r["cos"]) for r in nz["residual-56, fresh"]],
            "mean cos(branch, -gradient): trained minus fresh residual-56", fmt=".3f")
    return fam
