"""Figures of the chapter *The identity mapping*, its first and last sections (the experiments of
:mod:`skipnet.experiments.identity`): the identity fit (*Learning to do nothing*, *Is the comparison fair?*), the
trained branches (*What trained branches do*), the branch initializations without normalization and zero-gamma.
The shortcut study's figures are in :mod:`skipnet.plotting.identity_variants`, the sum's in
:mod:`skipnet.plotting.identity_sum`; the chapter's tables in :mod:`skipnet.tables`.

Inputs are the experiments' results (a :class:`~skipnet.history.Run` of an identity fit,
:class:`~skipnet.probes.branches.BranchStats`) or the rows stored by ``scripts/precompute_identity.py`` (plain
dicts), so a figure can be drawn from either. Plotting never trains.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.experiments.identity import best_lr_errors, group_rows, median_error
from skipnet.plotting.core import PLAIN, RESIDUAL, finish_axes

__all__ = ["INIT_COLORS", "plot_identity_curves", "plot_identity_depth", "plot_fit_fair", "plot_branches",
           "plot_branch_depths", "plot_loss_runs", "plot_init_lr", "plot_zero_gamma", "plot_zero_gamma_long"]

INIT_COLORS = {"standard": "#555555", "1/sqrt(L)": "#7570b3", "rezero": RESIDUAL, "fixup": "#e7298a",
               "zero_gamma": RESIDUAL}


def _get(obj, name):
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


def _fit(f) -> Mapping:
    """An identity fit as a row: a stored one, or the :class:`~skipnet.history.Run` of ``fit_identity``."""
    if isinstance(f, Mapping):
        return f
    steps, err = f.curve("rel_error")
    return {"residual": f.model.residual, "n_blocks": f.model.n_blocks, "status": f.status, "steps": steps,
            "rel_error": err}


def plot_identity_curves(fits: Sequence, ax: Axes | None = None) -> Axes:
    """Relative error of the identity fit against the training step, one line per fit
    (plain orange, residual green; a lighter line for the shallower of several depths)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.4))
    fits = [_fit(f) for f in fits]
    depths = sorted({f["n_blocks"] for f in fits})
    for f in fits:
        res, depth = f["residual"], f["n_blocks"]
        alpha = 0.45 + 0.55 * (depths.index(depth) + 1) / len(depths)
        label = f"{'residual' if res else 'plain'}, {depth} blocks"
        status = f["status"]
        if status != "finished":
            label += f" ({status})"
        ax.plot(f["steps"], f["rel_error"], color=RESIDUAL if res else PLAIN, alpha=alpha, lw=1.8,
                label=label, linestyle="-" if depth == depths[-1] else "--")
    ax.axhline(1.0, color="#777", lw=0.8, ls=":")
    ax.text(0, 1.0, " predicting the mean", va="bottom", ha="left", fontsize=8, color="#555")
    finish_axes(ax, "training step", "relative error on test digits", log="y")
    return ax


def _final(row) -> float:
    return row["rel_error"][-1] if row["status"] == "finished" else math.inf


