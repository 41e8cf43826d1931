"""Figures of the chapter *The gradient highway*, in the chapter's order (profiles, Jacobian, chi phase diagram,
identity term, shattering, training race, landscape). ``plot_x(result, ax=None) -> Axes``; nothing here trains."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm

from skipnet.history import History
from skipnet.plotting.core import PLAIN, RESIDUAL, finish_axes, plot_curves

__all__ = ["style", "plot_profiles", "plot_profile_pair", "plot_profile_panels", "PROFILE_PANELS", "plot_jacobian", "plot_band_share",
           "plot_identity", "plot_shattered_gradients", "plot_autocorrelation", "plot_heatmap", "race_figure",
           "plot_landscape", "plot_chi_phase", "plot_chi_slice", "plot_chi_profile"]

LIGHT_RESIDUAL, LIGHT_PLAIN = "#66c2a5", "#fc8d62"
PROFILE_PANELS = {"sigmoid": ("plain sigmoid", "residual sigmoid"), "ReLU (He init)": ("plain ReLU", "residual ReLU"),
                  "ReLU + BatchNorm": ("plain ReLU + BN", "residual ReLU + BN")}


def style(label: str) -> dict:
    """Colour and line style of a variant: orange plain, green residual; dashed sigmoid, dotted unnormalized ReLU."""
    kw = {"color": RESIDUAL if label.startswith("residual") else PLAIN, "lw": 1.8}
    if "sigmoid" in label:
        kw["ls"] = "--"
    if label == "residual ReLU":
        kw.update(color=LIGHT_RESIDUAL, ls=":")
    if label == "plain ReLU":
        kw.update(color=LIGHT_PLAIN, ls=":")
    return kw


def _ax(ax: Axes | None, size=(5, 3.2)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def plot_profiles(profiles: Mapping[str, "object"], ax: Axes | None = None, ylim=None, legend: bool = True) -> Axes:
    """Per-layer weight-gradient norms (log scale) of each :class:`~skipnet.experiments.highway.Profile`,
    input layer on the left. The legend gives each first/last ratio."""
    ax = _ax(ax)
    for label, p in profiles.items():
        kw = style(label)
        ax.plot(np.arange(1, len(p.norms) + 1), np.maximum(p.norms, 1e-300), label=f"{label}: ratio {p.ratio:.2g}", **kw)
    ax.set_yscale("log")
    ax.set_xlabel("layer (input -> output)")
    ax.set_ylabel("gradient norm at init")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=9, frameon=False)
    return ax


def plot_profile_pair(pair: Mapping[str, "object"], ax: Axes | None = None) -> Axes:
    """The gradient-profile lab's figure: the chosen network's profile in colour, its twin with the skip
    toggled in grey (``pair`` from :func:`skipnet.experiments.highway.profile_pair`, chosen first)."""
    ax = _ax(ax, (6.5, 3.6))
    (chosen, p), (twin, q) = list(pair.items())
    plot_profiles({chosen: p}, ax, legend=False)
    ax.plot(np.arange(1, len(q.norms) + 1), np.maximum(q.norms, 1e-300), color="#888", lw=1.2, ls="--")
    ax.lines[0].set_label(f"{chosen}: ratio {p.ratio:.2g}")
    ax.lines[1].set_label(f"{twin} (twin): ratio {q.ratio:.2g}")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"depth {p.n_blocks}: first/last gradient ratio {p.ratio:.2g}", fontsize=10)
    return ax


def plot_profile_panels(profiles: Mapping[str, "object"], axes: Sequence[Axes] | None = None,
                        ylims: Mapping[str, tuple] | None = None) -> Sequence[Axes]:
    """Three panels (sigmoid, ReLU, ReLU + BN), plain vs residual in each, from ``{label: Profile}``; without
    ``axes``, two a row and the third below (the text column holds two side by side)."""
    if axes is None:
        _, grid = plt.subplots(2, 2, figsize=(7, 6), layout="constrained")
        grid[1, 1].remove()
        axes = [grid[0, 0], grid[0, 1], grid[1, 0]]
    for ax, (title, labels) in zip(axes, PROFILE_PANELS.items()):
        ax.clear()
        plot_profiles({k: profiles[k] for k in labels if k in profiles}, ax,
                      ylim=None if ylims is None else ylims.get(title))
        depth = next(iter(profiles.values())).n_blocks
        ax.set_title(f"{title}, depth {depth}", fontsize=10)
    return axes


def plot_jacobian(spectra, ax: Axes | None = None, depth_index: int = -1, floor: float = 1e-20) -> Axes:
    """Sorted singular values of the stack's Jacobian at one depth (first seed), log scale.
    Values below ``floor`` (exact zeros of ReLU stacks included) are drawn at ``floor``."""
    ax = _ax(ax)
    for label, rows in spectra.values.items():
        s = rows[depth_index][0]
        ax.plot(np.arange(1, s.size + 1), np.maximum(s, floor), label=label, **style(label))
    ax.axhspan(0.1, 10, color="#999", alpha=0.12, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("singular value index (largest first)")
    ax.set_ylabel("singular value of $\\partial x_L / \\partial x_0$")
    ax.set_title(f"depth {spectra.n_blocks[depth_index]} (shaded: 0.1 to 10)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, frameon=False)
    return ax


def plot_band_share(spectra, ax: Axes | None = None, low: float = 0.1, high: float = 10.0) -> Axes:
    """Share of singular values within [low, high] against depth, mean and range over seeds."""
    ax = _ax(ax)
    for label in spectra.values:
        w = spectra.within(label, low, high)
        kw = style(label)
        ax.plot(spectra.n_blocks, w.mean(axis=1), marker="o", ms=3.5, label=label, **kw)
        ax.fill_between(spectra.n_blocks, w.min(axis=1), w.max(axis=1), color=kw["color"], alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_xticks(spectra.n_blocks, [str(d) for d in spectra.n_blocks])
    ax.set_ylim(-0.03, 1.03)
    finish_axes(ax, "depth (blocks)", f"share of singular values in [{low:g}, {high:g}]", legend=False)
    return ax


def plot_identity(alignment: Mapping[str, Mapping[str, np.ndarray]], ax: Axes | None = None) -> Axes:
    """Cosine between the gradient at each block's input and the top gradient, mean and range over seeds."""
    ax = _ax(ax, (7.5, 3.4))
    for label, d in alignment.items():
        c = d["cos"]                                                     # (seeds, blocks)
        kw = style(label)
        x = np.arange(c.shape[1])
        ax.plot(x, c.mean(axis=0), label=label, **kw)
        ax.fill_between(x, c.min(axis=0), c.max(axis=0), color=kw["color"], alpha=0.12, lw=0)
    ax.set_ylim(-0.1, 1.02)
    finish_axes(ax, "block (input -> output)", "cosine(dLoss/dx_l, dLoss/dx_L)", loc="center left",
                bbox_to_anchor=(1.01, 0.5))
    return ax


