"""Figures and tables of the chapter *The identity mapping*. Plotting never trains.

Inputs are the experiments' results (a :class:`~skipnet.train.Run` of an identity fit,
:class:`~skipnet.probes.branches.BranchStats`) or the rows stored by
``scripts/precompute_identity.py`` (plain dicts), so a figure can be drawn from either.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.plotting.core import PLAIN, RESIDUAL

__all__ = ["plot_identity_curves", "plot_identity_depth", "plot_branches", "plot_variants", "plot_loss_runs",
           "plot_zero_gamma", "variants_table_md", "init_table_md", "INIT_COLORS"]

# every network here is residual: green for the identity-preserving inits, other hues for the rest (orange is plain)
INIT_COLORS = {"standard": "#555555", "1/sqrt(L)": "#7570b3", "rezero": RESIDUAL, "fixup": "#e7298a",
               "zero_gamma": RESIDUAL}


def _get(obj, name):
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


def _fit(f) -> Mapping:
    """An identity fit as a row: a stored one, or the :class:`~skipnet.train.Run` of ``fit_identity``."""
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
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("relative error on test digits")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
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
    ax.set_yscale("log")
    ax.set_xlabel("depth (blocks of two layers)")
    ax.set_ylabel("relative error after training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return ax


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
    ax.set_xlabel("test error on the digits, % (median and range over seeds)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
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
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (batch)" + (f", mean of {smooth} steps" if smooth > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
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
    ax.set_yscale("log")
    ax.set_ylabel("final training loss (full set)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return ax


def _pct(v) -> str:
    return "fail" if v is None else f"{v:.2f}"


def variants_table_md(summary: Mapping[str, Mapping], variants: Mapping[str, object], keys: Sequence[str]) -> str:
    """A markdown table: the paper's CIFAR-10 test error (ResNet-110) beside ours on the digits
    (median test error and training loss over seeds, failures / seeds)."""
    lines = ["| variant | paper: CIFAR-10 test error %, ResNet-110 | ours: test error %, median [range] "
             "| ours: training loss | ours: fails |",
             "|---|---|---|---|---|"]
    for k in keys:
        if k not in summary:
            continue
        v, s = variants[k], summary[k]
        lo, hi = s["test_err_range"]
        paper = _pct(_get(v, "paper_110")) if _get(v, "group") != "plain" else "-"
        note = _get(v, "paper_note")
        if note:
            paper += f" ({note})"
        lines.append(f"| {_get(v, 'label')} | {paper} | {100 * s['test_err']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] "
                     f"| {'-' if s['train_loss'] is None else format(s['train_loss'], '.3g')} | {s['fails']} / {s['n']} |")
    return "\n".join(lines)


def init_table_md(rows: Sequence[Mapping], labels: Mapping[str, str], good_loss: float = 1.0) -> str:
    """A markdown table of the branch-initialization sweep: per initialization (``labels``: key -> label),
    runs that diverged, runs that reached a training loss below ``good_loss``, and medians of the finished runs."""
    lines = [f"| branch initialization | diverged / seeds | training loss < {good_loss:g} / seeds "
             "| final training loss, median of the finished | test error %, median of the finished |",
             "|---|---|---|---|---|"]
    for key, label in labels.items():
        sub = [r for r in rows if r["init"] == key]
        done = [r for r in sub if r["status"] == "finished"]
        good = sum(r["train_loss"] < good_loss for r in done)
        loss = f"{np.median([r['train_loss'] for r in done]):.3g}" if done else "-"
        terr = f"{100 * np.median([r['test_err'] for r in done]):.1f}" if done else "-"
        lines.append(f"| {label} | {len(sub) - len(done)} / {len(sub)} | {good} / {len(sub)} | {loss} | {terr} |")
    return "\n".join(lines)
