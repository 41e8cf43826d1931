"""Shattered gradients (Balduzzi et al. 2017): how smooth ``df/dx`` is along a 1-D input sweep.

A network with one scalar input and one scalar output is evaluated on a sweep of evenly spaced
inputs (:func:`skipnet.data.input_sweep`). In a shallow or residual network the derivative changes
slowly from one input to the next (autocorrelation near 1); in a deep plain network with
BatchNorm it looks like white noise (autocorrelation near 0). Chapter: *The gradient highway*.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from skipnet.runtime import train_mode as _mode

__all__ = ["input_gradients", "autocorrelation"]


def input_gradients(model: nn.Module, x: torch.Tensor, train_mode: bool = True) -> np.ndarray:
    """``d f / d x_i`` for every input of the sweep ``x`` (shape (n, 1)) -> (n,) array.

    ``train_mode=True`` (default) uses BatchNorm's statistics over the whole sweep, as a training
    step would; the derivative is that of the summed output, so it includes the (small, order 1/n)
    paths through the batch statistics. Without BatchNorm this is exactly the per-input derivative.
    """
    if x.dim() != 2 or x.shape[1] != 1:
        raise ValueError(f"x must be an (n, 1) sweep of scalar inputs, got shape {tuple(x.shape)}")
    with _mode(model, train_mode):
        xs = x.detach().clone().requires_grad_(True)
        out = model(xs)                                                # (n, 1)
        (g,) = torch.autograd.grad(out.sum(), xs)
    return g[:, 0].double().numpy()


def autocorrelation(g: np.ndarray, lag: int = 1) -> float:
    """Normalized autocorrelation of the sequence ``g`` at ``lag``: 1 smooth, 0 white noise."""
    g = np.asarray(g, dtype=np.float64)
    if not 1 <= lag < g.size:
        raise ValueError(f"lag must be between 1 and {g.size - 1}, got {lag}")
    c = g - g.mean()
    denom = float((c * c).sum())
    if denom == 0.0:
        return 1.0                                                     # a constant derivative is perfectly smooth
    return float((c[:-lag] * c[lag:]).sum() / denom)
