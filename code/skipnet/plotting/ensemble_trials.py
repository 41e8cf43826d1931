"""Figures of the trials in *An ensemble of relatively shallow paths*: the exact path-length spectrum, lesions with
recalibrated BatchNorm, stratified deletion and swap curves, branch replacement, the refinement cosine, training
through a few blocks, and a real ensemble. ``plot_x(data, ax=None) -> Axes``; nothing here trains."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.plotting.core import PLAIN, RESIDUAL
from skipnet.plotting.ensemble import CHANCE, STOCHASTIC, style

__all__ = ["SPECTRUM_STYLES", "plot_spectrum", "plot_spectra", "plot_recal_single", "plot_recal_curves",
           "plot_cost_vs_ratio", "plot_stratified", "plot_swaps", "plot_replacement", "plot_refinement",
           "plot_short_paths", "plot_member_deletion"]

SPECTRUM_STYLES = {"trained": dict(color=RESIDUAL, lw=2.2), "untrained, BN off": dict(color="#999", ls=":", lw=1.6),
                   "untrained, batch statistics": dict(color="#555", ls="--", lw=1.6),
                   "stochastic depth": dict(color=STOCHASTIC, lw=1.6),
                   "zero-gamma": dict(color="#d95f02", lw=1.6, ls="-.")}
VARIANT_STYLES = {"delete": dict(color="#333"), "other image": dict(color="#e7298a"),
                  "noise": dict(color="#7570b3", ls="--"), "channel mean": dict(color="#66a61e", ls=":")}


def _ax(ax: Axes | None, size=(6, 3.4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _finish(ax: Axes, xlabel: str, ylabel: str, ylim=(0, 1.02), chance: bool = True, legend: str = "best") -> Axes:
    if chance:
        ax.axhline(CHANCE, color="#888", lw=1, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9, frameon=False, loc=legend)
    return ax


def plot_spectrum(exact: Sequence[float], sampled: Sequence[float] | None = None,
                  prediction: Sequence[float] | None = None, ax: Axes | None = None) -> Axes:
    """One net: the exact share ||G_k|| / sum ||G_j|| by length (bars), Veit's sampled estimate and the per-block
    gains prediction (lines), each with its mean length in the legend."""
    ax = _ax(ax)
    ks = np.arange(len(exact))
    mean = lambda w: float((np.arange(len(w)) * np.asarray(w)).sum() / np.sum(w))
    ax.bar(ks, exact, color=RESIDUAL, width=0.8, alpha=0.85, label=f"exact (dynamic programme), mean {mean(exact):.1f}")
    if sampled is not None:
        ax.plot(ks, sampled, "o-", color="#333", ms=3, lw=1.3,
                label=f"Veit's sampled estimate, mean {mean(sampled):.1f}")
    if prediction is not None:
        ax.plot(ks, prediction, "--", color="#d95f02", lw=1.5, label=f"from per-block gains, mean {mean(prediction):.1f}")
    ax.axvline(len(exact) / 2 - 0.5, color="#333", ls=":", lw=1)
    return _finish(ax, "path length k (branches used)", "share of the gradient", ylim=(0, None), chance=False,
                   legend="upper right")


def plot_spectra(spectra: Mapping[str, Sequence[float]], ax: Axes | None = None) -> Axes:
    """Exact shares by length for several nets (``{name: shares}``; names as in SPECTRUM_STYLES), mean in the legend."""
    ax = _ax(ax)
    for name, w in spectra.items():
        w = np.asarray(w, dtype=float)
        ks = np.arange(len(w))
        ax.plot(ks, w, marker="o", ms=2.5, label=f"{name}: mean {(ks * w).sum() / w.sum():.1f}",
                **SPECTRUM_STYLES.get(name, dict(color="#333")))
    n = max(len(w) for w in spectra.values()) - 1
    ax.axvline(n / 2, color="#333", ls=":", lw=1)
    ax.text(n / 2 + 0.3, ax.get_ylim()[1] * 0.9, "n/2", fontsize=8, color="#333")
    return _finish(ax, "path length k (branches used)", "share of the gradient (exact)", ylim=(0, None), chance=False,
                   legend="upper right")


def plot_recal_single(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]], ax: Axes | None = None) -> Axes:
    """Single deletions with stale BN (solid) and recalibrated BN (dashed): ``{label: (stale, recal, intact)}``."""
    ax = _ax(ax)
    for label, (stale, recal, intact) in curves.items():
        kw = style(label)
        x = np.arange(1, len(stale) + 1) / len(stale)
        ax.plot(x, stale, marker="o", ms=3, lw=1.3, color=kw["color"], label=f"{label}, as tested")
        ax.plot(x, recal, marker="s", ms=3, lw=1.3, ls="--", color=kw["color"], mfc="white",
                label=f"{label}, BN recalibrated")
        ax.axhline(intact, color=kw["color"], ls=":", lw=1)
    return _finish(ax, "deleted block (position as a share of the net's blocks)", "test accuracy", legend="lower right")


def plot_recal_curves(curves: Mapping[str, tuple[Sequence[int], Sequence[float], Sequence[float]]],
                      ax: Axes | None = None) -> Axes:
    """k random deletions, stale vs recalibrated BN: ``{label: (ks, stale means, recal means)}``."""
    ax = _ax(ax)
    for label, (ks, stale, recal) in curves.items():
        kw = style(label)
        ax.plot(ks, stale, marker="o", ms=3, lw=1.4, color=kw["color"], label=f"{label}, as tested")
        ax.plot(ks, recal, marker="s", ms=3, lw=1.4, ls="--", color=kw["color"], mfc="white",
                label=f"{label}, BN recalibrated")
    return _finish(ax, "blocks deleted at random (k)", "test accuracy", legend="lower left")


def plot_cost_vs_ratio(points: Mapping[str, tuple[Sequence[float], Sequence[float]]], ax: Axes | None = None) -> Axes:
    """Lesion cost (intact minus single-deletion accuracy) against the block's ||branch|| / ||shortcut||, one point
    per block and seed: ``{label: (ratios, costs)}``."""
    ax = _ax(ax, (5, 3.4))
    for label, (r, c) in points.items():
        ax.scatter(r, c, s=10, alpha=0.6, label=label, color=style(label)["color"])
    ax.set_xscale("log")
    return _finish(ax, "||branch|| / ||shortcut|| of the deleted block (log)", "accuracy lost", ylim=(-0.05, 1),
                   chance=False, legend="upper left")


def plot_stratified(curves: Mapping[str, tuple[Sequence[int], Sequence[float], Sequence[float], Sequence[float]]],
                    ax: Axes | None = None) -> Axes:
    """k random deletions split by whether block 1 is among them: ``{label: (ks, all, with block 1, without)}``, and
    optionally a fifth series, the sets that keep both blocks 1 and 2 (dotted)."""
    ax = _ax(ax)
    for label, (ks, every, cut, kept, *both) in curves.items():
        kw = style(label)
        if both:
            ax.plot(ks, both[0], marker="^", ms=3.5, lw=1.6, ls=":", color=kw["color"],
                    label=f"{label}, blocks 1 and 2 kept")
        ax.plot(ks, every, lw=1.0, color=kw["color"], alpha=0.5, label=f"{label}, all sets")
        ax.plot(ks, kept, marker="o", ms=3, lw=1.6, color=kw["color"], label=f"{label}, block 1 kept")
        ax.plot(ks, cut, marker="x", ms=4, lw=1.2, ls="--", color=kw["color"], label=f"{label}, block 1 deleted")
    return _finish(ax, "blocks deleted at random (k)", "test accuracy", legend="upper right")


def plot_swaps(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], ax: Axes | None = None,
               xlabel: str = "Kendall distance to the built order (pairs of blocks out of order)") -> Axes:
    """Accuracy after k disjoint swaps against ``x``, the number of swaps or the mean Kendall distance of those
    orders (only where it was measured for every curve): ``{label: (x, acc)}``."""
    ax = _ax(ax)
    for label, (dist, acc) in curves.items():
        kw = style(label)
        if "block 1 fixed" in label:
            kw = dict(kw, ls=":")
        ax.plot(dist, acc, marker="o", ms=3.5, lw=1.5, label=label, **kw)
    return _finish(ax, xlabel, "test accuracy", legend="lower left")


def plot_replacement(curves: Mapping[str, tuple[Sequence[int], Sequence[float], Sequence[float], Sequence[float]]],
                     ax: Axes | None = None, title: str = "") -> Axes:
    """Accuracy against the number of branch outputs replaced, one line per variant: ``{variant: (ms, mean, lo, hi)}``
    (band: lowest to highest seed)."""
    ax = _ax(ax)
    for variant, (ms, mean, lo, hi) in curves.items():
        kw = VARIANT_STYLES.get(variant, dict(color="#333"))
        ax.plot(ms, mean, marker="o", ms=3, lw=1.6, label=variant, **kw)
        ax.fill_between(ms, lo, hi, color=kw["color"], alpha=0.12, lw=0)
    if title:
        ax.set_title(title, fontsize=10)
    return _finish(ax, "branches replaced (m)", "test accuracy", legend="upper right")


def plot_refinement(cosines: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
                    ax: Axes | None = None) -> Axes:
    """cos(F_l, -dL/dz_l) per block: ``{label: (mean, lo, hi)}`` over seeds; x scaled to the net's length."""
    ax = _ax(ax)
    for label, (mean, lo, hi) in cosines.items():
        kw = style(label) if "fresh" not in label else dict(color="#999", ls=":")
        n = len(mean)
        x = (np.arange(n) + 1) / n
        ax.plot(x, mean, marker="o", ms=3, lw=1.5, label=label, **kw)
        ax.fill_between(x, lo, hi, color=kw["color"], alpha=0.12, lw=0)
    ax.axhline(0, color="#333", lw=0.8)
    return _finish(ax, "block position (share of the net's blocks)", "cos(branch output, -gradient)", ylim=None,
                   chance=False, legend="upper left")


