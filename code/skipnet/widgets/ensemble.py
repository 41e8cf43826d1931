"""Labs of the chapter *An ensemble of relatively shallow paths*: a lesion lab (delete blocks of a trained
residual and plain net, accuracy updates at once) and a path explorer (gradient by path length)."""
from __future__ import annotations

from dataclasses import dataclass, field

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np

from skipnet.checks import check_int, check_seed
from skipnet.data import load_digits
from skipnet.experiments.ensemble import ENSEMBLE_MODEL, Curve, PathStudy, deletion_curve, lesion_study, path_study, \
    train_net
from skipnet.experiments.ensemble import DEFAULT_TRAIN
from skipnet.experiments.ensemble_trials import spectrum_study
from skipnet.history import Run
from skipnet.plotting.core import PLAIN, RESIDUAL, plot_curves
from skipnet.plotting.ensemble import CHANCE, plot_curves_k, plot_path_shares, plot_path_study
from skipnet.probes.lesions import LesionEvaluator, recalibrated
from skipnet.race import race_runs
from skipnet.train import sub_progress
from skipnet.widgets.base import Lab

__all__ = ["LesionLab", "PathExplorer", "LesionState", "LAB_DEPTHS", "PATH_DEPTHS"]

LAB_DEPTHS = (8, 14, 20, 26, 32, 44, 56)
# the chapter's training without its evaluation every 5 steps (the matched-loss study needs them, the labs do
# not): the same trained nets, a third faster
LAB_TRAIN = DEFAULT_TRAIN.with_(eval_every=0)
PATH_DEPTHS = (8, 14, 20, 26, 32, 44, 56)


@dataclass
class LesionState:
    """What the lesion lab shows: the two trained nets, their k-deletion curves, the blocks now deleted,
    the accuracies with those blocks deleted, and the k picked on the slider."""

    depth: int
    nets: dict[str, Run]
    curves: dict[str, Curve]
    deleted: list[int] = field(default_factory=list)
    acc: dict[str, float] = field(default_factory=dict)
    intact: dict[str, float] = field(default_factory=dict)
    k: int = 1
    status: str = "finished"


class _NoLiveFigure:
    """For labs whose figure needs the finished result: progress and Stop, but no redraw from the partial
    result (a training History, a list of gradient norms), which ``render`` cannot draw."""

    def report_progress(self, fraction: float, text: str = "", partial=None) -> bool:
        return self.report(fraction, text)