def _shatter_style(label: str) -> dict:
    """Plain orange, residual green; the two controls without BatchNorm purple (zero biases) and pink (random)."""
    kw = style(label.replace(" + BN", "").split(",")[0])
    if "no norm" in label:
        kw.update(color="#7570b3", ls="-")
    elif "random biases" in label:
        kw.update(color="#e7298a", ls="-")
    return kw


def plot_shattered_gradients(sh, ax: Axes | None = None, depth: int = 16) -> Axes:
    """df/dx along the input sweep at one depth (first seed), each curve scaled to unit standard
    deviation and offset vertically so their shapes can be compared."""
    ax = _ax(ax)
    i = sh.n_blocks.index(depth)
    for k, (label, grads) in enumerate(sh.gradients.items()):
        g = grads[i]
        g = (g - g.mean()) / (g.std() or 1.0)
        kw = _shatter_style(label)
        offset = -7.0 * k
        ax.plot(sh.x, g + offset, **{**kw, "lw": 1.2})
        ax.text(sh.x[0], offset + max(2.6, g.max() + 0.5), label, color=kw["color"], fontsize=9, va="bottom")
    ax.set_yticks([])
    ax.set_xlabel("input x")
    ax.set_ylabel("df/dx (standardized, offset)")
    ax.set_title(f"depth {depth}", fontsize=10)
    return ax


def plot_autocorrelation(sh, ax: Axes | None = None) -> Axes:
    """Lag-1 autocorrelation of df/dx against depth: mean and range over seeds."""
    ax = _ax(ax)
    for label, a in sh.autocorr.items():
        kw = _shatter_style(label)
        ax.plot(sh.n_blocks, a.mean(axis=1), marker="o", ms=3.5, label=label, **kw)
        ax.fill_between(sh.n_blocks, a.min(axis=1), a.max(axis=1), color=kw["color"], alpha=0.15, lw=0)
    ax.axhline(0, color="#555", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sh.n_blocks, [str(d) for d in sh.n_blocks])
    ax.set_ylim(-0.3, 1.05)
    finish_axes(ax, "depth (blocks)", "autocorrelation of df/dx (lag 1)")
    return ax


