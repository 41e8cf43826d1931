"""Experiments of the chapter *The gradient highway*: what flows through a skip connection, and when.

Pure functions of configuration and seed, returning dataclasses, arrays or plain dicts (no plotting, no I/O):

* :func:`gradient_profile` / :func:`profile_sweep`: per-layer weight-gradient norms at init and the stream
  (activation) gradient at every block (plain vs residual MLPs with sigmoid, ReLU and ReLU + BatchNorm), and
  :func:`cnn_ratios` for the CIFAR-style CNN.
* :func:`jacobian_spectra`: singular values of the block stack's input-output Jacobian (one fixed digit).
* :func:`identity_alignment`: how much of each block's gradient is the top gradient itself, beside a
  shuffled-example reference (:func:`permuted_baseline`).
* :func:`chi_network` / :func:`chi_phase`: the chi phase diagram (gradient ratio over weight gain and depth) with the
  mean-field prediction of :mod:`skipnet.probes.meanfield`.
* :func:`shattered`: ``df/dx`` along a 1-D sweep and its autocorrelation (Balduzzi et al. 2017).
* :func:`training_race`: plain vs residual CNNs trained side by side (built on
  :func:`skipnet.experiments.degradation.race`), with per-layer gradients recorded.
* :func:`landscape` and :func:`hessian_row`: a filter-normalized 2-D loss slice and the Hessian's extreme
  eigenvalues at trained weights (Li et al. 2018).

Over 300 lines because it follows the chapter section by section; each experiment is a short function of its own.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from skipnet.checks import check_choice, check_float, check_int, check_seed
from skipnet.data import input_sweep, load_digits
from skipnet.experiments.degradation import DEFAULT_MODEL, DEFAULT_TRAIN, race
from skipnet.history import Run
from skipnet.models import ModelConfig, ResidualNet, build_model
from skipnet.probes import meanfield
from skipnet.probes.gradients import first_last_ratio, layer_and_stream_grad_norms
from skipnet.probes.hessian import hessian_extremes
from skipnet.probes.jacobian import identity_share, jacobian_singular_values, stream_gradients
from skipnet.probes.landscape import loss_surface
from skipnet.probes.shattering import autocorrelation, input_gradients
from skipnet.train import Progress

__all__ = [
    "PROFILE_MODEL", "PROFILE_VARIANTS", "Profile", "gradient_profile", "ProfileSweep", "profile_sweep", "profile_pair",
    "CNN_DEPTHS", "cnn_ratios", "grad_ratio", "JACOBIAN_VARIANTS", "JacobianSpectra", "jacobian_spectra",
    "identity_alignment", "permuted_baseline",
    "CHI_ACTIVATIONS", "CHI_VARIANTS", "CHI_GAINS", "CHI_DEPTHS", "CHI_WIDTH", "CHI_EXAMPLES", "MAX_CHI_BLOCKS",
    "chi_config", "stem_variance", "chi_network", "chi_phase",
    "SHATTER_MODEL", "SHATTER_VARIANTS", "Shattered", "shattered", "RACE_VARIANTS", "Race", "training_race",
    "Landscape", "landscape", "SLICE_COORDS", "HESSIAN_NETS", "HESSIAN_EXAMPLES", "LANCZOS_STEPS", "hessian_row",
]

# Digits MLPs, one weight layer a block, so that ``n_blocks`` counts hidden layers.
PROFILE_MODEL = ModelConfig(arch="mlp", n_blocks=50, width=64, block_layers=1, in_shape=(64,), residual=False,
                            activation="relu", norm="none")
PROFILE_VARIANTS: dict[str, dict] = {
    "plain sigmoid": dict(residual=False, activation="sigmoid", norm="none"),
    "residual sigmoid": dict(residual=True, activation="sigmoid", norm="none"),
    "plain ReLU": dict(residual=False, activation="relu", norm="none"),
    "residual ReLU": dict(residual=True, activation="relu", norm="none"),
    "plain ReLU + BN": dict(residual=False, activation="relu", norm="batch"),
    "residual ReLU + BN": dict(residual=True, activation="relu", norm="batch"),
}
JACOBIAN_VARIANTS: dict[str, dict] = {
    "plain sigmoid": PROFILE_VARIANTS["plain sigmoid"],
    "residual sigmoid": PROFILE_VARIANTS["residual sigmoid"],
    "plain ReLU": PROFILE_VARIANTS["plain ReLU"],
    "residual ReLU": PROFILE_VARIANTS["residual ReLU"],
    "residual ReLU, branch/sqrt(L)": dict(residual=True, activation="relu", norm="none", branch_scale="1/sqrt(L)"),
}
# Balduzzi et al. (2017): scalar in, scalar out, width 200, BatchNorm; blocks relu(x + BN(W x)).
SHATTER_MODEL = ModelConfig(arch="mlp", n_blocks=16, width=200, block_layers=1, placement="post", norm="batch",
                            in_shape=(1,), n_classes=1, residual=False)
SHATTER_VARIANTS: dict[str, dict] = {
    "plain + BN": dict(residual=False, norm="batch"),
    "residual + BN": dict(residual=True, norm="batch"),
    "plain, no norm": dict(residual=False, norm="none"),
    "plain, random biases": dict(residual=False, norm="none", bias_std=1.0),
}
RACE_VARIANTS: dict[str, dict] = {
    "BN + ReLU": dict(norm="batch", activation="relu"),
    "no norm + ReLU": dict(norm="none", activation="relu"),
    "BN + sigmoid": dict(norm="batch", activation="sigmoid"),
}
CNN_DEPTHS = tuple(range(8, 111, 6))


def _mlp_batch(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_digits(flatten=True)
    return ds.X_train[:n].to(dtype), ds.y_train[:n]                   # (n, 64), (n,)


# -- gradient profiles at initialization --------------------------------------------------------
@dataclass
class Profile:
    """Per-layer weight-gradient norms of one network at init (stem first, head last), and the norms of the
    gradient with respect to the stream at each block's input and at the last block's output."""

    label: str
    n_blocks: int
    seed: int
    names: list[str]
    norms: np.ndarray
    stream_norms: np.ndarray | None = None

    @property
    def ratio(self) -> float:
        """First (stem) over last (head) layer: < 1 vanishing toward the input, > 1 exploding."""
        return first_last_ratio(self.norms)

    @property
    def act_ratio(self) -> float:
        """``||dL/dx_0|| / ||dL/dx_L||``: the gradient at the stream entering the first block over the one at the
        last block's output. Unlike :attr:`ratio` it is not multiplied by the size of each layer's input
        (``||dL/dW_l|| ~ ||dL/dh_l|| ||x_l||``), which can hide a vanishing or exploding gradient."""
        return float(self.stream_norms[0] / self.stream_norms[-1])


def gradient_profile(cfg: ModelConfig, seed: int = 0, n_examples: int = 256, label: str = "",
                     float64: bool = True) -> Profile:
    """Weight-gradient norm of every main-path layer on one batch of digits, at initialization.

    ``float64`` (default) keeps a vanishing sigmoid profile from underflowing float32 (1e-38).
    """
    n_train = len(load_digits().X_train)
    if not 2 <= n_examples <= n_train:
        raise ValueError(f"n_examples must be between 2 and {n_train}, got {n_examples}")
    net = build_model(cfg, seed=seed)
    dtype = torch.float64 if float64 else torch.float32
    net = net.to(dtype)
    if cfg.arch == "mlp":
        X, y = _mlp_batch(n_examples, dtype)
    else:
        ds = load_digits()
        X, y = ds.X_train[:n_examples].to(dtype), ds.y_train[:n_examples]
    norms, stream = layer_and_stream_grad_norms(net, X, y)
    return Profile(label or _describe(cfg), cfg.n_blocks, seed, [n for n, _ in net.main_layers()], norms, stream)


def _describe(cfg: ModelConfig) -> str:
    norm = {"none": "", "batch": " + BN", "layer": " + LN"}[cfg.norm]
    act = {"relu": "ReLU", "gelu": "GELU"}.get(cfg.activation, cfg.activation)
    return f"{'residual' if cfg.residual else 'plain'} {act}{norm}"


@dataclass
class ProfileSweep:
    """Profiles of several variants over numbers of blocks and seeds. ``ratios[label]``: (n_blocks, seeds) array."""

    n_blocks: list[int]
    seeds: list[int]
    ratios: dict[str, np.ndarray]
    profiles: dict[str, list[Profile]]      # first seed only, one a depth
    act_ratios: dict[str, np.ndarray] | None = None

    def geomean(self, label: str, activations: bool = False) -> np.ndarray:
        """Geometric mean over seeds of the first/last weight-gradient ratio (or, with ``activations``, of the
        stream-gradient ratio :attr:`Profile.act_ratio`), one a number of blocks (0 stays 0)."""
        r = (self.act_ratios if activations else self.ratios)[label]
        with np.errstate(divide="ignore"):
            return np.exp(np.log(r).mean(axis=1))


def profile_sweep(n_blocks: Iterable[int] = (10, 25, 50, 100), seeds: Iterable[int] = (0, 1, 2),
                  variants: dict[str, dict] = PROFILE_VARIANTS, base: ModelConfig = PROFILE_MODEL,
                  n_examples: int = 256) -> ProfileSweep:
    """:func:`gradient_profile` for every (variant, number of blocks, seed)."""
    depths, seeds = list(n_blocks), list(seeds)
    ratios, acts, profiles = {}, {}, {}
    for label, fields in variants.items():
        r, a = np.zeros((len(depths), len(seeds))), np.zeros((len(depths), len(seeds)))
        profiles[label] = []
        for i, d in enumerate(depths):
            for j, s in enumerate(seeds):
                p = gradient_profile(base.with_(n_blocks=d, **fields), s, n_examples, label)
                r[i, j], a[i, j] = p.ratio, p.act_ratio
                if j == 0:
                    profiles[label].append(p)
        ratios[label], acts[label] = r, a
    return ProfileSweep(depths, seeds, ratios, profiles, acts)


def profile_pair(n_blocks: int = 50, activation: str = "relu", norm: str = "none", residual: bool = False,
                 seed: int = 0, max_blocks: int = 200) -> dict[str, Profile]:
    """The chosen MLP's profile at init and its twin with the skip toggled (chosen first): ``{label: Profile}``."""
    check_int("n_blocks", n_blocks, 1, max_blocks)
    out = {}
    for r in (residual, not residual):
        p = gradient_profile(PROFILE_MODEL.with_(n_blocks=n_blocks, activation=activation, norm=norm, residual=r),
                             seed=seed)
        out[p.label] = p
    return out


