"""Filter-normalized 2-D slices of the loss around trained weights (Li et al. 2018).

Two random directions ``d1, d2`` in weight space are drawn and rescaled *filter by filter*: each
output unit's slice of a direction (a conv filter or a row of a linear map) gets the norm of the
same slice of the trained weights. This removes the scale invariance that BatchNorm gives the
weights, so slices of different networks can be compared. One-dimensional parameters (biases,
norm gains and shifts) are not perturbed, as in the paper. The loss at ``(a, b)`` is that of the
weights ``theta + a d1 + b d2``, in eval mode. Chapter: *The gradient highway*.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["filter_normalized_direction", "loss_surface"]


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
    """One random direction, a tensor per parameter of ``model`` (in ``model.parameters()`` order)."""
    out = []
    for p in model.parameters():
        if p.dim() <= 1:
            out.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype)        # (C_out, ...)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)            # (C_out,)
        w_norm = p.detach().flatten(1).norm(dim=1)                    # (C_out,)
        scale = (w_norm / d_norm).reshape(-1, *([1] * (p.dim() - 1)))
        out.append(d * scale)
    return out


@torch.no_grad()
def loss_surface(model: nn.Module, X: torch.Tensor, y: torch.Tensor, coords: np.ndarray,
                 seed: int = 0, progress=None) -> np.ndarray:
    """Mean cross-entropy on ``(X, y)`` over the grid ``coords x coords`` -> (n, n) array, row = d2.

    ``model`` is left untouched (a copy is perturbed). ``progress(fraction, text, partial)`` reports
    progress and may return ``False`` to stop (the rest of the grid stays NaN).
    """
    coords = np.asarray(coords, dtype=np.float64)
    net = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(int(seed))
    d1 = filter_normalized_direction(net, gen)
    d2 = filter_normalized_direction(net, gen)
    theta = [p.detach().clone() for p in net.parameters()]
    surface = np.full((coords.size, coords.size), np.nan)
    for i, b in enumerate(coords):
        for j, a in enumerate(coords):
            for p, t, u, v in zip(net.parameters(), theta, d1, d2):
                p.copy_(t + float(a) * u + float(b) * v)
            logits = net(X)
            surface[i, j] = F.cross_entropy(logits, y).item()
        if progress is not None and progress((i + 1) / coords.size, f"row {i + 1}/{coords.size}", surface) is False:
            break
    return surface