def plot_short_paths(rows: Sequence[tuple[str, Sequence[float]]], ax: Axes | None = None) -> Axes:
    """Test accuracy per training variant (one dot per seed, bar: mean): ``[(name, accuracies)]``."""
    ax = _ax(ax, (6, 3.2))
    for j, (name, accs) in enumerate(rows):
        color = RESIDUAL if "normal" in name else "#7570b3" if ("update" in name or "matched" in name) else "#e7298a"
        ax.bar(j, np.mean(accs), color=color, alpha=0.35, width=0.6)
        ax.scatter(np.full(len(accs), j) + np.linspace(-0.12, 0.12, len(accs)), accs, s=14, color=color, zorder=3)
    ax.set_xticks(range(len(rows)), [name for name, _ in rows], fontsize=9)
    lo = min(min(a) for _, a in rows)
    return _finish(ax, "training", "test accuracy", ylim=(max(0.0, lo - 0.08), 1.0), chance=False, legend="lower right")


def plot_member_deletion(ensemble: tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]],
                         residual: tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]],
                         ax: Axes | None = None, labels: tuple[str, str] = ("five residual-8 nets, logits averaged",
                                                                            "residual-56, blocks deleted"),
                         xlabel: str = "share deleted") -> Axes:
    """Accuracy against the share of members (ensemble) or blocks (residual-56) deleted: each ``(x, mean, lo, hi)``."""
    ax = _ax(ax)
    for (x, mean, lo, hi), label, color, marker in ((ensemble, labels[0], PLAIN, "s"),
                                                    (residual, labels[1], RESIDUAL, "o")):
        ax.plot(x, mean, marker=marker, ms=3.5, lw=1.6, color=color, label=label)
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
    return _finish(ax, xlabel, "test accuracy", legend="lower left")
