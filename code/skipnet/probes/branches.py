"""What each residual branch writes into the running signal. Chapter: *The identity mapping*.

For every block of a residual network, :func:`branch_stats` compares the shortcut signal ``x``
(the block's input, subsampled and zero-padded where the shape changes) with the branch's output
``F(x)``, example by example:

* ``rel_norm``: ``||F(x)|| / ||x||``, how large a correction the block adds (1 would be "equal parts");
* ``cosine``: the cosine between ``x`` and ``x + F(x)``, how much the block turns the signal (1: not at all).

With ``centre=True`` both are computed after subtracting, coordinate by coordinate, the mean over the
examples from ``x`` and from ``F(x)``: a post-ReLU stream is non-negative, and its common mean (the same
for every digit) inflates ``||x||`` and the cosines without carrying any information about the digit.

:func:`shortcut_product_norm` is the size of the path made of shortcuts alone when every shortcut is a
learned 1x1 map: the spectral norm of the product of the maps (1 for identity shortcuts).

:func:`gate_openness` reads the gates of the gated shortcuts of He et al. (2016), Table 1: how much
of the branch an exclusive gate lets through (``sigmoid(.)`` near 0 means the block is switched off).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from skipnet.runtime import eval_mode, train_mode as _mode
from skipnet.shortcuts import GatedShortcut, Projection

__all__ = ["BranchStats", "branch_stats", "gate_openness", "shortcut_product_norm"]


@dataclass
class BranchStats:
    """Per-block medians over the examples (arrays of length ``n_blocks``) and their quartiles."""

    rel_norm: np.ndarray          # median ||F(x)|| / ||x||
    rel_norm_q: np.ndarray        # (n_blocks, 2): 25th and 75th percentiles
    cosine: np.ndarray            # median cos(x, x + F(x))
    cosine_q: np.ndarray          # (n_blocks, 2)

    @property
    def n_blocks(self) -> int:
        return len(self.rel_norm)

    @property
    def median_rel_norm(self) -> float:
        """The median over blocks of the per-block median relative norm."""
        return float(np.median(self.rel_norm))


@torch.no_grad()
def branch_stats(model: nn.Module, X: torch.Tensor, train_mode: bool = False, centre: bool = False) -> BranchStats:
    """Measure every block of ``model`` (a residual :class:`~skipnet.models.ResidualNet`) on inputs ``X``.

    The stream is run with ``model.blocks_forward``; at each block the shortcut and the branch are
    evaluated on the block's input. ``train_mode=False`` (default) measures the network as it predicts
    (BatchNorm with running statistics). Signals are flattened per example: (B, C*H*W). ``centre``:
    subtract the mean over the examples from both signals first (see the module docstring).
    """
    if not getattr(model.cfg, "residual", False):
        raise ValueError("branch_stats needs a residual network (residual=True): a plain block has no shortcut")
    with _mode(model, train_mode):
        states = model.blocks_forward(model.embed(X))
        parts = [(block.shortcut(x), block.branch(x)) for block, x in zip(model.blocks, states)]
    rel, rel_q, cos, cos_q = [], [], [], []
    for s, f in parts:
        s = s.flatten(1).double()                                 # (B, D)
        f = f.flatten(1).double()                                 # (B, D)
        if centre:
            s, f = s - s.mean(0), f - f.mean(0)
        s_norm = s.norm(dim=1).clamp_min(1e-12)
        r = (f.norm(dim=1) / s_norm).numpy()
        c = torch.nn.functional.cosine_similarity(s, s + f, dim=1, eps=1e-12).numpy()
        rel.append(np.median(r))
        rel_q.append(np.percentile(r, [25, 75]))
        cos.append(np.median(c))
        cos_q.append(np.percentile(c, [25, 75]))
    return BranchStats(np.array(rel), np.array(rel_q), np.array(cos), np.array(cos_q))


@torch.no_grad()
def gate_openness(model: nn.Module, X: torch.Tensor) -> np.ndarray:
    """Mean gate value ``sigmoid(W s + b)`` of each block on inputs ``X`` (gated shortcuts only).

    With the exclusive gate the block computes ``(1 - g) x + g F(x)``: a gate near 0 keeps the
    shortcut and switches the branch off.
    """
    if not all(isinstance(getattr(b, "shortcut", None), GatedShortcut) for b in model.blocks):
        raise ValueError(f"gate_openness needs a gated shortcut ('exclusive_gate' or 'shortcut_gate'), "
                         f"got shortcut={getattr(model.cfg, 'shortcut', None)!r}")
    with eval_mode(model):
        states = model.blocks_forward(model.embed(X))
        return np.array([block.shortcut.gate(x).mean().item() for block, x in zip(model.blocks, states)])


@torch.no_grad()
def shortcut_product_norm(model: nn.Module) -> float:
    """Spectral norm of ``W_L ... W_1``, the product of the blocks' 1x1 shortcut maps (``shortcut='conv1x1'``,
    equal widths), in float64: how much the shortcut-only path can amplify (or, below 1, shrink) a signal."""
    maps = [b.shortcut.proj.weight for b in model.blocks if isinstance(getattr(b, "shortcut", None), Projection)]
    if not maps or len(maps) != len(model.blocks):
        raise ValueError("shortcut_product_norm needs a 1x1 shortcut on every block (shortcut='conv1x1')")
    P = None
    for w in maps:
        w = w.reshape(w.shape[0], w.shape[1]).double()                   # (c_out, c_in)
        P = w if P is None else w @ P
    return float(torch.linalg.matrix_norm(P, ord=2))