class LesionLab(_NoLiveFigure, Lab):
    """Train a residual and a plain CNN of one depth on the digits (a few seconds at depth 20), then
    delete blocks at test time with the checkboxes: both accuracies update at once. The slider picks k
    on the curve of accuracy against k blocks deleted at random.

    ``LesionLab(nets={"residual": trained, "plain": trained})`` starts from nets trained elsewhere
    (two :class:`~skipnet.history.Run` of the same depth, from ``train_net``), with no training.
    """

    title = "Lesion lab: delete blocks of a trained residual and plain network"
    page = "book/ensemble/lesions"
    run_label = "Train"
    min_refresh_s = 1.5          # live curves now and then: a redraw takes CPU from the two training processes
    max_draw_share = 0.1
    n_draws = 6                          # random block sets per k on the curve

    def __init__(self, threaded: bool = True, nets: dict[str, Run] | None = None):
        self.depth = W.Dropdown(options=LAB_DEPTHS, value=20, description="depth")
        self.seed = W.IntText(value=0, description="seed", layout=W.Layout(width="160px"))
        super().__init__([self.depth, self.seed], threaded=threaded)
        self.k = W.IntSlider(value=1, min=0, max=1, description="delete k", continuous_update=True)
        self.k.observe(self.safely(self._on_k), names="value")
        self.boxes: list[W.Checkbox] = []
        self.box_row = W.HBox([], layout=W.Layout(flex_flow="row wrap"))
        self.clear_button = W.Button(description="restore all", icon="undo")
        self.clear_button.on_click(self.safely(lambda _: self.set_deleted([])))
        self._evaluators: dict[str, LesionEvaluator] = {}
        self._muted = False
        at = self.widget.children.index(self.message)          # after the Run and Stop buttons
        self.widget.children = (*self.widget.children[:at],
                                W.HTML("<b>delete blocks</b> (input -> output):"), self.box_row,
                                W.HBox([self.clear_button, self.k]), *self.widget.children[at:])
        if nets is not None:
            self.result = self._prepare(nets)
            self._draw(self.result)
            self.message.value = self.summary(self.result)

    # -- training and preparation ---------------------------------------------------------------
    def compute(self) -> LesionState:
        depth, seed = int(self.depth.value), check_seed(self.seed.value)
        ENSEMBLE_MODEL.with_(depth=depth)                         # validates depth with a clear message
        self.update(0.0, f"loading the digits, building residual-{depth} and plain-{depth}...")
        data = load_digits()
        # the two nets train side by side (one process each on two cores), live curves as they go; the same
        # nets as train_net(depth, residual, seed) one after the other
        cfgs = {name: ENSEMBLE_MODEL.with_(depth=depth, residual=name == "residual") for name in ("residual", "plain")}
        nets = race_runs(cfgs, data, LAB_TRAIN, seed=seed,
                         progress=sub_progress(self.report, 0, 0.9, "training: "))
        for name, net in nets.items():
            if net.history.status.startswith("stopped"):
                return LesionState(depth, {}, {}, status=f"{name}: {net.history.status}")
        self.update(0.95, "deleting blocks at random...")
        return self._prepare(nets, data)

    def _prepare(self, nets: dict[str, Run], data=None) -> LesionState:
        if set(nets) != {"residual", "plain"}:
            raise ValueError(f"nets must have the keys 'residual' and 'plain', got {sorted(nets)}")
        n = {k: v.model.n_blocks for k, v in nets.items()}
        if n["residual"] != n["plain"]:
            raise ValueError(f"nets must have the same number of blocks, got {n}")
        data = data or load_digits()
        curves, self._evaluators = {}, {}
        for name, net in nets.items():
            study = lesion_study(net.net, data, net.label, n_samples=self.n_draws, seed=net.seed)
            curves[name] = deletion_curve([study])
            X = data.X_test.to(next(net.net.parameters()).device)
            self._evaluators[name] = LesionEvaluator(net.net, X, data.y_test.to(X.device))
        depth = nets["residual"].model.depth
        state = LesionState(depth, nets, curves, intact={k: e.intact for k, e in self._evaluators.items()},
                            k=min(1, n["residual"]))
        state.acc = dict(state.intact)
        self._build_boxes(n["residual"], state.k)
        return state

    def _build_boxes(self, n: int, k: int) -> None:
        self._muted = True
        self.boxes = [W.Checkbox(value=False, description=f"{i + 1}", indent=False,
                                 layout=W.Layout(width="52px")) for i in range(n)]
        for b in self.boxes:
            b.observe(self.safely(self._on_box), names="value")
        self.box_row.children = tuple(self.boxes)
        self.k.max, self.k.value = n, k
        self._muted = False

    # -- immediate updates (no training) ---------------------------------------------------------
    def set_deleted(self, indices) -> LesionState:
        """Delete exactly the blocks at ``indices`` (0-based), as if their boxes were ticked."""
        if not isinstance(self.result, LesionState) or not self.result.curves:
            raise ValueError("train the networks first (press Train)")
        n = len(self.boxes)
        bad = [i for i in indices if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"block indices must be in 0..{n - 1}, got {bad}")
        self._muted = True
        for i, b in enumerate(self.boxes):
            b.value = i in set(int(j) for j in indices)
        self._muted = False
        return self._refresh()

    def _on_box(self, _change) -> None:
        if not self._muted and isinstance(self.result, LesionState) and self.result.curves:
            self._refresh()

    def _on_k(self, _change) -> None:
        if not self._muted and isinstance(self.result, LesionState) and self.result.curves:
            self.result.k = int(self.k.value)
            self._draw(self.result)
            self.message.value = self.summary(self.result)

    def _refresh(self) -> LesionState:
        state = self.result
        state.deleted = [i for i, b in enumerate(self.boxes) if b.value]
        state.acc = {k: e.accuracy(state.deleted) for k, e in self._evaluators.items()}
        self._draw(state)
        self.message.value = self.summary(state)
        return state

    # -- display ----------------------------------------------------------------------------------
    def render(self, state: LesionState | dict):
        if not isinstance(state, LesionState):              # while training: both nets' curves so far
            fig, ax = plt.subplots(figsize=(6, 3.2))
            plot_curves(state, ax=ax, colors={"residual": RESIDUAL, "plain": PLAIN})
            ax.set_title("training the two networks (the lesion panels follow)", fontsize=10)
            fig.tight_layout()
            return fig
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1, 1.5]})
        if not state.curves:
            a.text(0.5, 0.5, state.status, ha="center", va="center")
            a.axis("off")
            b.axis("off")
            return fig
        names = ["residual", "plain"]
        colors = [RESIDUAL, PLAIN]
        a.barh([1, 0], [state.acc[k] for k in names], color=colors, height=0.55)
        a.scatter([state.intact[k] for k in names], [1, 0], marker="|", s=400, color="#333", zorder=3)
        for y, k in zip([1, 0], names):
            a.text(min(state.acc[k] + 0.02, 0.8), y, f"{state.acc[k]:.3f}", va="center", fontsize=9)
        a.axvline(CHANCE, color="#888", ls="--", lw=1)
        a.set_yticks([1, 0], [f"residual-{state.depth}", f"plain-{state.depth}"])
        a.set_xlim(0, 1.05)
        a.set_xlabel("test accuracy")
        deleted = ", ".join(str(i + 1) for i in state.deleted) or "none"
        a.set_title(f"blocks deleted: {deleted}  (|: intact net)", fontsize=10)
        curves = [Curve(f"{k}-{state.depth}", c.ks, c.mean, c.lo, c.hi) for k, c in state.curves.items()]
        plot_curves_k(curves, ax=b, highlight_k=state.k)
        b.set_title(f"k random blocks deleted ({self.n_draws} draws a k)", fontsize=10)
        fig.tight_layout()
        return fig

    def summary(self, state: LesionState) -> str:
        if not state.curves:
            return f"Training {state.status}."
        parts = [f"<b>{k}-{state.depth}</b>: accuracy {state.acc[k]:.3f} (intact {state.intact[k]:.3f})"
                 for k in ("residual", "plain")]
        at_k = ", ".join(f"{k} {c.at(state.k):.2f}" for k, c in state.curves.items() if state.k in c.ks)
        return "; ".join(parts) + f". Deleting {state.k} random blocks: {at_k} (mean of {self.n_draws} draws)."


