"""Figures of the chapter *Residual connections in Transformers (and the RNN question)*.

``plot_x(result, ax=None) -> Axes``; nothing here trains. Colours: plain / no skip orange, residual
/ skip green (from :mod:`skipnet.plotting.core`); the gated skip (LSTM forget gate) purple.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch

from skipnet.plotting.core import PLAIN, RESIDUAL, diverged_label, finish_axes, scrubber

__all__ = ["GATED", "NORM_STYLE", "rank_label", "plot_rank_curves", "rank_scrubber", "plot_loglog_rank",
           "plot_sort_runs", "plot_stored_curves", "plot_depth_sweep", "plot_grad_profiles", "plot_depth_laws",
           "plot_path_profile", "plot_time_gradients", "draw_residual_stream", "VARIANT_COLOR", "VARIANT_STYLE",
           "CELL_COLOR", "plot_collapse_at_init"]

GATED = "#7570b3"
STANDARD_INIT = "#555555"        # the standard init beside the depth-aware one (green): two colours, not two shades
NORM_STYLE = {"pre": "-", "post": "--", "none": ":"}
VARIANT_COLOR = {"no residual": PLAIN, "post-LN": RESIDUAL, "pre-LN": RESIDUAL}
VARIANT_STYLE = {"no residual": "-", "post-LN": "--", "pre-LN": "-"}
VARIANT_MARKER = {"no residual": "o", "post-LN": "s", "pre-LN": "^"}
CELL_COLOR = {"tanh RNN": PLAIN, "LSTM, no forget gate": RESIDUAL, "LSTM (forget gate)": GATED}


def rank_label(skip: bool, ln: bool, mlp: bool) -> str:
    return f"{'skip' if skip else 'no skip'}, {'LN' if ln else 'no LN'}, {'MLP' if mlp else 'attention only'}"


def _rank_style(skip: bool, ln: bool, mlp: bool) -> dict:
    return dict(color=RESIDUAL if skip else PLAIN, linestyle="-" if ln else "--",
                marker="o" if mlp else "s", ms=3.5)


def plot_rank_curves(curves: Mapping[tuple[bool, bool, bool], object], ax: Axes | None = None,
                     highlight: tuple[bool, bool, bool] | None = None, floor: float = 1e-8) -> Axes:
    """Token residual ratio by layer (log scale) for each (skip, LN, MLP) variant's ``RankCurves``.

    Values below ``floor`` (float32 round-off: the tokens are identical) are drawn at the floor.
    ``highlight`` draws one variant bold and greys out the rest (the scrubber's frames).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    for key, c in curves.items():
        y = np.maximum(c.mean, floor)
        style = _rank_style(*key)
        if highlight is not None and key != highlight:
            style.update(color="#bbbbbb", alpha=0.8)
        lw = 2.6 if key == highlight else 1.5
        ax.plot(np.arange(len(y)), y, lw=lw, label=rank_label(*key), zorder=3 if key == highlight else 2, **style)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 2)
    ax.axhline(floor, color="#999", lw=0.8, ls=":")
    finish_axes(ax, "layer (blocks applied)",
                "token residual ratio\n" + r"$\|X - \mathbf{1}\bar{x}^\top\|_F / \|X\|_F$", legend=False)
    # below the axes, outside the data, at a readable size
    ax.legend(fontsize=9, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    return ax


def rank_scrubber(curves: Mapping[tuple[bool, bool, bool], object]):
    """Kernel-free explorer: one frame per (skip, LN, MLP) variant, that curve highlighted."""
    keys = list(curves)
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=80)        # every frame is embedded as a PNG: keep them small
    fig.subplots_adjust(left=0.22, right=0.97, bottom=0.15)   # room for the two-line y label (it was clipped)

    def draw(i):
        ax.clear()
        plot_rank_curves(curves, ax=ax, highlight=keys[i])
        ax.get_legend().remove()                            # the title names the highlighted curve; the rest are grey
        ax.set_title(rank_label(*keys[i]), fontsize=11)

    draw(0)
    return scrubber(fig, draw, len(keys), interval_ms=900)


def _reference_lines(ax: Axes, chance: float | None, position_only: float | None, floor: float | None) -> None:
    if chance is not None:
        ax.axhline(chance, color="#555", lw=0.9, ls=":", label=r"chance, $\ln 16$")
    if floor is not None:
        ax.axhline(floor, color=PLAIN, lw=0.9, ls=(0, (5, 2, 1, 2)), alpha=0.8,
                   label="best with identical tokens (collapsed stream)")
    if position_only is not None:
        ax.axhline(position_only, color="#999", lw=0.9, ls="-.", label="position-only predictor")


