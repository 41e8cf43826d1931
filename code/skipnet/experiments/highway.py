"""Experiments of the chapter *The gradient highway*: what flows through a skip connection, and when.

Pure functions of configuration and seed, returning dataclasses, arrays or plain dicts (no plotting, no I/O):

* :func:`gradient_profile` / :func:`profile_sweep`: per-layer weight-gradient norms at init and the stream
  (activation) gradient at every block (plain vs residual MLPs with sigmoid, ReLU and ReLU + BatchNorm), and
  :func:`cnn_ratios` for the CIFAR-style CNN.
* :func:`jacobian_spectra`: singular values of the block stack's input-output Jacobian (one fixed digit).
* :func:`identity_alignment`: how much of each block's gradient is the top gradient itself, beside a
  shuffled-example reference (:func:`permuted_baseline`).
* :func:`shattered`: ``df/dx`` along a 1-D sweep and its autocorrelation (Balduzzi et al. 2017).

The chi phase diagram is in :mod:`skipnet.experiments.highway_chi`; what is measured on trained networks (the
training race, the loss landscape, the Hessian) in :mod:`skipnet.experiments.highway_trained`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from skipnet.checks import check_int
from skipnet.data import input_sweep, load_digits
from skipnet.experiments.degradation import DEGRADATION_MODEL
from skipnet.models import ModelConfig, ResidualNet, build_model
from skipnet.probes.gradients import first_last_ratio, layer_and_stream_grad_norms
from skipnet.probes.jacobian import identity_share, jacobian_singular_values, stream_gradients
from skipnet.probes.shattering import autocorrelation, input_gradients

__all__ = [
    "PROFILE_MODEL", "PROFILE_VARIANTS", "Profile", "gradient_profile", "ProfileSweep", "profile_sweep", "profile_pair",
    "CNN_DEPTHS", "cnn_ratios", "JACOBIAN_VARIANTS", "JacobianSpectra", "jacobian_spectra",
    "identity_alignment", "permuted_baseline", "mlp_batch",
    "SHATTER_MODEL", "SHATTER_VARIANTS", "Shattered", "shattered",
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
CNN_DEPTHS = tuple(range(8, 111, 6))


def mlp_batch(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` training digits, flattened, in ``dtype``."""
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
        X, y = mlp_batch(n_examples, dtype)
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
            cfg = DEGRADATION_MODEL.with_(depth=d, width=width, residual=residual)
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
    X, y = mlp_batch(n_examples, torch.float64)
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
    bn_part = fields.pop("bn_part", None)                  # "center" or "scale": half of each BatchNorm only
    net = build_model(base.with_(n_blocks=n_blocks, **fields), seed=seed)
    if bn_part is not None:
        for name, m in list(net.named_modules()):
            if isinstance(m, torch.nn.BatchNorm1d):
                parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
                setattr(parent, name.rsplit(".", 1)[-1], _PartialNorm(bn_part))
    if bias_std:
        g = torch.Generator().manual_seed(100 + seed)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.Linear) and m.bias is not None and m is not net.head:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * bias_std)
    return net


class _PartialNorm(torch.nn.Module):
    """One half of BatchNorm over the batch (the sweep): ``"center"`` subtracts each unit's batch mean only,
    ``"scale"`` divides by each unit's batch root mean square only (a control of which half shatters)."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in ("center", "scale"):
            raise ValueError(f"bn_part must be 'center' or 'scale', got {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "center":
            return x - x.mean(0, keepdim=True)
        return x / (x.pow(2).mean(0, keepdim=True) + 1e-5).sqrt()
