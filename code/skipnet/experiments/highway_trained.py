"""What the chapter *The gradient highway* measures on trained networks: plain and residual CNNs trained side by
side with per-layer gradients recorded (:func:`training_race`, built on
:func:`skipnet.experiments.degradation.race`), a filter-normalized 2-D loss slice (:func:`landscape`) and the
Hessian's extreme eigenvalues at the trained weights (:func:`hessian_row`; Li et al. 2018).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from skipnet.data import load_digits
from skipnet.experiments.degradation import DEGRADATION_MODEL, DEFAULT_TRAIN, race
from skipnet.experiments.highway import CNN_DEPTHS
from skipnet.history import Run
from skipnet.models import ModelConfig, ResidualNet, build_model
from skipnet.probes.hessian import hessian_extremes
from skipnet.probes.landscape import loss_surface
from skipnet.train import Progress

__all__ = ["RACE_VARIANTS", "Race", "training_race", "grad_ratio", "Landscape", "landscape", "SLICE_COORDS",
           "HESSIAN_NETS", "HESSIAN_EXAMPLES", "LANCZOS_STEPS", "hessian_row", "step_design", "steps_slopes",
           "chapter_family"]

RACE_VARIANTS: dict[str, dict] = {
    "BN + ReLU": dict(norm="batch", activation="relu"),
    "no norm + ReLU": dict(norm="none", activation="relu"),
    "BN + sigmoid": dict(norm="batch", activation="sigmoid"),
}


# -- training: the race, the degradation table, the landscape ------------------------------------
@dataclass
class Race:
    """Plain and residual CNNs trained side by side: ``runs`` (a Run a variant, each with its trained net)."""

    depth: int
    variant: str
    runs: dict[str, Run]
    seed: int = 0
    width: int = 8

    @property
    def models(self) -> dict[str, ResidualNet]:
        return {k: r.net for k, r in self.runs.items()}

    def config(self, key: str) -> ModelConfig:
        """The model configuration of ``"plain"`` or ``"residual"``."""
        return DEGRADATION_MODEL.with_(depth=self.depth, width=self.width, residual=key == "residual",
                                   **RACE_VARIANTS[self.variant])

    def weight_growth(self, key: str) -> np.ndarray:
        """``||W_trained|| / ||W_init||`` for each main-path weight layer (stem ... head) of ``key``.

        Behind a BatchNorm a layer's output does not depend on the scale of its weights, and its gradient
        shrinks like ``1 / ||W||``: a layer whose weights grew has, in effect, a smaller learning rate."""
        init = build_model(self.config(key), seed=self.seed)
        return np.array([w1.weight.norm().item() / w0.weight.norm().item()
                         for (_, w0), (_, w1) in zip(init.main_layers(), self.models[key].main_layers())])


def _check_race(depth: int, variant: str, epochs: int, lr: float) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth not in CNN_DEPTHS:
        raise ValueError(f"depth must be 6n+2 between 8 and 110 (8, 14, 20, ..., 56, ..., 110), got {depth!r}")
    if variant not in RACE_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(RACE_VARIANTS)}; got {variant!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 30:
        raise ValueError(f"epochs must be an integer between 1 and 30, got {epochs!r}")
    if not 1e-4 <= lr <= 1.0:
        raise ValueError(f"lr must be between 0.0001 and 1, got {lr}")


def training_race(depth: int = 56, variant: str = "BN + ReLU", epochs: int = 6, seed: int = 0, lr: float = 0.1,
                  width: int = 8, record_grads_every: int = 1, progress: Progress | None = None) -> Race:
    """Train the plain and residual CNN of one depth side by side on the digits (SGD, warm-up, cosine),
    recording every layer's gradient norm every ``record_grads_every`` steps (the step x layer heat map).

    ``progress(fraction, text, histories)`` is called after each pair of steps; returning ``False`` stops both.
    """
    _check_race(depth, variant, epochs, lr)
    model = DEGRADATION_MODEL.with_(width=width, **RACE_VARIANTS[variant])
    train = DEFAULT_TRAIN.with_(epochs=epochs, lr=float(lr), record_grads_every=record_grads_every)
    runs = race(depth, seed=seed, model=model, train=train, progress=progress)
    return Race(depth, variant, runs, seed=seed, width=width)


def grad_ratio(history, rows: slice = slice(None)) -> float:
    """Geometric mean over the recorded steps ``rows`` of the first/last layer gradient ratio during training."""
    g = np.asarray(history.grad_norms, dtype=np.float64)[rows]          # (records, layers)
    if g.size == 0:
        raise ValueError("no gradients recorded: train with record_grads_every > 0")
    return float(np.exp(np.mean(np.log(g[:, 0] / g[:, -1]))))


@dataclass
class Landscape:
    """Loss on the grid ``coords x coords`` around trained weights (row: second direction)."""

    label: str
    coords: np.ndarray
    surface: np.ndarray

    @property
    def center(self) -> float:
        i = int(np.argmin(np.abs(self.coords)))
        return float(self.surface[i, i])


def landscape(model: ResidualNet, label: str, coords: Iterable[float] | None = None, n_examples: int = 512,
              seed: int = 0, progress: Progress | None = None) -> Landscape:
    """A filter-normalized 2-D slice of the training loss around ``model``'s weights (eval mode)."""
    coords = np.linspace(-1.0, 1.0, 17) if coords is None else np.asarray(list(coords), dtype=np.float64)
    ds = load_digits()
    X, y = ds.X_train[:n_examples], ds.y_train[:n_examples]
    if model.cfg.arch == "mlp":
        X = X.flatten(1)
    X = X.to(next(model.parameters()).device)
    return Landscape(label, coords, loss_surface(model, X, y.to(X.device), coords, seed=seed, progress=progress))