def plot_heatmap(history: History, ax: Axes | None = None, vmin: float | None = None, vmax: float | None = None,
                 title: str = "", colorbar: bool = True):
    """Per-layer gradient norms over training (``History.grad_norms``): step on x, layer on y (input at the
    bottom), log colour scale. Returns the image (for a shared colour bar)."""
    ax = _ax(ax)
    g = np.asarray(history.grad_norms, dtype=np.float64)                 # (records, layers)
    if g.size == 0:
        ax.text(0.5, 0.5, "no gradients recorded yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return None
    g = np.maximum(g, 1e-12)
    steps = np.asarray(history.grad_steps) + 1
    extent = (0.5, steps[-1] + 0.5, 0.5, g.shape[1] + 0.5)
    im = ax.imshow(g.T, origin="lower", aspect="auto", extent=extent, interpolation="nearest",
                   norm=LogNorm(vmin=vmin or g.min(), vmax=vmax or g.max()), cmap="viridis")
    ax.set_xlabel("training step")
    ax.set_ylabel("layer (input at bottom)")
    ax.set_title(title, fontsize=10)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="gradient norm")
    return im


def race_figure(histories: Mapping[str, History], title: str = ""):
    """Loss curves of plain and residual (top) and their step x layer gradient heat maps on one colour scale
    (below, side by side: at most two panels a row, readable at page width)."""
    # a fixed layout (no constrained layout): this figure is redrawn live while the training race runs
    fig = plt.figure(figsize=(10, 7.4))
    grid = fig.add_gridspec(2, 2, left=0.08, right=0.88, bottom=0.08, top=0.95, wspace=0.3, hspace=0.35)
    axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    plot_curves(histories, axes[0], colors={"plain": PLAIN, "residual": RESIDUAL})
    if title:
        axes[0].set_title(title, fontsize=10)
    allg = [np.asarray(h.grad_norms) for h in histories.values() if h.grad_norms]
    vmin = vmax = None
    if allg:
        cat = np.concatenate([a.ravel() for a in allg])
        cat = cat[cat > 0]
        if cat.size:
            vmin, vmax = float(cat.min()), float(cat.max())
    im = None
    for ax, key in zip(axes[1:], ("plain", "residual")):
        if key in histories:
            im = plot_heatmap(histories[key], ax, vmin, vmax, title=f"{key}: gradient norm per layer",
                              colorbar=False) or im
        else:
            ax.set_axis_off()
    if im is not None:
        fig.colorbar(im, cax=fig.add_axes((0.9, 0.08, 0.015, 0.37)), label="gradient norm")
    return fig


