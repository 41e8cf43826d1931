"""The opening chapter's lab: train a plain and a residual CNN of the chosen depth side by side,
watching both loss curves live (see ``book/intro.md``)."""
from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt

from skipnet.checks import check_int, check_seed
from skipnet.experiments.degradation import DEGRADATION_MODEL, DEFAULT_TRAIN, race
from skipnet.plotting.core import PLAIN, RESIDUAL, plot_curves
from skipnet.widgets.base import Lab

__all__ = ["DegradationRace", "DEPTHS"]

DEPTHS = (8, 14, 20, 32, 44, 56)


class DegradationRace(Lab):
    """Depth, which networks, epochs -> a live race of plain vs residual training curves."""

    title = "Degradation race: plain vs residual CNN on the digits"
    page = "book/intro"

    def __init__(self, threaded: bool = True):
        self.depth = W.Dropdown(options=DEPTHS, value=20, description="depth")
        self.which = W.Dropdown(options=[("both", "both"), ("plain only", "plain"), ("residual only", "residual")],
                                value="both", description="networks")
        self.epochs = W.IntSlider(value=6, min=1, max=20, description="epochs")
        self.seed = W.IntText(value=0, description="seed", layout=W.Layout(width="160px"))
        super().__init__([self.depth, self.which, self.epochs, self.seed], threaded=threaded)

    def compute(self):
        depth = int(self.depth.value)
        epochs, seed = check_int("epochs", self.epochs.value, 1, 20), check_seed(self.seed.value)
        model, train = DEGRADATION_MODEL.with_(depth=depth), DEFAULT_TRAIN.with_(epochs=epochs)   # validate first
        variants = {"both": (False, True), "plain": (False,), "residual": (True,)}[self.which.value]
        self.update(0.0, f"building plain and residual {depth}-layer networks...")
        runs = race(depth, seed=seed, model=model, train=train, progress=self.report, variants=variants)
        return {k: r.history for k, r in runs.items()}

    def render(self, histories):
        fig, ax = plt.subplots(figsize=(6, 3.4))
        labelled = {f"{k}-{self.depth.value}": h for k, h in histories.items()}
        colors = {f"plain-{self.depth.value}": PLAIN, f"residual-{self.depth.value}": RESIDUAL}
        plot_curves(labelled, ax=ax, smooth=3, colors=colors)
        ax.set_title(f"{self.depth.value} layers: training loss, live")
        fig.tight_layout()
        return fig

    def summary(self, histories):
        parts = []
        for k, h in histories.items():
            f = h.final
            end = f"final training loss {f['train_loss']:.3g}, test accuracy {f['test_acc']:.3f}" if f else h.status
            parts.append(f"<b>{k}</b>: {end} ({h.status})")
        return "<br>".join(parts)
