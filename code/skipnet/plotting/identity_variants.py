"""Figures of He et al. (2016)'s shortcut and placement study in the chapter *The identity mapping* (*Which
shortcut?*, *Two confounds, removed*; the experiments of :mod:`skipnet.experiments.identity_variants`): test error
by variant, and the product of the 1x1 shortcuts along training. Plotting never trains.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.plotting.core import PLAIN, RESIDUAL, finish_axes

__all__ = ["plot_variants", "plot_product_norm", "plot_shortcut_diagram", "SHORTCUT_DRAWINGS"]


def plot_variants(summary: Mapping[str, Mapping], labels: Mapping[str, str], ax: Axes | None = None,
                  fail_err: float = 0.20) -> Axes:
    """Median test error over seeds (bars) and the range of seeds (whiskers) of each variant in ``labels``
    (key -> label, top to bottom), with the paper's "fail" line at 20 %."""
    keys = [k for k in labels if k in summary]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.36 * len(keys) + 1.0))
    y = np.arange(len(keys))[::-1]
    med = np.array([100 * summary[k]["test_err"] for k in keys])
    lo = np.array([100 * summary[k]["test_err_range"][0] for k in keys])
    hi = np.array([100 * summary[k]["test_err_range"][1] for k in keys])
    colors = [PLAIN if k == "plain" else "#9a9a9a" if summary[k]["fails"] > summary[k]["n"] / 2 else RESIDUAL
              for k in keys]
    ax.barh(y, med, color=colors, alpha=0.85)
    ax.errorbar(med, y, xerr=[med - lo, hi - med], fmt="none", ecolor="#333", capsize=3, lw=1)
    ax.axvline(100 * fail_err, color="#b00", lw=1, ls="--")
    ax.text(100 * fail_err, y[0] + 0.6, " fail", color="#b00", fontsize=8, va="center")
    ax.set_yticks(y, [labels[k] for k in keys], fontsize=9)
    ax.set_xlim(0, 100)
    finish_axes(ax, "test error on the digits, % (median and range over seeds)", grid="x", legend=False)
    return ax


def plot_product_norm(rows: Sequence[Mapping], axes: Sequence[Axes] | None = None) -> np.ndarray:
    """The 1x1 shortcut started at I or orthogonal: spectral norm of the product of the 54 shortcut maps (left)
    and the batch loss (right) against the step, one line per seed."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.6, 3.2))
    colors = {"conv1x1_identity": RESIDUAL, "conv1x1_orthogonal": "#7570b3"}
    names = {"conv1x1_identity": "started at I", "conv1x1_orthogonal": "started orthogonal"}
    for key, color in colors.items():
        for i, r in enumerate(x for x in rows if x["key"] == key):
            lab = names[key] if i == 0 else None
            axes[0].plot(np.arange(len(r["prod_norm"])), r["prod_norm"], color=color, lw=1, alpha=0.8, label=lab)
            axes[1].plot(np.arange(1, len(r["loss"]) + 1), r["loss"], color=color, lw=1, alpha=0.8, label=lab)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("spectral norm of $W_{54} \\cdots W_1$")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("training loss (batch)")
    for ax in axes:
        finish_axes(ax, "training step", legend=False)
    axes[0].legend(fontsize=8, frameon=False)
    return np.asarray(axes)


SHORTCUT_DRAWINGS = (("identity", "x", "F(x)"), ("constant scaling", "0.5 x", "F(x)"),
                     ("exclusive gate", "(1 - g) x", "g F(x)"), ("shortcut-only gate", "(1 - g) x", "F(x)"),
                     ("1x1 convolution", "W x", "F(x)"), ("dropout (0/1 mask m)", "m x", "F(x)"))
"""He et al. (2016) Fig. 2, as (name, what the shortcut carries, what the branch adds); g = sigmoid(W_g x + b_g)."""


def plot_shortcut_diagram(drawings=SHORTCUT_DRAWINGS, ax: Axes | None = None) -> Axes:
    """The shortcut variants as block diagrams, two a row: x splits into the branch (top box) and the shortcut
    (bottom box, what it carries), and the two meet at the addition. The identity is drawn in green, the others grey."""
    rows = (len(drawings) + 1) // 2
    if ax is None:
        _, ax = plt.subplots(figsize=(7.2, 1.55 * rows + 0.2))
    for i, (name, short, branch) in enumerate(drawings):
        x0, y0 = 5.2 * (i % 2), -2.0 * (i // 2)
        color = RESIDUAL if i == 0 else "#777777"
        ax.text(x0 + 2.2, y0 + 0.95, name, ha="center", fontsize=9.5, weight="bold")
        ax.annotate("", xy=(x0 + 0.9, y0), xytext=(x0, y0), arrowprops=dict(arrowstyle="-", lw=1.2))
        ax.text(x0 - 0.05, y0, "x ", ha="right", va="center", fontsize=10)
        for dy, label, c in ((0.45, branch, "#444444"), (-0.45, short, color)):
            ax.plot([x0 + 0.9, x0 + 0.9, x0 + 1.2], [y0, y0 + dy, y0 + dy], color="k", lw=1.2)
            ax.add_patch(plt.Rectangle((x0 + 1.2, y0 + dy - 0.22), 2.0, 0.44, fill=False, ec=c, lw=1.6))
            ax.text(x0 + 2.2, y0 + dy, label, ha="center", va="center", fontsize=9, color=c)
            ax.annotate("", xy=(x0 + 3.75, y0 + np.sign(dy) * 0.12), xytext=(x0 + 3.2, y0 + dy),
                        arrowprops=dict(arrowstyle="->", lw=1.2))
        ax.add_patch(plt.Circle((x0 + 3.85, y0), 0.15, fill=False, lw=1.2))
        ax.text(x0 + 3.85, y0, "+", ha="center", va="center", fontsize=10)
        ax.annotate("", xy=(x0 + 4.5, y0), xytext=(x0 + 4.0, y0), arrowprops=dict(arrowstyle="->", lw=1.2))
        ax.text(x0 + 4.55, y0, "y", ha="left", va="center", fontsize=10)
    ax.set_xlim(-0.5, 10.2)
    ax.set_ylim(-2.0 * (rows - 1) - 0.8, 1.25)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