def plot_landscape(land, ax: Axes | None = None, levels: np.ndarray | None = None, colorbar: bool = True):
    """Filled contours of log10(loss) over the 2-D slice; the trained weights sit at the centre (x)."""
    ax = _ax(ax, (4.2, 3.6))
    z = np.log10(np.maximum(land.surface, 1e-6))
    if levels is None:
        levels = np.linspace(np.nanmin(z), np.nanmax(z), 15)
    cs = ax.contourf(land.coords, land.coords, z, levels=levels, cmap="viridis", extend="both")
    ax.contour(land.coords, land.coords, z, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
    ax.plot([0], [0], marker="x", color="white", ms=8, mew=2)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_title(f"{land.label}: loss {land.center:.2g} at the centre", fontsize=10)
    ax.set_aspect("equal")
    if colorbar:
        ax.figure.colorbar(cs, ax=ax, label="log10 training loss")
    return cs


# -- the chi phase diagram ------------------------------------------------------------------------------
CHI_CLIP = 12.0                      # decades: the colour scale saturates beyond +- this


def _chi_mean(panel: dict) -> np.ndarray:
    """Mean over seeds of the measured log10 ratio, (depths, gains); NaN where a seed was not finite."""
    m = np.array([[[np.nan if v is None else v for v in seeds] for seeds in row] for row in panel["measured"]])
    with np.errstate(invalid="ignore"):
        return np.nanmean(m, axis=2) if np.isfinite(m).any() else m[..., 0]


def plot_chi_phase(data: dict, axes=None, clip: float = CHI_CLIP):
    """3 x 3 heat maps (rows: activation; columns: plain, residual, branch/sqrt(L)) of the measured
    ``log10 ||dL/dx_0|| / ||dL/dx_L||`` over weight gain (x, log) and depth (y, log), from
    :func:`skipnet.experiments.highway_chi.chi_phase`; dashed contours: the mean-field prediction at the same levels;
    the vertical line: the gain at which a plain stack's chi is 1. Returns the axes grid."""
    acts = list(dict.fromkeys(k.split(", ")[0] for k in data["panels"]))
    variants = list(dict.fromkeys(k.split(", ", 1)[1] for k in data["panels"]))
    if axes is None:
        fig, axes = plt.subplots(len(acts), len(variants), figsize=(12, 9), sharex=True, sharey=True,
                                 layout="constrained")
    axes = np.atleast_2d(axes)
    g, d = np.array(data["gains"]), np.array(data["n_blocks"])
    levels = [-10, -3, -1, 1, 3, 10]
    im = None
    for i, act in enumerate(acts):
        for j, var in enumerate(variants):
            ax, panel = axes[i, j], data["panels"][f"{act}, {var}"]
            z = np.clip(_chi_mean(panel), -clip, clip)
            im = ax.pcolormesh(g, d, z, cmap="RdBu_r", vmin=-clip, vmax=clip, shading="nearest")
            pred = np.clip(np.array(panel["predicted"], dtype=float), -3 * clip, 3 * clip)
            cs = ax.contour(g, d, pred, levels=levels, colors="k", linewidths=0.8, linestyles="--")
            ax.clabel(cs, fmt="%g", fontsize=9)
            ax.axvline(data["critical_gain"][act], color="#333", lw=1.2)
            ax.set_xscale("log")
            ax.set_yscale("log", base=2)
            ax.set_yticks(d[::max(1, len(d) // 5)], [str(int(v)) for v in d[::max(1, len(d) // 5)]])
            ax.set_ylim(d.min(), d.max())
            ax.set_title(f"{act}, {var}", fontsize=11)
            if i == len(acts) - 1:
                ax.set_xlabel("weight gain g")
            if j == 0:
                ax.set_ylabel("depth (blocks)")
    axes[0, 0].figure.colorbar(im, ax=list(axes.ravel()), shrink=0.6,
                               label=f"log10 ||dL/dx_0|| / ||dL/dx_L|| (clipped at +-{clip:g})")
    return axes


def plot_chi_slice(data: dict, depth_index: int, axes=None, ylim: tuple | None = None):
    """One depth of the phase diagram: the log ratio against gain for each variant, one panel an activation;
    markers and bars: mean and range over seeds; lines: the mean-field prediction; vertical: chi = 1."""
    acts = list(dict.fromkeys(k.split(", ")[0] for k in data["panels"]))
    variants = list(dict.fromkeys(k.split(", ", 1)[1] for k in data["panels"]))
    if axes is None:
        _, axes = plt.subplots(1, len(acts), figsize=(12, 3.4), layout="constrained")
    g = np.array(data["gains"])
    colours = {"plain": PLAIN, "residual": RESIDUAL, "branch/sqrt(L)": "#7570b3"}
    for ax, act in zip(axes, acts):
        ax.clear()
        for var in variants:
            panel = data["panels"][f"{act}, {var}"]
            m = np.array([[np.nan if v is None else v for v in seeds] for seeds in panel["measured"][depth_index]])
            c = colours.get(var, "#444")
            with np.errstate(invalid="ignore"):
                ax.errorbar(g, np.nanmean(m, 1), yerr=[np.nanmean(m, 1) - np.nanmin(m, 1),
                            np.nanmax(m, 1) - np.nanmean(m, 1)], fmt="o", ms=3.5, color=c, lw=1, label=f"{var}")
            ax.plot(g, panel["predicted"][depth_index], "-", color=c, lw=1.2, alpha=0.8)
        ax.axvline(data["critical_gain"][act], color="#333", lw=1)
        ax.axhline(0, color="#999", lw=0.8)
        ax.set_xscale("log")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_title(f"{act}, depth {data['n_blocks'][depth_index]}", fontsize=10)
        finish_axes(ax, "weight gain g", legend=False)
    finish_axes(axes[0], None, "log10 ||dL/dx_0|| / ||dL/dx_L||", grid=None, title="dots: measured, lines: mean field",
                title_fontsize=7)
    return axes


def plot_chi_profile(result: dict, ax: Axes | None = None, title: str = "") -> Axes:
    """The chi lab's figure: ``log10 ||dL/dx_l|| / ||dL/dx_L||`` at every block of one network (from
    :func:`skipnet.experiments.highway_chi.chi_network`), measured and mean-field."""
    ax = _ax(ax, (6.5, 3.6))
    prof = np.asarray(result["profile"], dtype=float)
    x = np.arange(prof.size)
    ok = np.isfinite(prof)
    ax.plot(x[ok], prof[ok], color=PLAIN, lw=1.8, label="measured")
    ax.plot(x, result["predicted"], color="k", ls="--", lw=1.2, label="mean field")
    ax.axhline(0, color="#999", lw=0.8)
    finish_axes(ax, "block input (input -> output)", "log10 ||dL/dx_l|| / ||dL/dx_L||")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