def plot_loglog_rank(curves: Mapping[tuple[bool, bool, bool], object], floor: float, ax: Axes | None = None) -> Axes:
    """``log(-log r)`` against the layer for float64 ``RankCurves`` (every seed; points while ``r > floor``), with a
    guide of slope ``log 3`` (Dong et al.'s cubic rate) and one of an exponential decay (``r = a^L``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 3.6))
    for key, c in curves.items():
        style = _rank_style(*key)
        for j, row in enumerate(c.ratios):
            L = np.arange(len(row))
            keep = (row > floor) & (row < 1) & (L >= 1)
            ax.plot(L[keep], np.log(-np.log(row[keep])), lw=1.2, alpha=0.8, label=rank_label(*key) if j == 0 else None,
                    **style)
    x = np.arange(1, 5)
    y0 = min(np.log(-np.log(c.ratios[:, 1])).min() for c in curves.values())
    ax.plot(x, y0 + np.log(3) * (x - 1), color="#333", lw=1, ls=":", label=r"slope $\log 3$ (cubic rate)")
    ax.plot(x, y0 + np.log(x), color="#999", lw=1, ls="--", label=r"exponential decay, $r = a^L$")
    finish_axes(ax, "layer (blocks applied)", r"$\log(-\log r)$", legend=False)
    ax.legend(fontsize=9, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))     # outside the data
    return ax


def plot_sort_runs(runs: Mapping[str, object], ax: Axes | None = None, chance: float | None = None,
                   position_only: float | None = None, metric: str = "loss",
                   colors: Mapping[str, str] | None = None, styles: Mapping[str, str] | None = None,
                   floor: float | None = None) -> Axes:
    """Per-step batch loss (log scale) or accuracy of each sorting :class:`~skipnet.history.Run`, with chance,
    position-only and (``floor``) token-uniform lines."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    colors = colors or VARIANT_COLOR
    styles = styles or VARIANT_STYLE
    for label, run in runs.items():
        ys = getattr(run.history, metric)
        ax.plot(np.arange(1, len(ys) + 1), ys, lw=1.5, label=diverged_label(label, run.history),
                color=colors.get(label), linestyle=styles.get(label, "-"))
    if metric == "loss":
        ax.set_yscale("log")
        _reference_lines(ax, chance, position_only, floor)
    finish_axes(ax, "training step", "training loss (batch)" if metric == "loss" else "token accuracy (batch)")
    return ax


def plot_stored_curves(rows: Sequence[dict], ax: Axes | None = None, colors: Mapping[str, str] | None = None,
                       chance: float | None = None, position_only: float | None = None) -> Axes:
    """Stored loss curves (``loss_curve`` every ``curve_every`` steps), one line per row, labelled by ``row["name"]``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for r in rows:
        y = r["loss_curve"]
        ax.plot(1 + r["curve_every"] * np.arange(len(y)), y, lw=1.5, label=r["name"],
                color=(colors or {}).get(r["name"]))
    ax.set_yscale("log")
    _reference_lines(ax, chance, position_only, None)
    finish_axes(ax, "training step", "training loss (batch)")
    return ax


def plot_depth_sweep(rows: Sequence[dict], ax: Axes | None = None, chance: float | None = None,
                     position_only: float | None = None, floor: float | None = None) -> Axes:
    """Final loss against depth, one line (mean over seeds) and dots (each seed) per variant."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 3.6))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for j, label in enumerate(labels):
        sub = [r for r in rows if r["label"] == label]
        depths = sorted({r["n_blocks"] for r in sub})
        loss = lambda r: r["train_loss"] if r["train_loss"] is not None else (chance or np.nan)
        mean = [np.mean([loss(r) for r in sub if r["n_blocks"] == d]) for d in depths]
        kw = dict(color=VARIANT_COLOR.get(label), linestyle=VARIANT_STYLE.get(label, "-"))
        ax.plot(depths, mean, lw=1.8, marker="o", label=label, **kw)
        off = (j - 1) * 0.12
        ax.scatter([r["n_blocks"] + off for r in sub], [loss(r) for r in sub], s=12, alpha=0.5, color=kw["color"])
    _reference_lines(ax, chance, position_only, floor)
    finish_axes(ax, "depth (blocks)", "final loss", log="y")
    return ax


