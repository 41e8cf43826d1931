"""Figures of the degradation experiment (the opening chapter; *The gradient highway*)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.train import Run
from skipnet.plotting.core import PLAIN, RESIDUAL, plot_curves

__all__ = ["plot_degradation_curves", "plot_final_loss_by_depth", "degradation_markdown"]


def plot_degradation_curves(runs: Sequence[Run], axes: Sequence[Axes] | None = None, smooth: int = 5) -> Sequence[Axes]:
    """One panel per depth: the plain and residual training-loss curves (first seed of each)."""
    depths = sorted({r.model.depth for r in runs})
    if axes is None:
        _, axes = plt.subplots(1, len(depths), figsize=(3.4 * len(depths), 3.0), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, d in zip(axes, depths):
        chosen = {}
        for r in runs:
            if r.model.depth == d and r.label not in chosen:
                chosen[r.label] = r.history
        plot_curves(chosen, ax=ax, smooth=smooth, colors={f"plain-{d}": PLAIN, f"residual-{d}": RESIDUAL})
        ax.set_title(f"{d} layers")
        if ax is not axes[0]:
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
    ax.set_yscale("log")
    ax.set_xlabel("depth (weight layers)")
    ax.set_ylabel("final training loss")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return ax


def degradation_markdown(runs: Sequence[Run]) -> str:
    """A markdown table: depth, plain and residual final training loss / training error / test error (medians)."""
    def med(rs, key):
        vals = [r.row()[key] for r in rs if r.row()[key] is not None]
        return float(np.median(vals)) if vals else float("nan")

    lines = ["| depth | plain: train loss | plain: train error | plain: test error "
             "| residual: train loss | residual: train error | residual: test error |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for d in sorted({r.model.depth for r in runs}):
        p = [r for r in runs if r.model.depth == d and not r.model.residual]
        q = [r for r in runs if r.model.depth == d and r.model.residual]
        lines.append(f"| {d} | {med(p, 'train_loss'):.3f} | {med(p, 'train_err'):.1%} | {med(p, 'test_err'):.1%} "
                     f"| {med(q, 'train_loss'):.3f} | {med(q, 'train_err'):.1%} | {med(q, 'test_err'):.1%} |")
    return "\n".join(lines)
