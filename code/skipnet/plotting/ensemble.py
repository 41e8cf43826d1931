"""Figures of the chapter *An ensemble of relatively shallow paths*. ``plot_x(result, ax=None) -> Axes``;
nothing here trains."""
from __future__ import annotations

import math

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch
from matplotlib.ticker import MaxNLocator

from skipnet.plotting.core import PLAIN, RESIDUAL, finish_axes

__all__ = ["style", "draw_unraveled", "plot_path_counts", "plot_path_shares", "plot_single_deletions", "plot_curves_k",
           "plot_path_study", "plot_gap_bars", "plot_gap_vs_loss", "plot_probes", "plot_ratios", "CHANCE"]

CHANCE = 0.1
STOCHASTIC = "#7570b3"
LIGHT_RESIDUAL = "#66c2a5"


def style(label: str) -> dict:
    """Colour and line style of a net: green residual, orange plain, purple stochastic depth; residual-20 light
    green and dashed, depth 8 dotted."""
    if label.startswith("plain"):
        kw = {"color": PLAIN}
    elif "drop" in label:
        kw = {"color": STOCHASTIC}
    else:
        kw = {"color": RESIDUAL}
    if label.startswith("residual-20"):
        kw.update(color=LIGHT_RESIDUAL, ls="--")
    if label.endswith("-8"):
        kw["ls"] = ":"
    return kw


def _ax(ax: Axes | None, size=(5, 3.2)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _arrow(ax, p, q, color="#444", lw=1.2):
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=9, lw=lw, color=color, zorder=2,
                                 shrinkA=0, shrinkB=0))


