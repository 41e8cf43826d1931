"""Measurements that carry the intuition, starting with the gradient reaching each layer.

Chapters: the opening chapter and *The gradient highway* (per-layer gradient norms).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.runtime import train_mode as _mode

__all__ = ["layer_grad_norms", "layer_and_stream_grad_norms", "first_last_ratio"]


def layer_grad_norms(model: nn.Module, X: torch.Tensor, y: torch.Tensor, train_mode: bool = True) -> np.ndarray:
    """Norm of the loss gradient w.r.t. each main-path weight layer, in forward order (stem ... head).

    The loss is the mean cross-entropy of ``model(X)`` against labels ``y``. ``train_mode=True``
    (the default) measures what the first training step sees: BatchNorm uses batch statistics.
    The model's own ``.grad`` fields are left untouched.
    """
    layers = [w for _, w in model.main_layers()]
    with _mode(model, train_mode):
        logits = model(X)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        grads = torch.autograd.grad(loss, [w.weight for w in layers])
    return np.array([g.norm().item() for g in grads], dtype=np.float64)


def layer_and_stream_grad_norms(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                                train_mode: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`layer_grad_norms` and the norms of ``dLoss/dx_l`` at every block input and at the last block's output
    (the stream, walked with ``blocks_forward``), from ONE backward pass. Same loss and mode as
    :func:`layer_grad_norms`; the model's ``.grad`` fields are left untouched."""
    layers = [w for _, w in model.main_layers()]
    with _mode(model, train_mode):
        hs = model.blocks_forward(model.embed(X))
        logits = model.readout(hs[-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        grads = torch.autograd.grad(loss, [w.weight for w in layers] + list(hs))
    norms = np.array([g.norm().item() for g in grads], dtype=np.float64)
    return norms[:len(layers)], norms[len(layers):]


def first_last_ratio(norms: np.ndarray) -> float:
    """Gradient norm at the first weight layer over the last: < 1 vanishing toward the input, > 1 exploding."""
    norms = np.asarray(norms, dtype=np.float64)
    if norms.size < 2:
        raise ValueError(f"need at least two layers, got {norms.size}")
    return float(norms[0] / norms[-1])