def cnn_ratios(depths: Iterable[int] = (20, 56), seeds: Iterable[int] = (0, 1, 2), width: int = 8,
               n_examples: int = 128) -> dict[str, dict[str, np.ndarray]]:
    """First/last gradient ratios of the BN + ReLU CNN at init (width 8: the trained one), weights and stream:
    ``{"plain-56": {"weight": (seeds,) array, "activation": (seeds,) array}, ...}``."""
    out = {}
    for d in depths:
        for residual in (False, True):
            cfg = DEFAULT_MODEL.with_(depth=d, width=width, residual=residual)
            ps = [gradient_profile(cfg, s, n_examples, float64=False) for s in seeds]
            out[cfg.label] = {"weight": np.array([p.ratio for p in ps]),
                              "activation": np.array([p.act_ratio for p in ps])}
    return out


# -- the Jacobian of the stack -------------------------------------------------------------------
@dataclass
class JacobianSpectra:
    """Singular values of ``d x_L / d x_0``: ``values[label][i][j]`` for ``n_blocks[i]``, seed j (descending)."""

    n_blocks: list[int]
    seeds: list[int]
    values: dict[str, list[list[np.ndarray]]]

    def within(self, label: str, low: float = 0.1, high: float = 10.0) -> np.ndarray:
        """Share of singular values in [low, high], as a (n_blocks, seeds) array."""
        return np.array([[np.mean((s >= low) & (s <= high)) for s in row] for row in self.values[label]])