def plot_grad_profiles(profiles: Mapping[str, object], ax: Axes | None = None) -> Axes:
    """Per-block gradient norm of the feed-forward output weight at init, one line per ``GradProfile``.

    Keys name the profiles; a key containing "post" is dashed, "pre" solid.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.4, 3.4))
    for label, p in profiles.items():
        ls = "--" if "post" in label else "-"
        x = np.arange(1, len(p.mean) + 1)
        ax.plot(x, p.mean, marker="s" if "standard" in label else "o", ms=4, lw=1.6, linestyle=ls, label=label,
                color=STANDARD_INIT if "standard" in label else RESIDUAL)
    ax.set_ylim(bottom=0)
    finish_axes(ax, "block (1 = next to the input)", r"$\|\partial L/\partial W_{\mathrm{fc2}}\|$ at init",
                legend=False)
    ax.legend(frameon=False, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def plot_depth_laws(rows: Sequence[dict], axes=None):
    """Two log-log panels against the total depth L, at init (geometric mean over seeds): the gradient norm of the
    last block's fc2 weight, and the per-token norm of the final stream; one line per (placement, init)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for (placement, init) in dict.fromkeys((r["placement"], r["init"]) for r in rows):
        sub = [r for r in rows if r["placement"] == placement and r["init"] == init]
        Ls = sorted({r["n_blocks"] for r in sub})
        kw = dict(color=RESIDUAL if init == "depth" else STANDARD_INIT, linestyle=NORM_STYLE[placement],
                  marker="o" if init == "depth" else "s", ms=5, label=f"{placement}-LN, {init} init",
                  mfc="white" if placement == "post" else None)    # open markers: post-LN (its lines may coincide)
        for ax, key in zip(axes, ("last_fc2_grad", "stream_norm")):
            ax.plot(Ls, [np.exp(np.mean([np.log(r[key]) for r in sub if r["n_blocks"] == L])) for L in Ls], **kw)
    Ls = np.array(sorted({r["n_blocks"] for r in rows}), dtype=float)
    for ax, key, power, text in ((axes[0], "last_fc2_grad", -0.5, r"$\propto 1/\sqrt{L}$"),
                                 (axes[1], "stream_norm", 0.5, r"$\propto \sqrt{L}$")):
        ref = np.exp(np.mean([np.log(r[key]) for r in rows if r["n_blocks"] == Ls[0]]))
        ax.plot(Ls, ref * (Ls / Ls[0]) ** power, color="#333", lw=1, ls=":", label=text)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(Ls, [str(int(v)) for v in Ls])
        ax.minorticks_off()
        finish_axes(ax, "total depth L (blocks)", legend=False)
    axes[0].set_ylabel("last block's\n" + r"$\|\partial L/\partial W_{\mathrm{fc2}}\|$ at init")
    axes[1].set_ylabel(r"$\|x_L\|$ per token at init")
    handles, labels = axes[0].get_legend_handles_labels()
    h1, l1 = axes[1].get_legend_handles_labels()
    axes[0].figure.legend(handles + h1[-1:], labels + l1[-1:], fontsize=9, frameon=False, loc="upper center",
                          bbox_to_anchor=(0.5, 0.0), ncol=3, handlelength=3.5)    # long handles show the dashes
    return axes


