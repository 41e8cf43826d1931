"""Labs of the chapter *Residual connections in Transformers (and the RNN question)*.

* :class:`TransformerLab`: train the tiny Transformer on the sorting task, live, with any depth,
  norm placement, skip on/off, learning rate and warm-up; reports divergence or a stuck run.
* :class:`RankCollapseExplorer`: token similarity layer by layer at initialization (instant).
"""
from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt

from skipnet.checks import check_float, check_int, check_seed
from skipnet.experiments.transformers import (SORT_MODEL, DEFAULT_TRAIN, SORT, rank_collapse,
                                              rank_variant_config, stuck, train_sort)
from skipnet.history import Run
from skipnet.parallel import in_worker
from skipnet.plotting.core import PLAIN, RESIDUAL
from skipnet.plotting.transformers import plot_rank_curves, plot_sort_runs
from skipnet.transformer import TRANSFORMER_PLACEMENTS
from skipnet.widgets.base import Lab

__all__ = ["TransformerLab", "RankCollapseExplorer"]

_STYLE = {"description_width": "initial"}


class TransformerLab(Lab):
    """Train one tiny Transformer encoder on the sorting task (12 tokens, vocabulary 16) with live
    loss and accuracy. The default (4 blocks, pre-LN, 150 steps) takes a few seconds on one core."""


    title = "Transformer lab: sort 12 tokens"
    page = "book/transformers"
    run_label = "Train"
    min_refresh_s = 1.5          # a redraw costs a few tenths of a second and stops the training while it draws:
    max_draw_share = 0.1         # keep most of the time for training (bench/: 2.4 s of 8.7 s went to six redraws)
    MAX_LAB_BLOCKS = 12

    def __init__(self, threaded: bool = True):
        self.n_blocks = W.IntSlider(value=4, min=1, max=self.MAX_LAB_BLOCKS, description="blocks", style=_STYLE)
        self.placement = W.Dropdown(options=list(TRANSFORMER_PLACEMENTS), value="pre", description="LayerNorm",
                                    style=_STYLE)
        self.residual = W.Checkbox(value=True, description="residual (skip)", style=_STYLE)
        self.lr = W.FloatText(value=DEFAULT_TRAIN.lr, description="lr", style=_STYLE, layout=W.Layout(width="150px"))
        self.warmup = W.IntSlider(value=DEFAULT_TRAIN.warmup_steps, min=0, max=200, step=10,
                                  description="warm-up steps", style=_STYLE)
        self.steps = W.IntSlider(value=150, min=50, max=600, step=50, description="steps", style=_STYLE)
        self.seed = W.IntText(value=0, description="seed", style=_STYLE, layout=W.Layout(width="120px"))
        super().__init__([self.n_blocks, self.placement, self.residual, self.lr, self.warmup, self.steps, self.seed],
                         threaded=threaded)

    def settings(self) -> tuple:
        """The model and training configs of the current controls (ValueError naming a bad one)."""
        check_int("blocks", self.n_blocks.value, 1, self.MAX_LAB_BLOCKS)
        check_float("lr", self.lr.value, 1e-5, 0.1)
        steps = check_int("steps", self.steps.value, 1, 5000)
        check_int("warm-up steps", self.warmup.value, 0, steps)
        check_seed(self.seed.value)
        model = SORT_MODEL.with_(n_blocks=self.n_blocks.value, placement=self.placement.value,
                                    residual=self.residual.value)
        train = DEFAULT_TRAIN.with_(lr=float(self.lr.value), warmup_steps=self.warmup.value, steps=steps)
        return model, train

    def label(self) -> str:
        skip = "residual" if self.residual.value else "no residual"
        return f"{self.n_blocks.value} blocks, {skip}, {self.placement.value}-LN"

    def compute(self) -> Run:
        model, train = self.settings()
        label = self.label()
        self.update(0.0, f"building {label}...")

        def progress(fraction, text, h) -> bool:
            return self.report(fraction, text, Run(model, train.with_(seed=self.seed.value), h, 0.0, label=label))

        # the training runs in a worker process, so that redrawing the live curves here does not pause it
        return in_worker(lambda p: train_sort(model, train, seed=self.seed.value, label=label, progress=p), progress)

    def render(self, result: Run):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        color = {result.label: RESIDUAL if result.model.residual else PLAIN}
        plot_sort_runs({result.label: result}, ax=axes[0], chance=SORT.chance_loss,
                       position_only=SORT.position_only_loss(), colors=color, styles={})
        plot_sort_runs({result.label: result}, ax=axes[1], metric="acc", colors=color, styles={})
        axes[1].set_ylim(0, 1.02)
        fig.tight_layout()
        return fig

    def summary(self, result: Run) -> str:
        h = result.history
        if h.diverged:
            return f"<b>{h.status}</b>: the loss became non-finite; try a smaller lr or a warm-up."
        if not h.final:                                  # stopped before the final evaluation
            last = f": last batch loss {h.loss[-1]:.3f}" if h.loss else ""
            return f"<b>{h.status}</b>{last}."
        loss, acc = result.train_loss, result.train_acc
        tail = f"final loss {loss:.3f}, token accuracy {acc:.3f} ({h.status}, {result.seconds:.1f} s)"
        if stuck(loss):
            return (f"<b>Stuck</b>: {tail}. Chance is {SORT.chance_loss:.2f}; a model that ignores the tokens "
                    f"and only knows the position reaches {SORT.position_only_loss():.2f}.")
        return f"<b>Trained</b>: {tail}."


class RankCollapseExplorer(Lab):
    """Token residual ratio, layer by layer, of a freshly initialized encoder fed random tokens
    (16 sequences of 32 tokens, width 64). The twin with the skip flipped is drawn in grey."""

    title = "Rank-collapse explorer (at initialization)"
    page = "book/transformers/rank"
    run_label = "Draw"
    auto_run = True

    def __init__(self, threaded: bool = True):
        self.n_blocks = W.IntSlider(value=16, min=1, max=32, description="blocks", style=_STYLE)
        self.skip = W.Checkbox(value=True, description="skip", style=_STYLE)
        self.ln = W.Checkbox(value=True, description="LayerNorm", style=_STYLE)
        self.mlp = W.Checkbox(value=True, description="MLP", style=_STYLE)
        self.seed = W.IntText(value=0, description="seed", style=_STYLE, layout=W.Layout(width="120px"))
        super().__init__([self.n_blocks, self.skip, self.ln, self.mlp, self.seed], threaded=threaded)

    def compute(self) -> dict:
        seed = check_seed(self.seed.value)
        key = (self.skip.value, self.ln.value, self.mlp.value)
        twin = (not key[0], key[1], key[2])
        out = {}
        for i, k in enumerate((key, twin)):
            self.update(0.5 * i, "initializing...")
            out[k] = rank_collapse(rank_variant_config(self.n_blocks.value, *k), seeds=(seed,))
        return {"key": key, "curves": out}

    def render(self, result: dict):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        plot_rank_curves(result["curves"], ax=ax, highlight=result["key"])
        fig.tight_layout()
        return fig

    def summary(self, result: dict) -> str:
        c = result["curves"][result["key"]]
        k = c.first_below(1e-3)
        if k is not None:
            return f"The tokens collapse: the ratio falls below 1e-3 at layer {k} (float32 keeps about 1e-7)."
        return f"The tokens stay distinct: ratio {c.mean[-1]:.2f} after {len(c.mean) - 1} blocks."