def plot_identity_depth(rows: Sequence[Mapping], ax: Axes | None = None) -> Axes:
    """Final relative error of the identity fit against depth: median over seeds (line) and every seed (dots)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.4))
    for residual, color, name in ((False, PLAIN, "plain"), (True, RESIDUAL, "residual")):
        sub = [r for r in rows if r["residual"] == residual]
        depths = sorted({r["n_blocks"] for r in sub})
        finals = [[_final(r) for r in sub if r["n_blocks"] == d] for d in depths]
        ax.plot(depths, [np.median(v) for v in finals], "-o", color=color, lw=2, label=f"{name} (median)")
        for d, v in zip(depths, finals):
            ax.scatter([d] * len(v), v, s=12, color=color, alpha=0.45, zorder=3)
    ax.axhline(1.0, color="#777", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    all_depths = sorted({r["n_blocks"] for r in rows})
    ax.set_xticks(all_depths, [str(d) for d in all_depths])
    ax.minorticks_off()
    finish_axes(ax, "depth (blocks of two layers)", "relative error after training", log="y")
    return ax


def plot_fit_fair(rows: Sequence[Mapping], axes: Sequence[Axes] | None = None, base_lr: float = 0.05) -> np.ndarray:
    """Final relative error of the identity fit against depth at each stack's best learning rate (solid, dots:
    seeds) and at ``base_lr`` (dotted), on the standard task (left) and the lifted task [x, -x] (right)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.6, 3.4), sharey=True)
    for ax, lift in zip(axes, (False, True)):
        for residual, color, name in ((False, PLAIN, "plain"), (True, RESIDUAL, "residual")):
            best = best_lr_errors(rows, lift, residual)
            depths = sorted(best)
            ax.plot(depths, [median_error(best[d][1]) for d in depths], "-o", color=color, lw=2, label=f"{name}, best lr")
            for d in depths:
                vals = [v for v in best[d][1] if math.isfinite(v)]
                ax.scatter([d] * len(vals), vals, s=12, color=color, alpha=0.45, zorder=3)
            base = [median_error([r["rel_error"] for r in rows if (r["lift"], r["residual"], r["n_blocks"], r["lr"])
                          == (lift, residual, d, base_lr)]) for d in depths]
            ax.plot(depths, base, ":", color=color, lw=1.4, label=f"{name}, lr {base_lr:g}")
        ax.axhline(1.0, color="#777", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("blocks")
        ax.set_title("stream [x, -x] (128 wide)" if lift else "stream x (64 wide)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("relative error after 300 steps")
    axes[0].legend(fontsize=7.5, frameon=False)
    return np.asarray(axes)


def plot_branches(stats: Mapping[str, object], axes: Sequence[Axes] | None = None) -> np.ndarray:
    """Two panels against the block: ||F(x)|| / ||x|| (top) and cos(x, x + F(x)) (bottom), one line per entry
    of ``stats`` (label -> BranchStats or dict with ``rel_norm`` and ``cosine``)."""
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(6.0, 5.6), sharex=True)
    styles = [":", "-", "--", "-."]
    colors = ["#888888", RESIDUAL, "#7570b3", "#e7298a"]          # all residual nets: grey, green, purple, pink
    for i, (label, st) in enumerate(stats.items()):
        rel, cos = np.asarray(_get(st, "rel_norm")), np.asarray(_get(st, "cosine"))
        blocks = np.arange(1, len(rel) + 1)
        kw = dict(color=colors[i % len(colors)], ls=styles[i % len(styles)], lw=1.8, label=label)
        axes[0].plot(blocks, rel, **kw)
        axes[1].plot(blocks, cos, **kw)
    axes[0].axhline(1.0, color="#777", lw=0.8, ls=":")
    axes[0].text(1, 1.0, " equal parts", va="bottom", fontsize=8, color="#555")
    axes[0].set_ylabel(r"$\|F(x)\| \,/\, \|x\|$")
    axes[1].set_ylabel(r"$\cos(x,\ x + F(x))$")
    axes[1].set_ylim(min(0.0, float(np.nanmin([np.min(_get(s, "cosine")) for s in stats.values()]))) - 0.02, 1.02)
    axes[-1].set_xlabel("block")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, frameon=False)
    return np.asarray(axes)


def plot_branch_depths(rows: Sequence[Mapping], ax: Axes | None = None, init: str = "standard") -> Axes:
    """Per-block ||F(x)|| / ||x|| of trained residual-20 and residual-56 (median over seeds), plain (solid) and
    mean-centred (dashed), against the block's position in the network (0 = first block, 1 = last)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.4))
    depths = sorted({r["depth"] for r in rows})
    shades = dict(zip(depths, ("#66c2a4", "#00441b", "#238b45")))
    for d in depths:
        sub = [r for r in rows if r["depth"] == d and r["init"] == init]
        for key, ls, what in (("rel_norm", "-", ""), ("rel_norm_c", "--", ", centred")):
            if key not in sub[0]:
                continue
            per_block = np.median(np.array([r[key] for r in sub], dtype=float), axis=0)
            pos = np.linspace(0, 1, len(per_block))
            ax.plot(pos, per_block, ls, color=shades[d], lw=1.8, label=f"residual-{d}{what}")
    ax.axhline(1.0, color="#777", lw=0.8, ls=":")
    ax.text(0.0, 1.0, " equal parts", va="bottom", fontsize=8, color="#555")
    finish_axes(ax, "position of the block (first to last)", r"$\|F(x)\| \,/\, \|x\|$, median over digits and seeds")
    return ax


def plot_loss_runs(runs: Mapping[str, Mapping], ax: Axes | None = None, colors: Mapping[str, str] | None = None,
                   smooth: int = 5) -> Axes:
    """Per-step training loss of runs given as label -> {"loss": [...], "status": str}; a diverged run ends
    with an x where it diverged and says so in the legend (no NaN is ever drawn)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 3.4))
    for label, r in runs.items():
        ys = np.asarray(r["loss"], dtype=float)
        if smooth > 1 and len(ys) >= smooth:
            ys = np.convolve(ys, np.ones(smooth) / smooth, mode="valid")
            xs = np.arange(smooth, len(r["loss"]) + 1)
        else:
            xs = np.arange(1, len(ys) + 1)
        status = r["status"]
        name = label if status == "finished" else f"{label} ({status})"
        color = (colors or {}).get(label)
        if len(ys):
            line, = ax.plot(xs, ys, lw=1.6, label=name, color=color)
            color = line.get_color()
        else:
            ax.plot([], [], lw=1.6, label=name, color=color)
        if status.startswith("diverged"):
            k = int(status.rsplit(" ", 1)[-1])
            ax.plot([k], [ys[-1] if len(ys) else 2.3], marker="x", ms=10, mew=2.5, color=color or "#333")
    finish_axes(ax, "training step", "training loss (batch)" + (f", mean of {smooth} steps" if smooth > 1 else ""),
                log="y")
    return ax