def jacobian_spectra(n_blocks: Iterable[int] = (1, 5, 10, 25, 50), seeds: Iterable[int] = (0, 1, 2),
                     variants: dict[str, dict] = JACOBIAN_VARIANTS, base: ModelConfig = PROFILE_MODEL,
                     digit: int = 0) -> JacobianSpectra:
    """Jacobian singular values of each variant's block stack at init, at ONE test digit (``X_test[digit]``) for
    every seed, so that the seeds vary the weights alone."""
    depths, seeds = list(n_blocks), list(seeds)
    x = load_digits(flatten=True).X_test[digit].double()
    values = {}
    for label, fields in variants.items():
        values[label] = [[jacobian_singular_values(build_model(base.with_(n_blocks=d, **fields), seed=s).double(), x)
                          for s in seeds] for d in depths]
    return JacobianSpectra(depths, seeds, values)


def identity_alignment(n_blocks: int = 50, seeds: Iterable[int] = (0, 1, 2), variants: dict[str, dict] = PROFILE_VARIANTS,
                       base: ModelConfig = PROFILE_MODEL, n_examples: int = 256) -> dict[str, dict[str, np.ndarray]]:
    """For each variant: ``cos`` and ``norm_ratio`` (seeds, blocks) arrays of :func:`~skipnet.probes.jacobian.identity_share`."""
    X, y = _mlp_batch(n_examples, torch.float64)
    out = {}
    for label, fields in variants.items():
        cos, ratio, base_cos = [], [], []
        for s in seeds:
            net = build_model(base.with_(n_blocks=n_blocks, **fields), seed=s).double()
            c, r = identity_share(net, X, y)
            cos.append(c)
            ratio.append(r)
            base_cos.append(permuted_baseline(net, X, y, seed=s))
        out[label] = {"cos": np.array(cos), "norm_ratio": np.array(ratio), "baseline": np.array(base_cos)}
    return out