def draw_unraveled(n: int = 3, axes: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Veit et al.'s Fig. 1 drawn by code: left, n residual blocks as built; right, the same network
    unraveled into its 2^n paths (green edges: skips; blue boxes: branches f_i), summed at the output."""
    if not 1 <= n <= 4:
        raise ValueError(f"n must be between 1 and 4 to draw every path, got {n}")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 4.6), gridspec_kw={"width_ratios": [1, 2.6]})
    left, right = axes
    box = dict(boxstyle="round,pad=0.3", fc="#e8eef7", ec="#3b5b8c", lw=1.2)
    # -- left: the network as built
    left.set_xlim(0, 4)
    left.set_ylim(-0.6, 2 * n + 1.2)
    left.axis("off")
    left.set_title("as built", fontsize=11)
    y = 2 * n + 0.6
    left.text(1.5, y, r"$y_0$", ha="center", va="center", fontsize=12)
    for i in range(1, n + 1):
        top, plus = y - 0.3, y - 1.55
        left.text(1.5, y - 0.8, f"$f_{i}$", ha="center", va="center", fontsize=11, bbox=box, zorder=3)
        _arrow(left, (1.5, top), (1.5, y - 0.55))
        _arrow(left, (1.5, y - 1.05), (1.5, plus + 0.17))
        left.text(1.5, plus, "+", ha="center", va="center", fontsize=10, zorder=4,
                  bbox=dict(boxstyle="circle,pad=0.05", fc="white", ec="#333", lw=1))
        left.plot([1.6, 2.9, 2.9], [top + 0.05, top + 0.05, plus], color=RESIDUAL, lw=1.8, zorder=1)
        _arrow(left, (2.9, plus), (1.72, plus), color=RESIDUAL)
        _arrow(left, (1.5, plus - 0.17), (1.5, y - 1.72))
        y -= 2
        left.text(1.5, y, f"$y_{i}$", ha="center", va="center", fontsize=12)
    left.text(3.1, n + 0.7, "skip", color=RESIDUAL, fontsize=9, rotation=90, va="center")
    # -- right: the unraveled view, one column per block, 2^i partial paths after block i
    right.set_xlim(-0.5, n + 1.6)
    right.set_ylim(-0.7, 2 ** n - 0.3)
    right.axis("off")
    right.set_title(f"unraveled: $2^{n}$ = {2 ** n} paths", fontsize=11)
    leaves = 2 ** n
    pos = {(): (0.0, (leaves - 1) / 2)}
    right.text(-0.15, (leaves - 1) / 2, r"$y_0$", ha="right", va="center", fontsize=12)
    for i in range(1, n + 1):
        for prefix in list(p for p in pos if len(p) == i - 1):
            x0, y0 = pos[prefix]
            for bit in (0, 1):
                path = prefix + (bit,)
                # leaves ordered so that each subtree is contiguous
                idx = int("".join(map(str, path)).ljust(n, "0"), 2) if path else 0
                span = 2 ** (n - i)
                y1 = idx + (span - 1) / 2
                pos[path] = (float(i), y1)
                if bit == 0:
                    right.plot([x0, i], [y0, y1], color=RESIDUAL, lw=1.6, zorder=1)
                else:
                    xm, ym = (x0 + i) / 2, (y0 + y1) / 2
                    right.plot([x0, i], [y0, y1], color="#3b5b8c", lw=1.0, zorder=1)
                    right.text(xm, ym, f"$f_{i}$", ha="center", va="center", fontsize=8, bbox=box, zorder=3)
    out = (n + 0.9, (leaves - 1) / 2)
    for path, (x, yv) in pos.items():
        if len(path) == n:
            right.plot([x, out[0] - 0.18], [yv, out[1]], color="#bbbbbb", lw=0.8, zorder=0)
            right.text(x + 0.05, yv + 0.28, f"length {sum(path)}", fontsize=7, color="#555", ha="left")
    right.text(out[0], out[1], "+", ha="center", va="center", fontsize=16,
               bbox=dict(boxstyle="circle,pad=0.15", fc="white", ec="#333"), zorder=3)
    right.text(out[0] + 0.3, out[1], f"$y_{n}$", ha="left", va="center", fontsize=12)
    right.text(-0.4, -0.6, "green: skip;  blue boxes: residual branches", fontsize=8, color="#555")
    return axes


def plot_path_counts(counts: Mapping[int, tuple[Sequence[int], Sequence[int]]],
                     axes: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """One panel per n, ``{n: (enumerated counts, closed-form counts)}``: bars count the paths of each
    length found by enumerating all 2^n of them; dots are C(n, k)."""
    ns = sorted(counts)
    if axes is None:
        _, axes = plt.subplots(1, len(ns), figsize=(3.6 * len(ns), 3.0), squeeze=False)
        axes = axes[0]
    for ax, n in zip(axes, ns):
        enum, closed = (np.asarray(v, dtype=float) for v in counts[n])
        k = np.arange(n + 1)
        ax.bar(k, enum, color="#bbbbbb", width=0.8, label="enumerated")
        ax.plot(k, closed, "o", color=RESIDUAL, ms=4, label="C(n, k)")
        ax.set_title(f"n = {n}: {int(enum.sum()):,} paths", fontsize=10)
        ax.set_xlabel("path length k")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("number of paths")
    axes[-1].legend(fontsize=8, frameon=False, loc="upper right")
    return axes


def plot_single_deletions(studies: Mapping[str, object], ax: Axes | None = None,
                          downsampling: Mapping[str, Sequence[int]] | None = None) -> Axes:
    """Test accuracy after deleting each single block (x: block index), one line a net; dashed
    lines: the intact nets; grey: chance. Downsampling blocks get a ring."""
    ax = _ax(ax, (6, 3.4))
    for label, s in studies.items():
        kw = style(label)
        x = np.arange(1, len(s.single) + 1)
        ax.plot(x, s.single, marker="o", ms=3.5, lw=1.4, label=f"{label}", **kw)
        ax.axhline(s.intact, color=kw["color"], ls=":", lw=1)
        for i in (downsampling or {}).get(label, ()):
            ax.plot([i + 1], [s.single[i]], "o", ms=9, mfc="none", mec=kw["color"], mew=1.2)
    ax.axhline(CHANCE, color="#888", lw=1, ls="--")
    ax.text(1, CHANCE + 0.02, "chance", color="#666", fontsize=8)
    ax.set_ylim(0, 1.02)
    finish_axes(ax, "deleted block (input -> output)", "test accuracy", loc="lower right")
    return ax


def plot_curves_k(curves: Sequence[object], ax: Axes | None = None, xlabel: str = "blocks deleted at random (k)",
                  highlight_k: int | None = None, relative: bool = False) -> Axes:
    """Mean test accuracy against k for each :class:`~skipnet.experiments.ensemble.Curve` (band: lowest
    to highest seed). ``relative`` puts k / n on the x axis; ``highlight_k`` marks one k on each curve."""
    ax = _ax(ax, (6, 3.4))
    for c in curves:
        kw = style(c.label)
        ks = np.asarray(c.ks, dtype=float)
        x = ks / max(ks.max(), 1) if relative else ks
        ax.plot(x, c.mean, marker="o", ms=3, lw=1.6, label=c.label, **kw)
        if any(lo != hi for lo, hi in zip(c.lo, c.hi)):
            ax.fill_between(x, c.lo, c.hi, color=kw["color"], alpha=0.15, lw=0)
        if highlight_k is not None and highlight_k in c.ks:
            j = c.ks.index(highlight_k)
            ax.plot([x[j]], [c.mean[j]], "o", ms=10, color=kw["color"], mfc="white", mew=2, zorder=5)
            ax.annotate(f"{c.mean[j]:.2f}", (x[j], c.mean[j]), textcoords="offset points", xytext=(6, 6),
                        fontsize=8, color=kw["color"])
    ax.axhline(CHANCE, color="#888", lw=1, ls="--")
    ax.set_ylim(0, 1.02)
    finish_axes(ax, xlabel if not relative else "share of blocks deleted (k / n)", "test accuracy")
    return ax


def plot_path_shares(n: int, ax: Axes, ks=None, counts=None) -> Axes:
    """(a) of Veit et al. Fig. 6: the share of the 2^n paths of each length k, Binomial(n, 1/2)."""
    ks = np.arange(n + 1) if ks is None else np.asarray(ks)
    counts = np.array([math.comb(n, int(k)) for k in ks], dtype=float) if counts is None else counts
    ax.bar(ks, counts / counts.sum(), color="#999", width=0.8)
    ax.axvline(n / 2, color="#333", ls="--", lw=1)
    ax.set_xlabel("path length k (branches used)")
    ax.set_ylabel("share of all paths")
    ax.set_title(f"(a) {2 ** n:.3g} paths: Binomial({n}, 1/2)", fontsize=10)
    return ax


def plot_path_study(study, axes: Sequence[Axes] | None = None, label: str = "") -> Sequence[Axes]:
    """Veit et al. Fig. 6 for one :class:`~skipnet.experiments.ensemble.PathStudy` (or its dict):
    (a) how many paths have each length, (b) gradient magnitude through one path of that length,
    (c) the total gradient each length carries (a x b), with its mean against n / 2."""
    get = (lambda k: study[k]) if isinstance(study, Mapping) else (lambda k: getattr(study, k))
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(10.5, 3.3), layout="constrained")
    n, ks = get("n"), np.asarray(get("ks"))
    a, b, c = axes
    plot_path_shares(n, a, ks=ks, counts=np.asarray(get("counts"), dtype=float))
    mag = np.asarray(get("magnitude"), dtype=float)
    spread = np.asarray(get("magnitude_spread"), dtype=float)
    ok = mag > 0
    b.semilogy(ks[ok], mag[ok], "o-", color=RESIDUAL, ms=3.5, lw=1.4)
    lo, hi = np.maximum(spread[:, 0], 1e-300), np.maximum(spread[:, 1], 1e-300)
    b.fill_between(ks[ok], lo[ok], hi[ok], color=RESIDUAL, alpha=0.15, lw=0)
    b.set_xlabel("path length k")
    b.set_ylabel("gradient norm at the input")
    b.set_title("(b) gradient through one path", fontsize=10)
    w = np.asarray(get("weights"), dtype=float)
    c.bar(ks, w, color=RESIDUAL, width=0.8)
    c.axvline(get("mean_length"), color="#0b4f3c", lw=2.2, zorder=3,
              label=f"gradient-weighted mean {get('mean_length'):.1f}")
    c.axvline(n / 2, color="#333", ls="--", lw=1.2, zorder=3, label=f"mean of all paths n/2 = {n / 2:g}")
    c.set_xlabel("path length k")
    c.set_ylabel("share of the total gradient")
    c.set_title("(c) total gradient by length = (a) x (b)", fontsize=10)
    c.legend(fontsize=8, framealpha=0.9, loc="upper right")
    for ax in axes:
        ax.grid(alpha=0.3)
    if label:
        a.figure.suptitle(label, fontsize=11)
    return axes


def plot_gap_bars(rows: Sequence[dict], ax: Axes | None = None, key: str = "loss_gap") -> Axes:
    """The generalization gap at the end of training, plain vs residual at each depth. ``rows``: dicts
    with ``label`` ("plain-20"...), ``depth``, ``residual``, ``mean``, ``lo``, ``hi`` (of ``key``) and
    ``train_loss`` (annotated above each bar)."""
    ax = _ax(ax, (5.5, 3.4))
    depths = sorted({r["depth"] for r in rows})
    for r in rows:
        x = depths.index(r["depth"]) + (0.2 if r["residual"] else -0.2)
        color = RESIDUAL if r["residual"] else PLAIN
        ax.bar(x, r["mean"], width=0.38, color=color, alpha=0.85,
               label=("residual" if r["residual"] else "plain") if r["depth"] == depths[0] else None)
        ax.plot([x, x], [r["lo"], r["hi"]], color="#333", lw=1.2)
        ax.annotate(f"train loss\n{r['train_loss']:.2g}", (x, max(r["hi"], r["mean"])), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=7, color="#444")
    ax.set_xticks(range(len(depths)), [f"depth {d}" for d in depths])
    finish_axes(ax, None, "test loss - train loss" if key == "loss_gap" else "train acc - test acc", grid="y",
                loc="upper left")
    ax.margins(y=0.25)
    return ax


def plot_gap_vs_loss(series: Mapping[str, Mapping[float, dict | None]], ax: Axes | None = None) -> Axes:
    """Gap (test minus train loss) at equal training loss: ``{label: {level: {"mean", "lo", "hi"} or None}}``
    (the ``at_loss`` part of :func:`~skipnet.experiments.ensemble.gap_summary`, over ``loss_gap``); a level
    that not every seed reached is left out. Band: lowest to highest seed."""
    ax = _ax(ax, (5.5, 3.4))
    for label, by_level in series.items():
        pts = sorted((lv, v) for lv, v in by_level.items() if v is not None)
        if not pts:
            continue
        x = np.array([lv for lv, _ in pts])
        mean, lo, hi = (np.array([v[key] for _, v in pts]) for key in ("mean", "lo", "hi"))
        kw = style(label)
        ax.plot(x, mean, marker="o", ms=3.5, lw=1.6, label=label, **kw)
        ax.fill_between(x, lo, hi, color=kw["color"], alpha=0.1, lw=0)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_ylim(0, None)
    finish_axes(ax, "training loss reached (training proceeds to the right)", "test loss - train loss")
    return ax


def plot_probes(probes: Mapping[str, Sequence[float]], ax: Axes | None = None) -> Axes:
    """Linear-probe test accuracy of the pooled stream after the stem and after each block; x is the
    position as a share of the net's blocks so that nets of different depth line up."""
    ax = _ax(ax, (5.5, 3.4))
    for label, acc in probes.items():
        n = len(acc) - 1
        ax.plot(np.arange(n + 1) / n, acc, marker="o", ms=3, lw=1.5, label=label, **style(label))
    ax.axhline(CHANCE, color="#888", lw=1, ls="--")
    ax.set_ylim(0, 1.02)
    finish_axes(ax, "position in the net (0: after the stem, 1: after the last block)", "linear-probe test accuracy",
                loc="lower right")
    return ax


def plot_ratios(ratios: Mapping[str, Sequence[float]], ax: Axes | None = None) -> Axes:
    """||branch|| / ||stream|| for each block of each residual net (1: the branch is as large as the stream)."""
    ax = _ax(ax, (5.5, 3.4))
    for label, r in ratios.items():
        n = len(r)
        ax.plot((np.arange(n) + 1) / n, r, marker="o", ms=3, lw=1.5, label=label, **style(label))
    ax.axhline(1.0, color="#888", lw=1, ls="--")
    ax.set_ylim(0, None)
    finish_axes(ax, "block position (share of the net's blocks)", "||branch|| / ||shortcut||")
    return ax
