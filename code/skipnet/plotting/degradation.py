"""Figures of the degradation experiment (the opening chapter; *The gradient highway*): the training curves,
the final loss by depth, and the convergence rate (steps to a training loss against depth)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.history import Run
from skipnet.plotting.core import PLAIN, RESIDUAL, finish_axes, plot_curves

__all__ = ["plot_degradation_curves", "plot_final_loss_by_depth", "plot_convergence", "plot_interventions"]


def plot_degradation_curves(runs: Sequence[Run], axes: Sequence[Axes] | None = None, smooth: int = 5) -> Sequence[Axes]:
    """One panel per depth: the plain and residual training-loss curves (first seed of each). Without ``axes``, at
    most two panels a row (the book's text column holds two side by side; a third goes below)."""
    depths = sorted({r.model.depth for r in runs})
    cols = min(2, len(depths))
    if axes is None:
        rows = -(-len(depths) // cols)
        _, grid = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.2 * rows), sharey=True, squeeze=False,
                               layout="constrained")
        grid = grid.ravel()
        for ax in grid[len(depths):]:
            ax.remove()
        axes = grid[:len(depths)]
    axes = np.atleast_1d(axes)
    for i, (ax, d) in enumerate(zip(axes, depths)):
        chosen = {}
        for r in runs:
            if r.model.depth == d and r.label not in chosen:
                chosen[r.label] = r.history
        plot_curves(chosen, ax=ax, smooth=smooth, colors={f"plain-{d}": PLAIN, f"residual-{d}": RESIDUAL})
        ax.set_title(f"{d} layers")
        if ax.get_legend() is not None:
            ax.legend(fontsize=9, frameon=False)
        if i % cols:
            ax.set_ylabel("")
    return axes


def plot_final_loss_by_depth(runs: Sequence[Run], ax: Axes | None = None) -> Axes:
    """Final full-training-set loss against depth, plain vs residual (each seed a dot, the median a line)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    for residual, color, name in ((False, PLAIN, "plain"), (True, RESIDUAL, "residual")):
        rs = [r for r in runs if r.model.residual == residual and r.history.final]
        depths = sorted({r.model.depth for r in rs})
        med = [np.median([r.train_loss for r in rs if r.model.depth == d]) for d in depths]
        ax.plot(depths, med, "-o", color=color, label=name, lw=2)
        ax.scatter([r.model.depth for r in rs], [r.train_loss for r in rs], color=color, s=12, alpha=0.5)
    finish_axes(ax, "depth (weight layers)", "final training loss", log="y", legend=False)
    ax.legend(frameon=False)
    return ax


def plot_convergence(rows: Sequence[dict], threshold: float, ax: Axes | None = None, budget: int | None = None,
                     fit: dict | None = None) -> Axes:
    """Steps to reach a training loss of ``threshold`` against depth (log y), plain vs residual, from stored
    :func:`~skipnet.experiments.degradation.convergence_run` rows: one dot a seed, the median joined by a line;
    a seed that did not get there within the budget is an open marker at the budget, and a depth where the
    median did not is drawn with the line dashed to it. ``fit`` (from ``convergence_fit``) adds the exponential."""
    from skipnet.experiments.degradation import steps_table

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    budget = budget or max(r["budget"] for r in rows)
    for residual, color, name in ((False, PLAIN, "plain"), (True, RESIDUAL, "residual")):
        table = steps_table(rows, threshold, residual)
        depths = list(table)
        med = []
        for d, ss in table.items():
            done = [s for s in ss if s is not None]
            ax.scatter([d] * len(done), done, color=color, s=14, alpha=0.55, zorder=3)
            if len(done) < len(ss):
                ax.scatter([d], [budget], facecolors="none", edgecolors=color, s=40, lw=1.4, zorder=3)
            med.append(float(np.median([budget if s is None else s for s in ss])))
        ok = [i for i, d in enumerate(depths) if sum(s is not None for s in table[d]) * 2 > len(table[d])]
        if ok:
            ax.plot([depths[i] for i in ok], [med[i] for i in ok], "-", color=color, lw=2, label=f"{name} (median)")
            rest = [i for i in range(len(depths)) if i >= ok[-1]]
            if len(rest) > 1:
                ax.plot([depths[i] for i in rest], [med[i] for i in rest], "--", color=color, lw=1.5)
    if fit is not None:
        xs = np.linspace(min(fit["depths"]), max(fit["depths"]), 50)
        ax.plot(xs, np.exp(fit["intercept"] + fit["slope"] * xs), ":", color="k", lw=1.2,
                label=f"exponential fit: x2 every {fit['doubling']:.0f} layers")
    ax.axhline(budget, color="#777", lw=0.8, ls="-.")
    ax.text(max(r["depth"] for r in rows), budget * 0.9, f"budget: {budget} steps (open marker: not reached)",
            fontsize=8, color="#555", va="top", ha="right")
    ax.set_yscale("log")
    ax.set_xlabel("depth (weight layers)")
    ax.set_ylabel(f"steps to training loss < {threshold:g}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(0.0, 0.93))
    return ax


INTERVENTION_NAMES = {"sgd": "SGD", "project": "weights held\nat initial norm", "equalize": "explosion removed\nat the start",
                      "lars": "layer-wise\nrelative steps"}


def plot_interventions(rows: Sequence[dict], ax: Axes | None = None) -> Axes:
    """Plain-56's training-batch loss (last epoch) under each intervention of the stored sweep
    (:func:`~skipnet.experiments.degradation.intervention_run` rows): one dot a seed, a bar at the mean; residual-56
    under SGD as a green line (its highest seed), chance (ln 10) as a dotted line. Chapter: *The gradient highway*."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    modes = [m for m in INTERVENTION_NAMES if any(r["mode"] == m for r in rows)]
    for i, m in enumerate(modes):
        v = np.array([r["epoch_loss"][-1] for r in rows if r["mode"] == m and not r["residual"]])
        ax.bar(i, v.mean(), width=0.6, color=PLAIN, alpha=0.35)
        ax.plot(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, "o", color=PLAIN, ms=5)
    res = np.array([r["epoch_loss"][-1] for r in rows if r["mode"] == "sgd" and r["residual"]])
    ax.axhline(res.max(), color=RESIDUAL, lw=2.5, label="residual-56, SGD\n(highest seed)")
    ax.axhline(np.log(10), color="#555", ls=":", label="chance (ln 10)")
    ax.set_xticks(range(len(modes)), [INTERVENTION_NAMES[m] for m in modes], fontsize=9)
    ax.set_ylabel("training loss, last epoch")
    ax.set_title("plain-56 under each intervention (dots: seeds)", fontsize=10)
    ax.set_ylim(0, 2.6)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, frameon=False)
    return ax
