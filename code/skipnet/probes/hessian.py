"""Curvature of the loss at trained weights: the Hessian's extreme eigenvalues by Hessian-vector products.

Li et al. (2018) measure how convex a minimum is by ``|lambda_min / lambda_max|`` of the Hessian of the training
loss (their code: eigenvalues by Lanczos on Hessian-vector products, weights with more than one dimension only,
the network in eval mode). We do the same: :func:`hvp_operator` builds ``v -> H v`` by double backpropagation,
and :func:`lanczos_extremes` runs ``k`` Lanczos steps with full reorthogonalization and returns the extreme Ritz
values with their residual bounds (``|beta_k s_k|``: each bounds the distance from its Ritz value to a true
eigenvalue). A near-convex minimum has ``|lambda_min / lambda_max|`` near 0; a large ratio means strong negative
curvature beside the positive one. Chapter: *The gradient highway*.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.checks import check_int
from skipnet.runtime import eval_mode

__all__ = ["hvp_operator", "lanczos_extremes", "Curvature", "hessian_extremes"]


def hvp_operator(model: nn.Module, X: torch.Tensor, y: torch.Tensor
                 ) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """``(hvp, n)``: ``hvp(v)`` is the Hessian of the mean cross-entropy of ``model(X)`` (eval mode) with respect to
    the parameters with more than one dimension, times the flat float64 vector ``v`` of length ``n``."""
    params = [p for p in model.parameters() if p.dim() > 1 and p.requires_grad]
    n = sum(p.numel() for p in params)
    with eval_mode(model):
        logits = model(X)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        grads = torch.autograd.grad(loss, params, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        parts, i = [], 0
        for p in params:
            parts.append(v[i:i + p.numel()].view_as(p).to(p.dtype))
            i += p.numel()
        hv = torch.autograd.grad(grads, params, grad_outputs=parts, retain_graph=True)
        return torch.cat([g.reshape(-1) for g in hv]).double()
    return hvp, n


def lanczos_extremes(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, steps: int = 40, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` Lanczos iterations of the symmetric operator ``matvec`` on R^n from a seeded random start, with
    full reorthogonalization. Returns the Ritz values (ascending) and their residual bounds."""
    steps = check_int("steps", steps, 2, n)
    gen = torch.Generator().manual_seed(int(seed))
    Q = torch.zeros(steps + 1, n, dtype=torch.float64)
    q = torch.randn(n, generator=gen, dtype=torch.float64)
    Q[0] = q / q.norm()
    alpha, beta = [], []
    for j in range(steps):
        w = matvec(Q[j])
        alpha.append(float(w @ Q[j]))
        for _ in range(2):                                      # twice is enough (Kahan's "twice is enough")
            w = w - Q[:j + 1].T @ (Q[:j + 1] @ w)
        b = float(w.norm())
        beta.append(b)
        if b < 1e-12:                                           # an invariant subspace: the Ritz values are exact
            break
        Q[j + 1] = w / b
    k = len(alpha)
    T = np.diag(alpha) + np.diag(beta[:k - 1], 1) + np.diag(beta[:k - 1], -1)
    values, S = np.linalg.eigh(T)
    return values, np.abs(beta[k - 1] * S[-1, :])


@dataclass
class Curvature:
    """The extreme eigenvalues of the loss Hessian and their Lanczos residual bounds."""

    lam_max: float
    lam_min: float
    err_max: float
    err_min: float
    n_params: int

    @property
    def ratio(self) -> float:
        """``|lambda_min / lambda_max|`` (Li et al. 2018): near 0 for a nearly convex neighbourhood."""
        return abs(self.lam_min / self.lam_max)


def hessian_extremes(model: nn.Module, X: torch.Tensor, y: torch.Tensor, steps: int = 40, seed: int = 0) -> Curvature:
    """:class:`Curvature` of the mean cross-entropy of ``model`` on ``(X, y)`` at its current weights."""
    hvp, n = hvp_operator(model, X, y)
    values, resid = lanczos_extremes(hvp, n, steps, seed)
    return Curvature(float(values[-1]), float(values[0]), float(resid[-1]), float(resid[0]), n)