def permuted_baseline(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, seed: int = 0) -> np.ndarray:
    """|cosine| between each block input's gradient and the top gradient with the batch's EXAMPLES permuted:
    what the cosine of :func:`identity_alignment` is for gradients that are unrelated example by example but
    share the head's low-dimensional structure (each example's top gradient lies in the span of the 10-class
    head). A cosine at this level says nothing ties the two gradients together."""
    grads = stream_gradients(model, X, y)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(10_000 + seed))
    top = grads[-1][perm].flatten()
    return np.array([abs(torch.nn.functional.cosine_similarity(g.flatten(), top, dim=0).item()) for g in grads[:-1]])


# -- shattered gradients ---------------------------------------------------------------------------
@dataclass
class Shattered:
    """``autocorr[label]``: (n_blocks, seeds) lag-1 autocorrelation; ``gradients[label][i]``: df/dx at
    ``n_blocks[i]`` blocks, first seed."""

    n_blocks: list[int]
    seeds: list[int]
    x: np.ndarray
    autocorr: dict[str, np.ndarray]
    gradients: dict[str, list[np.ndarray]]


def shattered(n_blocks: Iterable[int] = (1, 2, 4, 8, 16, 32), seeds: Iterable[int] = (0, 1, 2, 3, 4),
              variants: dict[str, dict] = SHATTER_VARIANTS, base: ModelConfig = SHATTER_MODEL,
              n_inputs: int = 256) -> Shattered:
    """df/dx over 256 inputs on [-2, 2] for each variant, number of blocks and seed, at initialization."""
    depths, seeds = list(n_blocks), list(seeds)
    x = input_sweep(n_inputs)                                         # (n, 1)
    ac, grads = {}, {}
    for label, fields in variants.items():
        ac[label] = np.zeros((len(depths), len(seeds)))
        grads[label] = []
        for i, d in enumerate(depths):
            for j, s in enumerate(seeds):
                g = input_gradients(_shatter_net(base, d, fields, s), x)
                ac[label][i, j] = autocorrelation(g)
                if j == 0:
                    grads[label].append(g)
    return Shattered(depths, seeds, x[:, 0].numpy(), ac, grads)


