"""Small figures for the closing chapter (``verdict``): each draws the ``series`` of one
:class:`skipnet.experiments.verdict.Verdict`, recomposed from the stored sweeps; nothing is computed here."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.plotting.core import PLAIN, RESIDUAL

__all__ = ["plot_highway", "plot_identity", "plot_overfitting", "plot_noise", "plot_rnn", "plot_messy",
           "PLOTS", "SMALL"]

SMALL = (4.2, 2.7)
DENSE = "#7570b3"


def _legend(ax: Axes, **kw) -> None:
    """A legend at 9 pt, outside the data (to the right of the axes unless placed otherwise)."""
    kw = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), **kw}
    ax.legend(fontsize=9, frameon=False, **kw)


def _ax(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=SMALL)
    ax.grid(alpha=0.3)
    return ax


def plot_highway(v, ax: Axes | None = None) -> Axes:
    """Median steps to the target training loss against depth; an open marker at the budget where a net did
    not reach it in every seed."""
    ax = _ax(ax)
    for kind, color in (("plain", PLAIN), ("residual", RESIDUAL)):
        s = v.series["steps"][kind]
        full = [x for x in s if x["reached"] == x["n"]]
        ax.plot([x["depth"] for x in full], [x["median"] for x in full], "o-", color=color, ms=4, label=kind)
        short = [x for x in s if x["reached"] < x["n"]]
        if short:
            ax.plot([x["depth"] for x in short], [x["budget"] for x in short], "o", mfc="white", color=color, ms=6,
                    label=f"{kind}: not reached in every seed (at the budget)")
    ax.set_yscale("log")
    ax.set_xlabel("weight layers")
    ax.set_ylabel(f"steps to loss {v.numbers['target']:g}")
    _legend(ax)
    return ax


def plot_identity(v, ax: Axes | None = None) -> Axes:
    """Median training loss of residual-20 and residual-56 at the two budgets."""
    ax = _ax(ax)
    x = np.arange(len(v.series["budgets"]))
    ax.bar(x - 0.18, v.series["res20"], 0.36, color=RESIDUAL, alpha=0.45, label="residual-20")
    ax.bar(x + 0.18, v.series["res56"], 0.36, color=RESIDUAL, label="residual-56")
    ax.set_xticks(x, [f"{b} steps" for b in v.series["budgets"]])
    ax.set_yscale("log")
    ax.set_ylabel("training loss (median)")
    _legend(ax)
    return ax


def plot_overfitting(v, ax: Axes | None = None) -> Axes:
    """Generalization gap against final training loss, one point per network (mean of seeds)."""
    ax = _ax(ax)
    for label, d in v.series.items():
        color = RESIDUAL if label.startswith("residual") else PLAIN
        ax.plot(d["train_loss"], d["gap"], "o", color=color)
        below = label.startswith("residual")          # residual labels under their points, plain ones above
        ax.annotate(label, (d["train_loss"], d["gap"]), fontsize=9, xytext=(4, -9 if below else 3),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("final training loss")
    ax.set_ylabel("test - training loss")
    return ax


def plot_noise(v, ax: Axes | None = None) -> Axes:
    """Test accuracy against the number of branches replaced, for each replacement."""
    ax = _ax(ax)
    styles = {"delete": ("black", "deleted"), "other image": ("#e7298a", "another image's output"),
              "noise": (DENSE, "matched noise"), "channel mean": (RESIDUAL, "channel mean")}
    for key, (color, name) in styles.items():
        ax.plot(v.series["ms"], v.series[key], "o-", color=color, ms=3, label=name)
    ax.axhline(v.series["intact"], color="grey", ls=":", lw=1)
    ax.set_xlabel(f"branches replaced ({v.numbers['label']}, block 1 kept)")
    ax.set_ylabel("test accuracy")
    _legend(ax)
    return ax


def plot_rnn(v, ax: Axes | None = None) -> Axes:
    """Longest recall lag solved in every seed, one bar per recurrent net, the first race above and the fair race
    (every cell at the same lags) below; a tick marks the longest lag tried (a bar that reaches its tick solved
    every lag tried). A net that solved no lag has no bar."""
    ax = _ax(ax)
    rows = []
    for key, tried_key, prefix in (("race", "race_tried", "fair race: "), ("longest", "tried", "")):
        longest, tried = v.series[key], v.series[tried_key]
        rows += [(prefix + k, longest[k], tried[k]) for k in sorted(longest, key=lambda k: (longest[k], tried[k]))]
    y = np.arange(len(rows))
    gated = ("tanh", "forget bias", "forget gate)", "GRU", "decay")
    ax.barh(y, [r[1] for r in rows], color=[PLAIN if any(g in r[0] for g in gated) else RESIDUAL for r in rows])
    ax.plot([r[2] for r in rows], y, "|", color="black", ms=12, label="longest lag tried")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("longest lag T solved in every seed")
    _legend(ax, loc="lower right", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_messy(v, ax: Axes | None = None) -> Axes:
    """Linear-probe R^2 of the input and of the worst-kept block write, for the three streams."""
    ax = _ax(ax)
    kinds = (("plain", PLAIN), ("residual", RESIDUAL), ("dense", DENSE))
    x = np.arange(2)
    for i, (kind, color) in enumerate(kinds):
        ax.bar(x + (i - 1) * 0.26, v.series[kind], 0.26, color=color, label="concatenation" if kind == "dense" else kind)
    ax.set_xticks(x, ["input $x_0$", "worst-kept write $F_k$"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test $R^2$ (median)")
    _legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    return ax


PLOTS = {"highway": plot_highway, "identity": plot_identity, "overfitting": plot_overfitting,
         "noise": plot_noise, "rnn": plot_rnn, "messy": plot_messy}
