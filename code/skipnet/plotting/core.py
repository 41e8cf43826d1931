"""Figures every chapter uses: the house style's finishing lines (:func:`finish_axes`), training curves, the
residual block drawn by code, PNG export."""
from __future__ import annotations

import io
import re
from typing import Mapping

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, Circle

from skipnet.history import History

__all__ = ["finish_axes", "plot_curves", "draw_residual_block", "figure_png", "diverged_label", "scrubber", "PLAIN",
           "RESIDUAL"]

PLAIN, RESIDUAL = "#d95f02", "#1b9e77"     # one colour for plain, one for residual, in every chapter


def finish_axes(ax: Axes, xlabel: str | None = None, ylabel: str | None = None, *, log: str = "",
                grid: str | None = "both", legend: bool = True, **legend_kw) -> Axes:
    """The house style's last lines of a panel: log scales (``log`` = ``"x"``, ``"y"`` or ``"xy"``), the axis
    labels, a light grid (``grid`` = ``"both"``, ``"x"``, ``"y"`` or ``None``) and a small legend without a frame
    (``legend=False``: none; ``legend_kw`` such as ``loc`` are passed on)."""
    if "x" in log:
        ax.set_xscale("log")
    if "y" in log:
        ax.set_yscale("log")
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if grid == "both":
        ax.grid(alpha=0.3)
    elif grid:
        ax.grid(axis=grid, alpha=0.3)
    if legend:
        ax.legend(**{"fontsize": 8, "frameon": False, **legend_kw})
    return ax


def diverged_label(label: str, history: History) -> str:
    """The legend label, with the run's status appended when it did not simply finish."""
    return label if history.status in ("finished", "running") else f"{label} ({history.status})"


def plot_curves(histories: Mapping[str, History], ax: Axes | None = None, metric: str = "loss",
                smooth: int = 1, log: bool = True, colors: Mapping[str, str] | None = None,
                styles: Mapping[str, str] | None = None) -> Axes:
    """Per-step training-batch ``metric`` ("loss" or "acc") of each run, labelled by its key.

    A run that diverged ends where it diverged (no NaN is drawn) and says so in the legend.
    ``smooth`` > 1 draws a running mean over that many steps.
    """
    if metric not in ("loss", "acc"):
        raise ValueError(f"metric must be 'loss' or 'acc', got {metric!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, h in histories.items():
        ys = list(getattr(h, metric))
        if smooth > 1 and len(ys) >= smooth:
            ys = [sum(ys[max(0, i - smooth + 1):i + 1]) / len(ys[max(0, i - smooth + 1):i + 1]) for i in range(len(ys))]
        kw = {}
        if colors and label in colors:
            kw["color"] = colors[label]
        if styles and label in styles:
            kw["linestyle"] = styles[label]
        line, = ax.plot(range(1, len(ys) + 1), ys, label=diverged_label(label, h), lw=1.6, **kw)
        if h.diverged and ys:
            ax.plot([len(ys)], [ys[-1]], marker="x", color=line.get_color(), ms=9, mew=2)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (batch)" if metric == "loss" else "training accuracy (batch)")
    if log and metric == "loss":
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return ax


def draw_residual_block(ax: Axes | None = None) -> Axes:
    """The residual block of He et al. (2015), Fig. 2: x -> weight -> ReLU -> weight -> (+) -> ReLU,
    with the identity shortcut carrying x around the two layers to the addition."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 12)
    ax.axis("off")
    box = dict(boxstyle="round,pad=0.35", fc="#e8eef7", ec="#3b5b8c", lw=1.4)
    x0 = 4.0

    def node(y, text, **kw):
        ax.text(x0, y, text, ha="center", va="center", fontsize=11, bbox=kw.get("bbox", box), zorder=3)

    def arrow(p, q, **kw):
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=14, lw=1.4, color=kw.get("color", "#333"),
                                     connectionstyle=kw.get("cs", "arc3"), zorder=2))

    ax.text(x0, 11.4, r"$\mathbf{x}$", ha="center", va="center", fontsize=14)
    node(9.4, "weight layer")
    ax.text(x0 + 1.9, 8.45, "ReLU", ha="left", va="center", fontsize=10, color="#555")
    node(7.4, "weight layer")
    ax.add_patch(Circle((x0, 5.3), 0.45, fc="white", ec="#333", lw=1.4, zorder=3))
    ax.text(x0, 5.3, "+", ha="center", va="center", fontsize=16, zorder=4)
    ax.text(x0, 3.6, "ReLU", ha="center", va="center", fontsize=11)
    ax.text(x0, 1.8, r"$\mathcal{F}(\mathbf{x}) + \mathbf{x}$", ha="center", va="center", fontsize=13)
    arrow((x0, 11.0), (x0, 9.95))
    arrow((x0, 8.85), (x0, 7.95))
    arrow((x0, 6.85), (x0, 5.8))
    arrow((x0, 4.8), (x0, 3.95))
    arrow((x0, 3.25), (x0, 2.3))
    # identity shortcut: out of x to the right, down, into the (+)
    ax.plot([x0 + 0.25, 8.2, 8.2], [11.0, 11.0, 5.3], color="#1b9e77", lw=2.2, zorder=1)
    arrow((8.2, 5.3), (x0 + 0.5, 5.3), color="#1b9e77")
    ax.text(8.4, 8.2, "identity\nshortcut\n" + r"$\mathbf{x}$", ha="left", va="center", fontsize=10, color="#1b9e77")
    ax.text(0.2, 8.4, r"$\mathcal{F}(\mathbf{x})$", ha="left", va="center", fontsize=13, color="#3b5b8c")
    ax.plot([1.6, 1.6], [7.0, 9.8], color="#3b5b8c", lw=1.0)
    return ax


def figure_png(fig: matplotlib.figure.Figure, dpi: int = 90, tight: bool = True) -> bytes:
    """The figure as PNG bytes (for ``ipywidgets.Image``), then closed. ``tight=False`` skips the cropping of
    the outer margin, which costs a second rendering (the labs' live redraws: about half their drawing time)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


def scrubber(fig: matplotlib.figure.Figure, draw_frame, n_frames: int, interval_ms: int = 400,
             embed_limit_mb: float = 20.0):
    """A kernel-free explorer: ``draw_frame(i)`` redraws ``fig`` for frame ``i``; returns an
    ``IPython.display.HTML`` holding every frame with a slider and play buttons (matplotlib's
    ``to_jshtml``). Works on the static site, offline, with no kernel. Keep ``n_frames`` small
    (each frame is a PNG, about 15-20 KB)."""
    from matplotlib import animation
    from IPython.display import HTML

    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    matplotlib.rcParams["animation.embed_limit"] = embed_limit_mb
    anim = animation.FuncAnimation(fig, draw_frame, frames=n_frames, interval=interval_ms, blit=False)
    html = anim.to_jshtml(default_mode="once")
    # matplotlib links Font Awesome 4 from a CDN for the play buttons; the book's theme already serves Font Awesome
    # (with the fa-* names these buttons use), and the site must not depend on a third-party host.
    html = re.sub(r'<link rel="stylesheet"\s*href="https://maxcdn\.bootstrapcdn\.com/font-awesome/[^"]*">\s*', "", html)
    plt.close(fig)
    return HTML(html)