def _shatter_net(base: ModelConfig, n_blocks: int, fields: dict, seed: int) -> ResidualNet:
    """The network of a shattering variant; ``bias_std`` (not a model field) draws every hidden layer's bias from
    N(0, bias_std^2) (seeded by ``100 + seed``): fixed random thresholds, without BatchNorm."""
    fields = dict(fields)
    bias_std = fields.pop("bias_std", 0.0)
    net = build_model(base.with_(n_blocks=n_blocks, **fields), seed=seed)
    if bias_std:
        g = torch.Generator().manual_seed(100 + seed)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.Linear) and m.bias is not None and m is not net.head:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * bias_std)
    return net


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
        return DEFAULT_MODEL.with_(depth=self.depth, width=self.width, residual=key == "residual",
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
    model = DEFAULT_MODEL.with_(width=width, **RACE_VARIANTS[variant])
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


# -- the chi phase diagram ----------------------------------------------------------------------------
CHI_ACTIVATIONS = meanfield.ACTIVATIONS
CHI_VARIANTS = meanfield.VARIANTS
CHI_GAINS = tuple(float(g) for g in np.round(np.geomspace(0.25, 16, 19), 4))
CHI_DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128)
CHI_WIDTH = 64
CHI_EXAMPLES = 256
MAX_CHI_BLOCKS = 256
MAX_CHI_WIDTH = 4096
_DEFAULT_GAIN = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "sigmoid": 1.0}   # He init; Glorot x PyTorch's gain


def chi_config(activation: str, variant: str, n_blocks: int, width: int = CHI_WIDTH) -> ModelConfig:
    """The digits MLP of the phase diagram: width 64 (or ``width``), one weight layer a block, pre-activation
    (``x + W phi(x)`` or, plain, ``W phi(x)``), no normalization, zero biases."""
    check_choice("activation", activation, CHI_ACTIVATIONS)
    check_choice("variant", variant, CHI_VARIANTS)
    check_int("n_blocks", n_blocks, 1, MAX_CHI_BLOCKS)
    check_int("width", width, 1, MAX_CHI_WIDTH)
    return PROFILE_MODEL.with_(n_blocks=n_blocks, width=width, activation=activation, norm="none",
                               residual=variant != "plain",
                               branch_scale="1/sqrt(L)" if variant == "branch/sqrt(L)" else 1.0)


def stem_variance(activation: str, n_examples: int = CHI_EXAMPLES, width: int = CHI_WIDTH) -> float:
    """Mean-field variance of the stream entering the first block: the stem's weight variance (its default
    init: He, ``2 / 64``, for ReLU; Glorot, ``gain^2 * 2 / (64 + width)``, for sigmoid and tanh) times the mean
    squared norm of a digit."""
    X, _ = _mlp_batch(n_examples, torch.float64)
    fan_in = X.shape[1]
    var_w = 2.0 / fan_in if activation == "relu" else _DEFAULT_GAIN[activation] ** 2 * 2.0 / (fan_in + width)
    return var_w * float((X ** 2).sum(1).mean())


