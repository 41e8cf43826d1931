"""The chi phase diagram of the chapter *The gradient highway*: the gradient ratio over weight gain and depth,
measured on deep MLPs at initialization (:func:`chi_network`, :func:`chi_phase`), beside the mean-field
prediction of :mod:`skipnet.probes.meanfield` (:func:`chi_predictions`).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch

from skipnet.checks import check_choice, check_float, check_int, check_seed
from skipnet.experiments.highway import PROFILE_MODEL, mlp_batch
from skipnet.models import ModelConfig, build_model
from skipnet.probes import meanfield
from skipnet.probes.jacobian import stream_gradients
from skipnet.train import Progress

__all__ = ["CHI_ACTIVATIONS", "CHI_VARIANTS", "CHI_GAINS", "CHI_DEPTHS", "CHI_WIDTH", "CHI_EXAMPLES", "MAX_CHI_BLOCKS",
           "MAX_CHI_WIDTH", "chi_config", "stem_variance", "chi_network", "chi_predictions", "chi_phase"]

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
    X, _ = mlp_batch(n_examples, torch.float64)
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
    X, y = mlp_batch(n_examples, torch.float64)
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