def plot_path_profile(profile, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Bars: share of the output norm carried by paths of each length; line: how distinct their tokens are."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4))
    if title:
        ax.set_title(title, fontsize=10)
    k = np.arange(profile.n_blocks + 1)
    ax.bar(k, profile.norm, color=RESIDUAL, alpha=0.75, label=r"$\|P_k\| / \|$output$\|$")
    for i, n in enumerate(profile.n_paths):
        ax.text(i, profile.norm[i] * 1.15, f"{n} path{'s' if n > 1 else ''}", ha="center", fontsize=7, color="#333")
    ax.plot(k, profile.ratio, color="#333", marker="o", lw=1.5, label="token residual ratio of $P_k$")
    ax.set_yscale("log")
    ax.set_xticks(k)
    finish_axes(ax, "path length k (attention layers the path passes through)", "value (log scale)", grid="y",
                loc="lower left")
    return ax


def plot_time_gradients(grads: Mapping[str, object], ax: Axes | None = None) -> Axes:
    """``||dL/ds_t||`` against time step t (mean over seeds, log scale), one line per recurrence."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.8, 3.4))
    for label, g in grads.items():
        y = np.exp(np.log(np.maximum(g.norms, 1e-38)).mean(axis=0))
        ax.plot(np.arange(1, len(y) + 1), y, lw=1.8, label=label, color=CELL_COLOR.get(label))
    finish_axes(ax, "time step t (the answer is the token at t = 1)", r"$\|\partial L / \partial s_t\|$ at init",
                log="y")
    return ax


def draw_residual_stream(ax: Axes | None = None, blocks: int = 2) -> Axes:
    """The residual stream of a pre-LN Transformer: a vertical running sum that every sublayer reads
    (through a LayerNorm) and writes back into with a (+)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 5.4))
    ax.set_xlim(0, 10)
    n = 2 * blocks
    ax.set_ylim(-0.6, 2.2 * n + 1.6)
    ax.axis("off")
    x0 = 3.0
    ax.plot([x0, x0], [0.0, 2.2 * n + 0.9], color=RESIDUAL, lw=3.0, zorder=1)
    ax.text(x0, -0.4, "embeddings (token + position)", ha="center", va="center", fontsize=9)
    ax.text(x0, 2.2 * n + 1.25, "LN \u2192 head \u2192 logits", ha="center", va="center", fontsize=9)
    box = dict(boxstyle="round,pad=0.35", fc="#e8eef7", ec="#3b5b8c", lw=1.3)
    for i in range(n):
        y_read, y_write = 2.2 * i + 0.6, 2.2 * i + 1.7
        name = "attention" if i % 2 == 0 else "MLP"
        ax.text(6.6, (y_read + y_write) / 2, f"LN \u2192 {name}", ha="center", va="center", fontsize=10, bbox=box)
        ax.add_patch(FancyArrowPatch((x0 + 0.1, y_read), (5.3, (y_read + y_write) / 2 - 0.25), arrowstyle="-|>",
                                     mutation_scale=12, color="#3b5b8c", lw=1.2, connectionstyle="arc3,rad=-0.2"))
        ax.add_patch(FancyArrowPatch((5.3, (y_read + y_write) / 2 + 0.25), (x0 + 0.25, y_write), arrowstyle="-|>",
                                     mutation_scale=12, color="#3b5b8c", lw=1.2, connectionstyle="arc3,rad=-0.2"))
        ax.add_patch(plt.Circle((x0, y_write), 0.22, fc="white", ec="#333", lw=1.2, zorder=3))
        ax.text(x0, y_write, "+", ha="center", va="center", fontsize=11, zorder=4)
        ax.text(x0 - 0.4, y_read, "read", ha="right", va="center", fontsize=8, color="#3b5b8c")
        ax.text(x0 - 0.4, y_write, "write", ha="right", va="center", fontsize=8, color="#3b5b8c")
    ax.text(0.2, 2.2 * n / 2, "residual\nstream\n" + r"$x$", ha="left", va="center", fontsize=10, color=RESIDUAL)
    return ax


def plot_collapse_at_init(r_at_init: Mapping[str, Mapping[int, Sequence[float]]], ax: Axes | None = None,
                          floor: float = 1e-8) -> Axes:
    """Token residual ratio after the last block AT INITIALIZATION against depth, one line (geometric mean over
    seeds) and dots (each seed) per variant: ``{variant: {n_blocks: [r per seed]}}`` (from ``collapse_at_init``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 3.6))
    for label, by_L in r_at_init.items():
        Ls = sorted(by_L)
        kw = dict(color=VARIANT_COLOR.get(label), linestyle=VARIANT_STYLE.get(label, "-"))
        gm = [float(np.exp(np.mean(np.log(np.maximum(by_L[L], floor))))) for L in Ls]
        marker = VARIANT_MARKER.get(label, "o")        # distinct markers: the two skip variants nearly coincide
        ax.plot(Ls, gm, lw=1.8, marker=marker, ms=6, label=label,
                mfc="white" if label == "post-LN" else kw["color"], **kw)
        for L in Ls:
            ax.scatter([L] * len(by_L[L]), np.maximum(by_L[L], floor), s=12, alpha=0.5, color=kw["color"])
    # the legend above the axes, outside the data, with handles long enough to show the dashes
    finish_axes(ax, "depth (blocks)", "token residual ratio r at init", log="y", loc="lower left",
                bbox_to_anchor=(0.0, 1.0), ncol=3, handlelength=3.5, fontsize=9)
    return ax