def chi_network(activation: str = "tanh", variant: str = "plain", gain: float = 1.0, n_blocks: int = 32,
                seed: int = 0, n_examples: int = CHI_EXAMPLES, width: int = CHI_WIDTH) -> dict:
    """One network of the phase diagram at initialization: every block's weights drawn with standard deviation
    ``gain / sqrt(width)`` (the stem and head keep their default init), float64, one batch of training digits.
    The mean field is the limit of infinite width; ``width`` (64 in the diagram) lets one watch it approach.

    Returns ``log_ratio`` (measured ``log10 ||dL/dx_0|| / ||dL/dx_L||``, ``None`` if not finite), ``profile``
    (``log10 ||dL/dx_l|| / ||dL/dx_L||`` for every block input and the output), the mean-field ``predicted``
    profile (:func:`skipnet.probes.meanfield.predicted_profile`) and ``chi``, the fixed-point chi of a plain
    stack at this gain.
    """
    check_float("gain", gain, 0.01, 100.0)
    check_seed(seed)
    cfg = chi_config(activation, variant, n_blocks, width)
    net = build_model(cfg, seed=seed).double()
    factor = gain / _DEFAULT_GAIN[activation]
    with torch.no_grad():
        for name, layer in net.main_layers():
            if name.startswith("block"):
                layer.weight.mul_(factor)
    X, y = _mlp_batch(n_examples, torch.float64)
    norms = np.array([g.norm().item() for g in stream_gradients(net, X, y)])
    with np.errstate(divide="ignore", invalid="ignore"):
        profile = np.log10(norms) - np.log10(norms[-1])
    ok = np.isfinite(profile[0])
    return {"log_ratio": float(profile[0]) if ok else None, "profile": profile,
            "predicted": meanfield.predicted_profile(activation, gain, n_blocks, variant,
                                                     stem_variance(activation, n_examples, width)),
            "chi": meanfield.fixed_point_chi(activation, gain)}


def chi_predictions(gains: Iterable[float] = CHI_GAINS, n_blocks: Iterable[int] = CHI_DEPTHS,
                    activations: Iterable[str] = CHI_ACTIVATIONS, variants: Iterable[str] = CHI_VARIANTS) -> dict:
    """The mean-field half of :func:`chi_phase`, no network built: ``{"critical_gain": {act: g},
    "predicted": {"tanh, plain": [depth][gain], ...}}``, each cell
    :func:`skipnet.probes.meanfield.predicted_log_ratio` from the stem's variance (a few seconds)."""
    gains, depths = [float(g) for g in gains], list(n_blocks)
    predicted = {}
    for act in activations:
        q0 = stem_variance(act)
        for var in variants:
            predicted[f"{act}, {var}"] = [[meanfield.predicted_log_ratio(act, g, d, var, q0) for g in gains]
                                          for d in depths]
    return {"critical_gain": {a: meanfield.critical_gain(a) for a in activations}, "predicted": predicted}


def chi_phase(seeds: Iterable[int] = (0, 1, 2), gains: Iterable[float] = CHI_GAINS,
              n_blocks: Iterable[int] = CHI_DEPTHS, activations: Iterable[str] = CHI_ACTIVATIONS,
              variants: Iterable[str] = CHI_VARIANTS, progress: Progress | None = None) -> dict:
    """The phase diagram: measured and mean-field ``log10 ||dL/dx_0|| / ||dL/dx_L||`` over (gain, depth) for each
    activation and variant. Returns plain data: ``{"gains", "n_blocks", "seeds", "critical_gain": {act: g},
    "panels": {"tanh, plain": {"measured": [depth][gain][seed], "predicted": [depth][gain]}, ...}}``
    (``None`` where a measurement was not finite; ``predicted`` from :func:`chi_predictions`)."""
    gains, depths, seeds = [float(g) for g in gains], list(n_blocks), list(seeds)
    activations, variants = list(activations), list(variants)
    panels, done, total = {}, 0, len(activations) * len(variants) * len(depths)
    for act in activations:
        for var in variants:
            measured = []
            for d in depths:
                measured.append([[chi_network(act, var, g, d, s)["log_ratio"] for s in seeds] for g in gains])
                done += 1
                if progress is not None and progress(done / total, f"{act}, {var}, {d} blocks", None) is False:
                    break
            panels[f"{act}, {var}"] = {"measured": measured}
    theory = chi_predictions(gains, depths, activations, variants)
    for key, panel in panels.items():
        panel["predicted"] = theory["predicted"][key][:len(panel["measured"])]
    return {"gains": gains, "n_blocks": depths, "seeds": seeds, "critical_gain": theory["critical_gain"],
            "panels": panels}


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