# -- curvature at the trained weights (Li et al. 2018) ------------------------------------------------
HESSIAN_NETS = ((20, False), (20, True), (56, True))
HESSIAN_EXAMPLES = 512
LANCZOS_STEPS = 50
SLICE_COORDS = tuple(float(c) for c in np.linspace(-1.0, 1.0, 15))


def hessian_row(depth: int, residual: bool, seed: int = 0, n_examples: int = HESSIAN_EXAMPLES,
                steps: int = LANCZOS_STEPS, slice_seed: int | None = None) -> dict:
    """Train one CNN with the chapter's budget (:func:`~skipnet.experiments.degradation.train_one`), then measure
    the Hessian of its training loss on the first ``n_examples`` training digits (eval mode, weights with more
    than one dimension: Li et al.'s setting) by Lanczos on Hessian-vector products. With ``slice_seed``, also the
    filter-normalized 2-D slice of the loss (:func:`landscape`, 15 x 15 points on 256 digits)."""
    from skipnet.experiments.degradation import train_one
    run = train_one(depth, residual, seed)
    net = run.net.eval().to(memory_format=torch.contiguous_format)
    ds = load_digits()
    t0 = time.process_time()
    c = hessian_extremes(net, ds.X_train[:n_examples], ds.y_train[:n_examples], steps=steps, seed=seed)
    row = {"depth": depth, "residual": residual, "seed": seed, "status": run.status, "train_loss": run.train_loss,
           "train_acc": run.train_acc, "n_params": c.n_params, "lam_max": c.lam_max, "lam_min": c.lam_min,
           "ratio": c.ratio, "err_max": c.err_max, "err_min": c.err_min, "lanczos_steps": steps,
           "cpu_hessian": round(time.process_time() - t0, 1), "seconds_train": round(run.seconds, 1)}
    if slice_seed is not None:
        land = landscape(net, run.label, coords=SLICE_COORDS, n_examples=256, seed=slice_seed)
        row["slice"] = {"coords": list(SLICE_COORDS), "surface": np.round(land.surface, 5).tolist()}
    return row


