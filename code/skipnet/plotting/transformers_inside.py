"""Figures of "Inside the trained stream" and of the recall race, chapter *Residual connections in Transformers (and
the RNN question)*. ``plot_x(result, ax=None)``; nothing here trains."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.plotting.core import PLAIN, RESIDUAL, finish_axes

__all__ = ["plot_logit_lens", "plot_dla", "plot_head_maps", "plot_recall_race", "RACE_STYLE"]

GATED = "#7570b3"
LINEAR = "#1f78b4"


def plot_logit_lens(readouts: Mapping[str, object], ax: Axes | None = None, chance: float | None = None,
                    position_only: float | None = None) -> Axes:
    """Loss of the stream read after every write (logit lens), one line per :class:`StreamReadout`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.2, 3.4))
    for label, r in readouts.items():
        ax.plot(np.arange(len(r.names)), r.lens_loss, marker="o", ms=3.5, lw=1.6, color=RESIDUAL,
                linestyle="--" if "post" in label else "-", label=label)
    names = next(iter(readouts.values())).names
    ax.set_xticks(np.arange(len(names)), names, rotation=60, fontsize=7)
    if chance is not None:
        ax.axhline(chance, color="#555", lw=0.9, ls=":", label="chance")
    if position_only is not None:
        ax.axhline(position_only, color="#999", lw=0.9, ls="-.", label="position-only predictor")
    finish_axes(ax, "stream read after this write", "loss of the read-out", log="y")
    return ax


def plot_dla(readout, ax: Axes | None = None) -> Axes:
    """Bars: each write's direct contribution to the correct logit minus the mean logit (pre-LN)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.2, 3.0))
    colors = ["#999" if n == "embed" else ("#3b5b8c" if n.startswith("attn") else RESIDUAL) for n in readout.names]
    ax.bar(np.arange(len(readout.names)), readout.dla, color=colors)
    ax.axhline(0, color="#333", lw=0.8)
    ax.set_xticks(np.arange(len(readout.names)), readout.names, rotation=60, fontsize=7)
    finish_axes(ax, None, "correct logit minus\nmean logit (direct)", grid="y", legend=False)
    return ax


def plot_head_maps(readout, fig=None):
    """A grid of mean attention maps, one per (block, head): rows = query position, columns = key rank."""
    n_blocks, heads = readout.maps.shape[:2]
    fig = fig or plt.figure(figsize=(1.5 * heads + 0.5, 1.45 * n_blocks + 0.5), layout="constrained")
    axes = fig.subplots(n_blocks, heads, squeeze=False)
    vmax = float(readout.maps.max())
    for b in range(n_blocks):
        for h in range(heads):
            ax = axes[b, h]
            ax.imshow(readout.maps[b, h], cmap="Greens", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"block {b + 1}, head {h + 1}: {readout.target_mass[b, h]:.2f}", fontsize=6.5)
    fig.supxlabel("key, by its rank in the input (smallest left)", fontsize=8)
    fig.supylabel("query: output position", fontsize=8)
    return fig


RACE_STYLE = {
    "tanh RNN": dict(color=PLAIN, linestyle="-", marker="o"),
    "tanh RNN, width 128": dict(color=PLAIN, linestyle="--", marker="s"),
    "LSTM, no forget gate": dict(color=RESIDUAL, linestyle="-", marker="o"),
    "LSTM (forget gate)": dict(color=GATED, linestyle="-", marker="o"),
    "linear attention": dict(color=LINEAR, linestyle="-", marker="D"),
    "linear attention, gated decay": dict(color=GATED, linestyle="--", marker="D"),
    "linear attention, decay 0.9": dict(color="#999", linestyle=":", marker="D"),
}


def plot_recall_race(best: Sequence[dict], budget: int, ax: Axes | None = None) -> Axes:
    """Steps to solve recall against T (median over seeds at each net's best lr). ``best``: rows with ``label``,
    ``seq_len``, ``steps`` (list per seed, None = not solved). Unsolved seeds are drawn as crosses above the budget."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    for label in dict.fromkeys(r["label"] for r in best):
        sub = sorted((r for r in best if r["label"] == label), key=lambda r: r["seq_len"])
        style = RACE_STYLE.get(label, {})
        xs, ys = [], []
        for r in sub:
            solved = [s for s in r["steps"] if s is not None]
            if len(solved) * 2 > len(r["steps"]):
                xs.append(r["seq_len"])
                ys.append(float(np.median([s if s is not None else np.inf for s in r["steps"]])))
            n_fail = len(r["steps"]) - len(solved)
            if n_fail:
                ax.scatter([r["seq_len"]] * n_fail, 1.35 * budget * (1 + 0.06 * np.arange(n_fail)), marker="x", s=22,
                           color=style.get("color"))
        ax.plot(xs, ys, lw=1.6, ms=4.5, label=label, **style)
    ax.axhline(budget, color="#555", lw=0.9, ls=":", label=f"budget ({budget} steps)")
    Ts = sorted({r["seq_len"] for r in best})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(Ts, [str(t) for t in Ts])
    ax.minorticks_off()
    finish_axes(ax, "sequence length T (steps the first token must survive)",
                "steps to solve (median over seeds)\ncrosses: seeds not solved", legend=False)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax
