"""The exact path-length spectrum of a residual network's gradient, by a backward dynamic programme.

Veit et al. (2016) estimate how much gradient paths of length k carry by sampling a few paths of that
length and multiplying their mean norm by C(n, k) (:func:`skipnet.probes.paths.path_gradient_magnitudes`):
a sum of norms, which ignores that paths of one length partly cancel. The gradient summed over ALL
C(n, k) paths of length k can be computed exactly, with about n^2 vector-Jacobian products.

Each block is ``post(shortcut(x) + branch(x))``. Linearized at the intact forward pass, its Jacobian is
``P (J_s + J_f)``: the Jacobian ``P`` of ``post`` (the ReLU's mask after the add) times the sum of the
skip's and the branch's. Let ``G_k`` be the summed gradient of every path of length k, taken at a block's
output. Going down through the block, a path either takes the skip (its length is unchanged) or the
branch (one more), so at the block's input

    G'_k = VJP_skip(P^T G_k) + VJP_branch(P^T G_{k-1}),

starting from ``G_0 = dL/d(last output)``. Every step is linear in the cotangent, so at the first
block's input ``sum_k G_k`` is autograd's gradient exactly, whatever ``post`` is and whether BatchNorm
uses running or batch statistics (:func:`exact_path_spectrum` returns the check).

A fresh net's BatchNorm running statistics are 0 and 1, so in eval mode every BN is the identity and the
"fresh" net is an unnormalized one; the network as it trains uses batch statistics (``bn="batch"``), which
scale each branch down relative to its skip (De & Smith 2020). :func:`skipnet.probes.lesions.recalibrated`
gives a copy with running statistics computed from data.

Chapter: *An ensemble of relatively shallow paths*.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.models import ResidualBlock, ResidualNet
from skipnet.runtime import eval_mode

__all__ = ["BN_MODES", "Spectrum", "exact_path_spectrum", "gains_prediction", "bn_train_copy", "mean_of"]

BN_MODES = ("eval", "batch")
_BN = nn.modules.batchnorm._BatchNorm


def _bn_layers(model: nn.Module) -> list[_BN]:
    return [m for m in model.modules() if isinstance(m, _BN)]


def bn_train_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode except its BatchNorm layers, which use batch statistics (as in training);
    the original's running statistics are untouched. Stochastic depth stays in its test-time form."""
    net = copy.deepcopy(model).eval()
    for m in _bn_layers(net):
        m.train()
    return net


@dataclass
class Spectrum:
    """The exact gradient by path length at the first block's input, for n blocks.

    norms[k] = ||G_k||; shares[k] = norms[k] / sum(norms) (the magnitude view, comparable with Veit's);
    projection[k] = <G_k, G> / ||G||^2, an exact additive split of the gradient G (sums to 1, may be
    negative); mean_length: the mean of k under ``shares``; sum_error: max |sum_k G_k - G| / max |G|
    (autograd's G); coherence = ||G|| / sum_k ||G_k|| (1 when no length cancels another); gains[l]:
    block l's ||VJP_branch|| / ||VJP_skip|| of the total gradient at its output.
    """

    n: int
    norms: list[float]
    shares: list[float]
    projection: list[float]
    mean_length: float
    projection_mean: float
    sum_error: float
    coherence: float
    gains: list[float]
    label: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def gains_prediction(gains: Sequence[float]) -> np.ndarray:
    """Shares by length if every path's gradient were the product of per-block gains (r_l through block
    l's branch, 1 through its skip) and nothing cancelled: the coefficients e_k(r) of prod(1 + r_l z),
    normalized. Their mean is sum r_l / (1 + r_l)."""
    c = np.array([1.0])
    for r in gains:
        c = np.convolve(c, [1.0, float(r)])
    return c / c.sum()


def exact_path_spectrum(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, bn: str = "eval",
                        label: str = "") -> Spectrum:
    """Exact per-length gradient (the dynamic programme of the module docstring) of the cross-entropy on
    ``(X, y)``. ``bn="eval"`` runs the net as it is tested; ``bn="batch"`` uses batch statistics in every
    BatchNorm (the network as it trains; the model's running statistics are untouched)."""
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    if not all(isinstance(b, ResidualBlock) for b in model.blocks):
        raise ValueError("path spectra need a residual network (residual=True)")
    net = bn_train_copy(model) if bn == "batch" else model
    with eval_mode(model):
        h0 = net.embed(X).detach().requires_grad_(True)
        direct, = torch.autograd.grad(F.cross_entropy(net.readout(net.blocks_forward(h0)[-1]), y), h0)
        rec, h = [], h0.detach()
        for block in net.blocks:                                   # one forward pass, every part recorded
            x = h.detach().requires_grad_(True)
            s, f = block.shortcut(x), block.branch(x)
            z = (s + f).detach().requires_grad_(True)
            out = block.post(z)
            rec.append((x, s, f, z, out))
            h = out
        last = h.detach().requires_grad_(True)
        g_last, = torch.autograd.grad(F.cross_entropy(net.readout(last), y), last)
        G, gains = [g_last], []
        for x, s, f, z, out in reversed(rec):
            Gz = [_vjp(out, z, g) for g in G]
            skip = [_vjp(s, x, g) for g in Gz]
            branch = [_vjp(f, x, g) for g in Gz]
            total_skip, total_branch = sum(skip), sum(branch)
            gains.append((total_branch.norm() / total_skip.norm().clamp_min(1e-30)).item())
            G = [skip[0]] + [skip[k] + branch[k - 1] for k in range(1, len(G))] + [branch[-1]]
    total = sum(G)
    err = ((total - direct).abs().max() / direct.abs().max().clamp_min(1e-30)).item()
    norms = np.array([g.norm().item() for g in G])
    shares = norms / norms.sum()
    proj = np.array([(g * direct).sum().item() for g in G]) / (direct * direct).sum().item()
    ks = np.arange(len(G))
    return Spectrum(len(G) - 1, norms.tolist(), shares.tolist(), proj.tolist(), float((ks * shares).sum()),
                    float((ks * proj).sum() / proj.sum()), err, float(direct.norm().item() / norms.sum()),
                    gains[::-1], label)


def _vjp(out: torch.Tensor, at: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if out is at:                                   # an identity shortcut returns its input
        return g
    v, = torch.autograd.grad(out, at, g, retain_graph=True, allow_unused=True)
    return torch.zeros_like(at) if v is None else v


def mean_of(shares: Sequence[float]) -> float:
    """The mean length under weights ``shares`` (index = length)."""
    w = np.asarray(shares, dtype=np.float64)
    return float((np.arange(len(w)) * w).sum() / w.sum())