# -- the chapter's claims over seeds, through the inference protocol -----------------------------------------------
FAMILY_FIT_MIN_DEPTH = 20          # the plain steps barely move from 8 to 14 layers; their growth starts at 20
SMALL_LR_VS_LARS = "the best of SGD's smaller learning rates, seed by seed"


def _by_seed(rows, **match) -> dict[int, dict]:
    return {r["seed"]: r for r in rows if all(r[k] == v for k, v in match.items())}


def _paired(a: dict, b: dict, key) -> tuple[list[float], list[float]]:
    seeds = sorted(set(a) & set(b))
    return [key(a[s]) for s in seeds], [key(b[s]) for s in seeds]


def _seed_slopes(rows, threshold: float, residual: bool, depths) -> dict[int, float]:
    """Each seed's least-squares slope of ln(steps to ``threshold``) against depth over ``depths``, in doublings
    per 6 layers (seeds that reached the threshold at every one of those depths)."""
    key = f"{float(threshold):g}"
    steps: dict[int, dict[int, int]] = {}
    for r in rows:
        if r["residual"] == residual and r["depth"] in depths and r["steps_to"][key] is not None:
            steps.setdefault(r["seed"], {})[r["depth"]] = r["steps_to"][key]
    return {s: float(np.polyfit(list(depths), np.log([st[d] for d in depths]), 1)[0] * 6 / np.log(2))
            for s, st in sorted(steps.items()) if all(d in st for d in depths)}


def step_design(inter: Iterable[dict], ctrl: Iterable[dict]) -> dict[str, dict[int, dict]]:
    """The 2x2 design around the LARS-like steps, plain-56, one record a seed in each cell:

    * ``"sgd"``: imbalanced, SGD's steps (the baseline);
    * ``"small_lr"``: imbalanced, smaller steps: SGD at the smaller peak learning rates of the control sweep, for
      each seed the one that ends lowest (the choice most favourable to SGD);
    * ``"lars_matched"``: balanced, at SGD's total step (which the exploding lowest layers dominate);
    * ``"lars"``: balanced, small relative steps (LARS-like).

    ``inter``: rows of the ``highway_intervention`` sweep; ``ctrl``: rows of ``highway_intervention_control``."""
    inter, ctrl = list(inter), list(ctrl)
    small: dict[int, dict] = {}
    for r in ctrl:
        if r["mode"] == "sgd" and not r["residual"]:
            if r["seed"] not in small or r["epoch_loss"][-1] < small[r["seed"]]["epoch_loss"][-1]:
                small[r["seed"]] = r
    return {"sgd": _by_seed(inter, mode="sgd", residual=False), "small_lr": small,
            "lars_matched": _by_seed(ctrl, mode="lars_matched", residual=False),
            "lars": _by_seed(inter, mode="lars", residual=False)}


def steps_slopes(rows, threshold: float = 0.5) -> tuple[dict[int, float], dict[int, float], list[int]]:
    """(plain slopes, residual slopes, depths): each seed's growth of the steps to ``threshold`` with depth, in
    doublings per 6 layers, over the depths of the plain fit (from :data:`FAMILY_FIT_MIN_DEPTH` up, where every
    plain seed got there), for plain and residual networks alike."""
    from skipnet.experiments.degradation import convergence_fit
    depths = convergence_fit(rows, threshold, min_depth=FAMILY_FIT_MIN_DEPTH)["depths"]
    return _seed_slopes(rows, threshold, False, depths), _seed_slopes(rows, threshold, True, depths), depths


#: The stored sweeps the chapter's family reads (a confirmation reruns each on fresh seeds).
FAMILY_SWEEPS = ("highway_degradation", "highway_convergence", "highway_intervention", "highway_intervention_control",
                 "highway_hessian")