def plot_init_lr(rows: Sequence[Mapping], labels: Mapping[str, str], ax: Axes | None = None) -> Axes:
    """Final training loss (median of the finished seeds) against the learning rate, one line per initialization;
    an x at the top marks a learning rate at which every seed diverged."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6))
    groups = group_rows(rows, "init", "lr")
    for key, label in labels.items():
        lrs = sorted(lr for (k, lr) in groups if k == key)
        xs, ys, div = [], [], []
        for lr in lrs:
            done = [r["train_loss"] for r in groups[(key, lr)] if r["status"] == "finished"]
            if done:
                xs.append(lr)
                ys.append(float(np.median(done)))
            else:
                div.append(lr)
        color = INIT_COLORS.get(key)
        line, = ax.plot(xs, ys, "-o", ms=4, lw=1.8, color=color, label=label)
        ax.plot(div, [20.0] * len(div), "x", ms=9, mew=2.2, color=line.get_color())
    ax.axhline(math.log(10), color="#777", lw=0.8, ls=":")
    ax.text(min(r["lr"] for r in rows), math.log(10), " chance (ln 10)", va="bottom", fontsize=8, color="#555")
    ax.text(min(r["lr"] for r in rows), 20.0, " x: every seed diverged", va="bottom", fontsize=8, color="#555")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(top=40)
    finish_axes(ax, "learning rate (peak of the cosine schedule)", "final training loss, median", loc="lower left")
    return ax


def plot_zero_gamma(rows: Sequence[Mapping], ax: Axes | None = None) -> Axes:
    """Final training loss of residual-20 and residual-56 with the standard init and with zero-gamma:
    every seed (dots) and the median (bar)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.4))
    inits = list(dict.fromkeys(r["init"] for r in rows))
    depths = sorted({r["depth"] for r in rows})
    width = 0.8 / len(depths)
    for i, init in enumerate(inits):
        for j, d in enumerate(depths):
            vals = [r["train_loss"] for r in rows if r["init"] == init and r["depth"] == d and r["train_loss"] is not None]
            x = i + (j - (len(depths) - 1) / 2) * width
            shade = 0.45 if j == 0 else 0.95
            ax.bar(x, np.median(vals), width * 0.9, color=INIT_COLORS.get(init, RESIDUAL), alpha=shade,
                   label=f"residual-{d}" if i == 0 else None, edgecolor="#333", lw=0.6)
            ax.scatter([x] * len(vals), vals, s=14, color="#222", zorder=3)
    ax.set_xticks(range(len(inits)), [{"standard": "standard init", "zero_gamma": "zero-gamma init"}.get(k, k)
                                      for k in inits])
    finish_axes(ax, None, "final training loss (full set)", log="y", grid="y")
    return ax


def plot_zero_gamma_long(rows: Sequence[Mapping], ax: Axes | None = None, steps_per_epoch: int = 11) -> Axes:
    """Training loss (full set) every 10 epochs of the 40-epoch runs: median over seeds per depth and init."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 3.4))
    for (depth, init), sub in sorted(group_rows(rows, "depth", "init").items()):
        steps = [e["step"] for e in sub[0]["evals"]]
        med = np.median(np.array([[e["train_loss"] for e in r["evals"]] for r in sub]), axis=0)
        ax.plot(np.array(steps) / steps_per_epoch, med, "-o" if depth > 20 else "--s", ms=4, lw=1.8,
                color=INIT_COLORS.get(init), alpha=1.0 if depth > 20 else 0.6,
                label=f"residual-{depth}, {'zero-gamma' if init == 'zero_gamma' else 'standard'}")
    finish_axes(ax, "epoch", "training loss (full set), median", log="y")
    return ax
