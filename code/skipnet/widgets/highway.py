"""Labs of the chapter *The gradient highway*: a gradient-profile explorer, the chi phase-diagram lab and a
plain-vs-residual training race."""
from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt

from skipnet.checks import check_float, check_int, check_seed
from skipnet.experiments.highway import profile_pair
from skipnet.experiments.highway_chi import CHI_ACTIVATIONS, CHI_VARIANTS, MAX_CHI_BLOCKS, chi_network
from skipnet.experiments.highway_trained import RACE_VARIANTS, Race, training_race
from skipnet.models import ACTIVATIONS
from skipnet.plotting.highway import plot_chi_profile, plot_profile_pair, race_figure
from skipnet.widgets.base import Lab

__all__ = ["GradientProfileLab", "ChiLab", "TrainingRaceLab"]

MAX_PROFILE_DEPTH = 200


class GradientProfileLab(Lab):
    """Depth, activation, normalization and skip on/off -> per-layer gradient norms at initialization
    (digits MLP, width 64, one layer a block), in milliseconds. The twin with the skip toggled is drawn faintly."""

    title = "Gradient-profile explorer (MLP at initialization)"
    page = "book/highway"
    run_label = "Measure"
    auto_run = True
    min_refresh_s = 0.0

    def __init__(self, threaded: bool = True):
        self.n_blocks = W.IntSlider(value=50, min=1, max=MAX_PROFILE_DEPTH, description="blocks",
                                    continuous_update=False)
        self.activation = W.Dropdown(options=list(ACTIVATIONS), value="relu", description="activation")
        self.norm = W.Dropdown(options=[("none", "none"), ("BatchNorm", "batch"), ("LayerNorm", "layer")],
                               value="none", description="norm")
        self.residual = W.Checkbox(value=False, description="skip connections")
        super().__init__([self.n_blocks, self.activation, self.norm, self.residual], threaded=threaded)

    def compute(self) -> dict:
        self.update(0.1, "measuring...")
        return profile_pair(int(self.n_blocks.value), self.activation.value, self.norm.value, bool(self.residual.value),
                            max_blocks=MAX_PROFILE_DEPTH)

    def render(self, result: dict):
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        plot_profile_pair(result, ax)
        return fig

    def summary(self, result: dict) -> str:
        chosen, twin = list(result)

        def verdict(v: float) -> str:
            return "vanishing toward the input" if v < 0.01 else "exploding toward the input" if v > 100 else "flat"

        r, a = result[chosen].ratio, result[chosen].act_ratio
        t, ta = result[twin].ratio, result[twin].act_ratio
        # the weight ratio alone can hide an exploding stream gradient (a stream that grows hides it): show both
        return (f"<b>{chosen}</b>: weight-gradient ratio <b>{r:.3g}</b> ({verdict(r)}), stream-gradient ratio "
                f"<b>{a:.3g}</b> ({verdict(a)}); {twin}: {t:.3g} and {ta:.3g}.")


class ChiLab(Lab):
    """Activation, variant (plain, residual, branch/sqrt(L)), weight gain and depth -> the stream gradient
    ``log10 ||dL/dx_l|| / ||dL/dx_L||`` at every block of one MLP at initialization, measured beside the
    mean-field prediction, with chi (the fixed-point slope factor of a plain layer) in the message line."""

    title = "The chi phase diagram, one network at a time"
    page = "book/highway/initialization"
    run_label = "Measure"
    auto_run = True
    min_refresh_s = 0.0

    def __init__(self, threaded: bool = True):
        self.activation = W.Dropdown(options=list(CHI_ACTIVATIONS), value="tanh", description="activation")
        self.variant = W.Dropdown(options=list(CHI_VARIANTS), value="plain", description="variant")
        self.gain = W.FloatLogSlider(value=1.0, base=2, min=-2, max=4, step=0.125, description="gain g",
                                     continuous_update=False, readout_format=".3g")
        self.n_blocks = W.IntSlider(value=64, min=1, max=MAX_CHI_BLOCKS, description="blocks",
                                    continuous_update=False)
        self.seed = W.IntText(value=0, description="seed", layout=W.Layout(width="160px"))
        super().__init__([self.activation, self.variant, self.gain, self.n_blocks, self.seed], threaded=threaded)

    def compute(self) -> dict:
        self.update(0.1, "measuring...")
        return chi_network(self.activation.value, self.variant.value, float(self.gain.value),
                           int(self.n_blocks.value), int(self.seed.value))

    def render(self, result: dict):
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        plot_chi_profile(result, ax, title=f"{self.activation.value}, {self.variant.value}, g = "
                                           f"{float(self.gain.value):.3g}, {int(self.n_blocks.value)} blocks")
        return fig

    def summary(self, result: dict) -> str:
        if result["log_ratio"] is None:
            return "The gradient overflowed or underflowed double precision: no finite ratio at this setting."
        m, p, chi = result["log_ratio"], result["predicted"][0], result["chi"]
        regime = "below 1: a plain stack vanishes" if chi < 0.98 else "above 1: a plain stack explodes" if chi > 1.02 \
            else "near 1: critical"
        return (f"measured log10 ||dL/dx_0|| / ||dL/dx_L|| = <b>{m:.2f}</b> (mean field {p:.2f}); "
                f"chi of a plain layer at this gain: <b>{chi:.3g}</b> ({regime}).")


class TrainingRaceLab(Lab):
    """Plain and residual CNNs of one depth trained side by side on the digits: live loss curves and the
    step x layer gradient heat maps. Default (depth 56, 6 epochs) takes several seconds on one core."""

    title = "Training race: plain vs residual CNN"
    page = "book/highway/training"
    run_label = "Race"
    min_refresh_s = 3.0                      # at least this long between live redraws: a redraw of the curves and
    max_draw_share = 0.1                     # heat maps takes about a second of the CPU the two trainings share

    def __init__(self, threaded: bool = True):
        self.depth = W.IntText(value=56, description="depth", layout=W.Layout(width="170px"))
        self.variant = W.Dropdown(options=list(RACE_VARIANTS), value="BN + ReLU", description="variant")
        self.epochs = W.IntSlider(value=6, min=1, max=20, description="epochs", continuous_update=False)
        self.lr = W.FloatText(value=0.1, description="lr", layout=W.Layout(width="170px"))
        self.seed = W.IntText(value=0, description="seed", layout=W.Layout(width="170px"))
        super().__init__([self.depth, self.variant, self.epochs, self.lr, self.seed], threaded=threaded)

    def compute(self) -> Race:
        depth, epochs = check_int("depth", self.depth.value, 8, 110), check_int("epochs", self.epochs.value, 1, 20)
        lr, seed = check_float("lr", self.lr.value, 1e-4, 1.0), check_seed(self.seed.value)
        self.update(0.0, f"building plain-{depth} and residual-{depth}...")
        return training_race(depth, self.variant.value, epochs, seed=seed, lr=lr, progress=self.report)

    def render(self, result):
        histories = {k: r.history for k, r in result.runs.items()} if isinstance(result, Race) else result
        depth = self.depth.value
        return race_figure(histories, title=f"depth {depth}, {self.variant.value}")

    def summary(self, result: Race) -> str:
        parts = []
        for k, run in result.runs.items():
            h = run.history
            if h.final:
                parts.append(f"<b>{k}-{result.depth}</b>: {h.status}, final training loss {h.final['train_loss']:.3g}, "
                             f"test accuracy {h.final['test_acc']:.3f}")
            else:
                parts.append(f"<b>{k}-{result.depth}</b>: {h.status}")
        return "; ".join(parts)