def chapter_family(tag: str | None = None):
    """The family of claims of *The gradient highway*, each a paired comparison over the stored seeds of a sweep
    (``tag=None``: the exploratory sweeps; ``tag="confirm"``: the confirmation on fresh seeds, same analysis).
    Returns a :class:`skipnet.inference.Family`; its ``table()`` goes on the chapter's evidence page."""
    from skipnet.inference import Family
    from skipnet.store import load_sweep

    fam = Family("The gradient highway")
    deg = load_sweep("highway_degradation", tag)["data"]
    a, b = _paired(_by_seed(deg, depth=56, residual=False), _by_seed(deg, depth=20, residual=False),
                   lambda r: np.log10(r["train_loss"]))
    fam.add("degradation", a, b, "plain-56 ends above plain-20 (log10 training loss, chapter budget)", unit="decades")
    a, b = _paired(_by_seed(deg, depth=56, residual=False), _by_seed(deg, depth=56, residual=True),
                   lambda r: np.log10(r["train_loss"]))
    fam.add("skip_56", a, b, "the skip's effect at 56 layers: plain-56 ends above residual-56 (log10 training "
            "loss, chapter budget)", unit="decades")
    conv = load_sweep("highway_convergence", tag)["data"]
    plain, res, depths = steps_slopes(conv, 0.5)
    a, b = _paired(plain, res, lambda v: v)
    fam.add("steps_slope", a, b, f"plain steps to a loss of 0.5 grow faster with depth than residual steps "
            f"({min(depths)} to {max(depths)} layers; slope in doublings per 6 layers, one fit a seed "
            "and network, plain minus residual)", unit="doublings")
    inter = load_sweep("highway_intervention", tag)["data"]
    sgd = _by_seed(inter, mode="sgd", residual=False)
    for mode, what in (("lars", "layer-wise relative steps (LARS-like)"),
                       ("equalize", "every layer's gradient scaled to the top layer's at the first step"),
                       ("project", "weights held at their initial norm")):
        a, b = _paired(_by_seed(inter, mode=mode, residual=False), sgd, lambda r: r["epoch_loss"][-1])
        if len(a) >= 2:
            fam.add(mode, a, b, f"plain-56 with {what} against SGD (training-batch loss, last epoch)")
    # the residual control: residual-56's imbalance at the first step is small (first/last 0.2-0.4 against
    # 400-1,300 in plain-56), so a gain there is not mostly the imbalance's
    a, b = _paired(_by_seed(inter, mode="lars", residual=True), _by_seed(inter, mode="sgd", residual=True),
                   lambda r: np.log10(r["epoch_loss"][-1]))
    if len(a) >= 2:
        fam.add("lars_residual", a, b, "residual-56 with layer-wise relative steps against SGD (log10 training-batch "
                "loss, last epoch)", unit="decades")
    # balanced, larger steps: relative steps equal across layers, the total gradient norm SGD's own (which the
    # exploding lowest layers dominate), so every upper layer's relative step rises
    ctrl = load_sweep("highway_intervention_control", tag)["data"]
    a, b = _paired(_by_seed(ctrl, mode="lars_matched", residual=False), sgd, lambda r: r["epoch_loss"][-1])
    if len(a) >= 2:
        fam.add("lars_matched", a, b, "plain-56 with equal relative steps at SGD's (explosion-dominated) total "
                "step against SGD "
                "(training-batch loss, last epoch)")
    # the missing cell: imbalanced, smaller steps (SGD at smaller peak learning rates; the most favourable to SGD)
    design = step_design(inter, ctrl)
    a, b = _paired(design["lars"], design["small_lr"], lambda r: r["epoch_loss"][-1])
    if len(a) >= 2:
        fam.add("lars_vs_small_lr", a, b, f"plain-56 with layer-wise relative steps against {SMALL_LR_VS_LARS} "
                "(training-batch loss, last epoch)")
    hess = load_sweep("highway_hessian", tag)["data"]
    a, b = _paired(_by_seed(hess, depth=20, residual=False), _by_seed(hess, depth=20, residual=True),
                   lambda r: np.log10(r["lam_max"]))
    fam.add("lam_max", a, b, "plain-20's largest Hessian eigenvalue above residual-20's (log10; not at matched "
            "training loss)", unit="decades")
    return fam