class PathExplorer(_NoLiveFigure, Lab):
    """Depth -> how many paths of each length a residual CNN has, and how much gradient each length
    carries: Veit et al.'s sampled estimate (Fig. 6) beside the exact spectrum (the backward dynamic programme
    of :mod:`skipnet.probes.path_spectrum`), on a net trained for a few epochs or at initialization (BatchNorm
    statistics then calibrated on the training set, as the network would use them)."""

    title = "Path explorer: gradient by path length"
    page = "book/ensemble/paths"
    run_label = "Measure"

    def __init__(self, threaded: bool = True):
        self.depth = W.Dropdown(options=PATH_DEPTHS, value=20, description="depth")
        self.trained = W.Checkbox(value=True, description="train first (10 epochs)")
        self.samples = W.IntSlider(value=6, min=1, max=30, description="paths / length", continuous_update=False)
        self.seed = W.IntText(value=0, description="seed", layout=W.Layout(width="160px"))
        super().__init__([self.depth, self.trained, self.samples, self.seed], threaded=threaded)

    def compute(self) -> dict:
        depth, seed = int(self.depth.value), check_seed(self.seed.value)
        samples = check_int("paths / length (samples)", self.samples.value, 1, 30)
        cfg = ENSEMBLE_MODEL.with_(depth=depth)                   # validates depth with a clear message
        # a first figure at once: how many paths of each length there are (no training needed); the measured
        # spectra follow
        self.update(0.0, f"building residual-{depth}...", {"n": cfg.n_blocks}, force=True)
        data = load_digits()
        share = 0.7 if self.trained.value else 0.0
        if self.trained.value:                                  # no redraws while training: they would slow it
            net = train_net(depth, True, seed=seed, data=data, train=LAB_TRAIN,
                            progress=sub_progress(self.report_progress, 0, share, f"training residual-{depth}: "))
            if net.history.status != "finished":
                return {"depth": depth, "status": net.history.status, "study": None}
            model, status = net.net, f"trained 10 epochs, test accuracy {net.test_acc:.3f}"
        else:
            model, _ = recalibrated(cfg.build(seed), data.X_train)
            status = "at initialization, BN statistics calibrated"
        study = path_study(model, data, n_samples=samples, seed=seed,
                           progress=sub_progress(self.report_progress, share, 0.95, "sending gradients down paths: "))
        if study is None:
            return {"depth": depth, "status": "stopped", "study": None, "spectrum": None}
        self.update(0.97, "exact spectrum...")
        return {"depth": depth, "status": status, "study": study, "spectrum": spectrum_study(model, data, seed)}

    def render(self, result: dict):
        fig = plt.figure(figsize=(7.2, 6.6))                    # (a) and (b) side by side, (c) below
        grid = fig.add_gridspec(2, 2)
        axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])]
        if "study" not in result:                               # before the measurement: counts and training
            plot_path_shares(result["n"], axes[0])
            for ax in axes[1:]:
                ax.axis("off")
            axes[1].text(0.5, 0.5, "training and sending gradients down paths:\n(b) and (c) follow",
                         ha="center", va="center", color="#666")
            fig.tight_layout()
            return fig
        if result["study"] is None:
            for ax in axes:
                ax.axis("off")
            axes[1].text(0.5, 0.5, result["status"], ha="center", va="center")
            return fig
        plot_path_study(result["study"], axes)
        spectrum = result.get("spectrum")
        if spectrum is not None:                  # the book's one encoding: exact = bars, Veit's estimate = black line
            from skipnet.plotting.ensemble_trials import plot_spectrum
            axes[2].clear()
            study = result["study"]
            weights = study["weights"] if isinstance(study, dict) else study.weights
            plot_spectrum(spectrum.shares, weights, ax=axes[2])
            axes[2].set_title("(c) gradient by length: bars exact, black line Veit's estimate (a) x (b)", fontsize=10)
        fig.tight_layout()
        return fig

    def summary(self, result: dict) -> str:
        s: PathStudy | None = result["study"]
        if s is None:
            return f"residual-{result['depth']}: {result['status']}."
        top = int(np.argmax(s.weights))
        exact = result.get("spectrum")
        tail = f"; exact spectrum: mean <b>{exact.mean_length:.1f}</b>" if exact is not None else ""
        return (f"<b>residual-{result['depth']}</b> ({s.n} blocks, {result['status']}): Veit's sampled estimate of "
                f"the gradient-weighted mean path length is <b>{s.mean_length:.1f}</b> blocks{tail}, against "
                f"n/2 = {s.n / 2:g} for all paths; the sampled estimate's largest share comes from length {top}.")
