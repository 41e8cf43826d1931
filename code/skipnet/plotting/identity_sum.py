"""Figures of *Isn't the sum messy? Read it back* and *The scaled shortcut over depth* in the chapter *The identity
mapping* (the experiments of :mod:`skipnet.experiments.identity_sum`): what linear probes read back from the last
stream, and the map of the scaled shortcut lambda x over lambda and depth. Plotting never trains.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.experiments.identity_sum import lambda_boundary
from skipnet.plotting.core import PLAIN, RESIDUAL, finish_axes

__all__ = ["DECODE_COLORS", "DECODE_NAMES", "plot_decode", "plot_readback", "plot_lambda_map"]

DECODE_COLORS = {"residual": RESIDUAL, "plain": PLAIN, "dense": "#7570b3"}
DECODE_NAMES = {"residual": "residual (sum)", "plain": "plain", "dense": "concatenation (DenseNet-like)"}


def plot_decode(rows: Sequence[Mapping], n_blocks: int, ax: Axes | None = None) -> Axes:
    """Test R^2 of linear probes from the last stream x_L of ``n_blocks``-block networks: to x_0 (left-most
    point) and to what each block k wrote (F_k; for the plain net, block k's output); median over seeds."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.4))
    top = str(n_blocks)
    for kind in DECODE_NAMES:
        sub = [r for r in rows if r["kind"] == kind and r["n_blocks"] == n_blocks]
        if not sub:
            continue
        vals = np.median(np.array([[r["decode"][top]["x0"], *r["decode"][top]["writes"]] for r in sub]), axis=0)
        ax.plot(np.arange(len(vals)), vals, "-o", ms=3.5, color=DECODE_COLORS[kind], lw=1.8, label=DECODE_NAMES[kind])
    ax.set_xticks([0, *range(1, n_blocks + 1, max(1, n_blocks // 8))],
                  ["$x_0$", *(f"$F_{{{k}}}$" for k in range(1, n_blocks + 1, max(1, n_blocks // 8)))])
    ax.set_ylim(0, 1.02)
    finish_axes(ax, "what the probe reads from the last stream $x_L$", "test $R^2$ of a linear probe", loc="lower left")
    return ax


def plot_readback(rows: Sequence[Mapping], n_blocks: int, ax: Axes | None = None) -> Axes:
    """The read-back with its control (the ``decode_control`` sweep), median over seeds, block k on the x axis:
    what block k wrote, F_k, read from the residual stream x_L (solid green) and from x_L - F_k, the stream with that
    very term removed (dashed green); the state after block k, x_k, read from x_L, residual (dotted green) and
    plain (orange): states against states."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    top, ks = str(n_blocks), np.arange(1, n_blocks + 1)

    def med(kind, key):
        sub = [r["decode"][top][key] for r in rows if r["kind"] == kind and r["n_blocks"] == n_blocks]
        return np.median(np.array(sub), axis=0)
    ax.plot(ks, med("residual", "writes"), "-o", ms=3.5, color=RESIDUAL, lw=1.8, label="residual: $F_k$ from $x_L$")
    ax.plot(ks, med("residual", "writes_ablated"), "--s", ms=3.5, color=RESIDUAL, lw=1.4,
            label="residual: $F_k$ from $x_L - F_k$ (control)")
    ax.plot(ks - 1, med("residual", "states"), ":", color=RESIDUAL, lw=1.6, label="residual: state $x_k$ from $x_L$")
    ax.plot(ks - 1, med("plain", "states"), "-^", ms=3.5, color=PLAIN, lw=1.6, label="plain: state $x_k$ from $x_L$")
    ax.set_ylim(0, 1.02)
    finish_axes(ax, "block $k$ (states: $x_0$ is the input of block 1)", "test $R^2$ of a linear probe",
                legend=False)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def plot_lambda_map(rows: Sequence[Mapping], axes: Sequence[Axes] | None = None, factor: float = 2.0) -> np.ndarray:
    """Top: median test error over seeds for the shortcut lambda x, over lambda (columns) and blocks (rows); failing
    cells (:func:`lambda_boundary`) outlined, and the curves lambda^L = c for the two thresholds of lambda_boundary.
    Bottom: each lambda < 1 cell's error over the identity's at its depth against lambda^L, one colour per depth."""
    b = lambda_boundary(rows, factor)
    lams = sorted({k[0] for k in b["median"]})
    depths = sorted({k[1] for k in b["median"]})
    grid = np.array([[100 * b["median"][(lam, n)] for lam in lams] for n in depths])
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(7.0, 7.6), gridspec_kw={"height_ratios": [1.1, 1]})
    ax = axes[0]
    ax.imshow(grid, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=90)
    for i, n in enumerate(depths):
        for j, lam in enumerate(lams):
            v = grid[i, j]
            ax.text(j, i, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="center", fontsize=7.5,
                    color="white" if v > 45 else "#111")
            if (lam, n) in b["fails"]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#b00", lw=1.6))
    curves = ((b["min_training_pow"], "--", "below: every cell fails"), (b["max_failing_pow"], ":", "above: every cell trains"))
    for c, style, what in curves:
        if c is None:
            continue
        ys = np.linspace(0, len(depths) - 1, 100)
        ns = np.interp(ys, range(len(depths)), depths)
        lam_c = c ** (1 / ns)                                            # lambda with lambda^L = c at each depth
        inside = (lam_c >= lams[0]) & (lam_c <= lams[-1])
        xs = np.interp(lam_c, lams, range(len(lams)))                    # ... on the column axis
        ax.plot(xs[inside], ys[inside], style, color="#1f78b4", lw=1.8, label=f"$\\lambda^L$ = {c:.2g} ({what})")
    ax.set_xticks(range(len(lams)), [f"{lam:g}" for lam in lams])
    ax.set_yticks(range(len(depths)), [str(n) for n in depths])
    ax.set_xlabel(r"shortcut scale $\lambda$  ($y = \lambda x + F(x)$)")
    ax.set_ylabel("blocks $L$")
    ax.set_title("median test error %", fontsize=10)
    ax.legend(fontsize=7.5, frameon=True, loc="lower right")
    ax = axes[1]
    shades = plt.cm.viridis(np.linspace(0.1, 0.85, len(depths)))
    for n, color in zip(depths, shades):
        cells = sorted(k for k in b["ratio"] if k[1] == n and k[0] < 1)
        ax.plot([k[0] ** n for k in cells], [b["ratio"][k] for k in cells], "o-", ms=4, lw=1, color=color,
                label=f"L = {n}")
    ax.axhline(factor, color="#b00", lw=1, ls="--")
    finish_axes(ax, r"$\lambda^L$ (the input's share at the top, He et al. 2016 eq. 7)",
                "test error / identity's at the same L", log="xy", legend=False)
    ax.legend(fontsize=7.5, frameon=False)
    return np.asarray(axes)
