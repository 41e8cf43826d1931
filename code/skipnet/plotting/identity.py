"""Figures and tables of the chapter *The identity mapping*. Plotting never trains.

Inputs are the experiments' results (a :class:`~skipnet.train.Run` of an identity fit,
:class:`~skipnet.probes.branches.BranchStats`) or the rows stored by
``scripts/precompute_identity.py`` (plain dicts), so a figure can be drawn from either.

Longer than the package's usual 300 lines on purpose: it holds every figure and table of one chapter
(about fifteen), each a short function over stored rows; splitting it would scatter one chapter.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from skipnet.plotting.core import PLAIN, RESIDUAL

__all__ = ["plot_identity_curves", "plot_identity_depth", "plot_branches", "plot_variants", "plot_loss_runs",
           "plot_zero_gamma", "variants_table_md", "init_table_md", "INIT_COLORS", "best_lr_errors",
           "plot_fit_fair", "fit_fair_table_md", "plot_branch_depths", "plot_decode", "decode_table_md",
           "placement_table_md", "plot_product_norm", "plot_lambda_map", "lambda_boundary", "plot_init_lr",
           "init_lr_table_md", "plot_zero_gamma_long", "rank_of"]

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


def variants_table_md(summary: Mapping[str, Mapping], variants: Mapping[str, object], keys: Sequence[str],
                      baseline: tuple[Mapping[str, float], str] | None = None) -> str:
    """A markdown table: the paper's CIFAR-10 test error (ResNet-110) beside ours on the digits
    (median test error and training loss over seeds, failures / seeds: above the paper's 20 %).
    ``baseline = (paper's baseline error per variant group, our baseline key)`` adds both errors relative to the
    baseline's (the paper's Table 1 rows against its original unit, its Table 2 rows against full pre-activation)."""
    extra = " | paper: x identity | ours: x identity" if baseline is not None else ""
    lines = [f"| variant | paper: CIFAR-10 test error %, ResNet-110 | ours: test error %, median [range]{extra} "
             "| ours: training loss | ours: above 20 % |",
             "|---|---|---|" + ("---|---|" if baseline is not None else "") + "---|---|"]
    for k in keys:
        if k not in summary:
            continue
        v, s = variants[k], summary[k]
        lo, hi = s["test_err_range"]
        paper = _pct(_get(v, "paper_110"))
        note = _get(v, "paper_note")
        if note:
            paper += f" ({note})"
        ratio = ""
        if baseline is not None:
            bases, ours = baseline
            p110, group = _get(v, "paper_110"), _get(v, "group")
            paper_ratio = "1.00" if k == ours else "fail" if p110 is None else f"{p110 / bases[group]:.2f}"
            ratio = f" | {paper_ratio} | {s['test_err'] / summary[ours]['test_err']:.1f}"
        lines.append(f"| {_get(v, 'label')} | {paper} | {100 * s['test_err']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]{ratio} "
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


# -- the reruns without confounds, the decodability study, the lambda map, the lr sweep ---------------------
def rank_of(values: Mapping[str, float]) -> dict[str, int]:
    """Rank of each key by value, 1 = lowest (best error)."""
    order = sorted(values, key=lambda k: values[k])
    return {k: order.index(k) + 1 for k in values}


def _med(v) -> float:
    return float(np.median([math.inf if x is None else x for x in v]))


def best_lr_errors(rows: Sequence[Mapping], lift: bool, residual: bool) -> dict[int, tuple[float, list[float]]]:
    """Per number of blocks: the learning rate with the lowest median final error over seeds (a diverged
    run counts as infinite) and the seeds' errors at it."""
    out = {}
    sub = [r for r in rows if r["lift"] == lift and r["residual"] == residual]
    for n in sorted({r["n_blocks"] for r in sub}):
        by_lr = {}
        for r in sub:
            if r["n_blocks"] == n:
                by_lr.setdefault(r["lr"], []).append(math.inf if r["rel_error"] is None else r["rel_error"])
        lr = min(by_lr, key=lambda k: (_med(by_lr[k]), k))
        out[n] = (lr, by_lr[lr])
    return out


def plot_fit_fair(rows: Sequence[Mapping], axes: Sequence[Axes] | None = None, base_lr: float = 0.05) -> np.ndarray:
    """Final relative error of the identity fit against depth at each stack's best learning rate (solid, dots:
    seeds) and at ``base_lr`` (dotted), on the standard task (left) and the lifted task [x, -x] (right)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.6, 3.4), sharey=True)
    for ax, lift in zip(axes, (False, True)):
        for residual, color, name in ((False, PLAIN, "plain"), (True, RESIDUAL, "residual")):
            best = best_lr_errors(rows, lift, residual)
            depths = sorted(best)
            ax.plot(depths, [_med(best[d][1]) for d in depths], "-o", color=color, lw=2, label=f"{name}, best lr")
            for d in depths:
                vals = [v for v in best[d][1] if math.isfinite(v)]
                ax.scatter([d] * len(vals), vals, s=12, color=color, alpha=0.45, zorder=3)
            base = [_med([r["rel_error"] for r in rows if (r["lift"], r["residual"], r["n_blocks"], r["lr"])
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


def fit_fair_table_md(rows: Sequence[Mapping]) -> str:
    """Best-lr median error per task, stack and depth, with the error relative to the same stack's 1-block error."""
    depths = sorted({r["n_blocks"] for r in rows})
    lines = ["| task | stack | " + " | ".join(f"{d} block{'s' if d > 1 else ''}: error (best lr)" for d in depths)
             + f" | {depths[-1]} blocks / 1 block |", "|---|---|" + "---|" * (len(depths) + 1)]
    for lift in (False, True):
        for residual in (False, True):
            best = best_lr_errors(rows, lift, residual)
            cells = [f"{_med(best[d][1]):.3g} ({best[d][0]:g})" for d in depths]
            ratio = _med(best[depths[-1]][1]) / _med(best[depths[0]][1])
            lines.append(f"| {'[x, -x]' if lift else 'x'} | {'residual' if residual else 'plain'} | "
                         + " | ".join(cells) + f" | {ratio:.3g} |")
    return "\n".join(lines)


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
    ax.set_xlabel("position of the block (first to last)")
    ax.set_ylabel(r"$\|F(x)\| \,/\, \|x\|$, median over digits and seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return ax


DECODE_COLORS = {"residual": RESIDUAL, "plain": PLAIN, "dense": "#7570b3"}
DECODE_NAMES = {"residual": "residual (sum)", "plain": "plain", "dense": "concatenation (DenseNet-like)"}
TABLE_NAMES = {"residual": "sum", "plain": "plain", "dense": "concatenation"}


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
    ax.set_xlabel("what the probe reads from the last stream $x_L$")
    ax.set_ylabel("test $R^2$ of a linear probe")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower left")
    return ax


def decode_table_md(rows: Sequence[Mapping]) -> str:
    """Medians over seeds, read from the last stream: R^2 of x_0, of the pixels, of the worst-kept F_k, and the
    class accuracy of a linear probe (residual = "sum", dense = "concatenation")."""
    lines = ["| blocks | stream | parameters | test error % | $R^2$ $x_0$ | $R^2$ pixels | $R^2$ worst $F_k$ "
             "| class, probe % |", "|---|---|---|---|---|---|---|---|"]
    for n in sorted({r["n_blocks"] for r in rows}):
        for kind in DECODE_NAMES:
            sub = [r for r in rows if r["kind"] == kind and r["n_blocks"] == n]
            if not sub:
                continue
            d = [r["decode"][str(n)] for r in sub]
            lines.append(f"| {n} | {TABLE_NAMES[kind]} | {sub[0]['params']:,} | {100 * np.median([r['test_err'] for r in sub]):.1f} "
                         f"| {np.median([x['x0'] for x in d]):.3f} | {np.median([x['pixels'] for x in d]):.3f} "
                         f"| {np.median([min(x['writes']) for x in d]):.3f} | {100 * np.median([x['class_acc'] for x in d]):.1f} |")
    return "\n".join(lines)


def placement_table_md(arms: Mapping[str, Mapping[str, Mapping]], variants: Mapping[str, object],
                       keys: Sequence[str]) -> str:
    """The placements beside He et al. (2016), Table 2: the paper's ResNet-110 error and rank, then ours (median
    test error %, rank) for each arm (name -> summary keyed by placement)."""
    paper = {k: _get(variants[k], "paper_110") for k in keys}
    lines = ["| placement | paper: CIFAR-10 % (rank) | " + " | ".join(f"ours, {a}: % (rank)" for a in arms) + " |",
             "|---|---|" + "---|" * len(arms)]
    pr = rank_of(paper)
    ranks = {a: rank_of({k: s[k]["test_err"] for k in keys}) for a, s in arms.items()}
    for k in keys:
        cells = [f"{100 * s[k]['test_err']:.1f} ({ranks[a][k]})" for a, s in arms.items()]
        lines.append(f"| {_get(variants[k], 'label')} | {paper[k]:.2f} ({pr[k]}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, frameon=False)
    return np.asarray(axes)


def _ranks(a) -> np.ndarray:
    return np.argsort(np.argsort(np.asarray(a, dtype=float))).astype(float)


def lambda_boundary(rows: Sequence[Mapping], factor: float = 2.0) -> dict:
    """The lambda map read against lambda^L. A cell (lambda, L) fails when its median test error is above ``factor``
    times that of lambda = 1 at the same depth. Returns the medians, the error ratios and the failing cells; on the
    lambda < 1 side the smallest lambda^L that trains (every cell below it fails) and the largest that fails (every
    cell above it trains); and the rank correlations (Spearman) of the error ratio with -log lambda^L, with -lambda
    and with L over the lambda < 1 cells: which of the three the failure follows."""
    med = {}
    for r in rows:
        med.setdefault((r["lam"], r["n_blocks"]), []).append(0.9 if r["test_err"] is None else r["test_err"])
    med = {k: float(np.median(v)) for k, v in med.items()}
    ratio = {k: v / med[(1.0, k[1])] for k, v in med.items()}
    fails = {k for k, v in ratio.items() if v > factor}
    below = [k for k in med if k[0] < 1]
    pw = {k: k[0] ** k[1] for k in below}
    worst_fail = max((pw[k] for k in below if k in fails), default=None)
    best_ok = min((pw[k] for k in below if k not in fails), default=None)
    r = _ranks([ratio[k] for k in below])

    def rho(x):
        return float(np.corrcoef(r, _ranks(x))[0, 1])
    cell = {pw[k]: k for k in below}
    return {"median": med, "ratio": ratio, "fails": fails, "max_failing_pow": worst_fail, "min_training_pow": best_ok,
            "max_failing_cell": cell.get(worst_fail), "min_training_cell": cell.get(best_ok),
            "fails_above_one": sorted(k for k in fails if k[0] > 1),
            "rho": {"lambda^L": rho([-k[1] * math.log(k[0]) for k in below]), "lambda": rho([-k[0] for k in below]),
                    "L": rho([k[1] for k in below])}}


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
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\lambda^L$ (the input's share at the top, He et al. 2016 eq. 7)")
    ax.set_ylabel("test error / identity's at the same L")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, frameon=False)
    return np.asarray(axes)


def _by(rows, *keys):
    out = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def plot_init_lr(rows: Sequence[Mapping], labels: Mapping[str, str], ax: Axes | None = None) -> Axes:
    """Final training loss (median of the finished seeds) against the learning rate, one line per initialization;
    an x at the top marks a learning rate at which every seed diverged."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6))
    groups = _by(rows, "init", "lr")
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
    ax.set_xlabel("learning rate (peak of the cosine schedule)")
    ax.set_ylabel("final training loss, median")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower left")
    return ax


def init_lr_table_md(rows: Sequence[Mapping], labels: Mapping[str, str]) -> str:
    """Per initialization: learning rates tried, runs diverged, runs ending below a loss of 1, best median loss (lr)."""
    lines = ["| branch initialization | learning rates | diverged / runs | training loss < 1 / runs "
             "| best median training loss (lr) |", "|---|---|---|---|---|"]
    groups = _by(rows, "init", "lr")
    for key, label in labels.items():
        sub = [r for r in rows if r["init"] == key]
        lrs = sorted({r["lr"] for r in sub})
        meds = {lr: _med([r["train_loss"] if r["status"] == "finished" else None for r in groups[(key, lr)]])
                for lr in lrs}
        best = min(meds, key=meds.get)
        best_text = f"{meds[best]:.3g} ({best:g})" if math.isfinite(meds[best]) else "- (all diverged)"
        lines.append(f"| {label} | {', '.join(f'{lr:g}' for lr in lrs)} | {sum(r['status'] != 'finished' for r in sub)}"
                     f" / {len(sub)} | {sum(r['status'] == 'finished' and r['train_loss'] < 1 for r in sub)} / {len(sub)} "
                     f"| {best_text} |")
    return "\n".join(lines)


def plot_zero_gamma_long(rows: Sequence[Mapping], ax: Axes | None = None, steps_per_epoch: int = 11) -> Axes:
    """Training loss (full set) every 10 epochs of the 40-epoch runs: median over seeds per depth and init."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 3.4))
    for (depth, init), sub in sorted(_by(rows, "depth", "init").items()):
        steps = [e["step"] for e in sub[0]["evals"]]
        med = np.median(np.array([[e["train_loss"] for e in r["evals"]] for r in sub]), axis=0)
        ax.plot(np.array(steps) / steps_per_epoch, med, "-o" if depth > 20 else "--s", ms=4, lw=1.8,
                color=INIT_COLORS.get(init), alpha=1.0 if depth > 20 else 0.6,
                label=f"residual-{depth}, {'zero-gamma' if init == 'zero_gamma' else 'standard'}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (full set), median")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return ax
