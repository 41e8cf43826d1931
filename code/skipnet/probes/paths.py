"""The unraveled view of a residual network: 2^n paths, and how much gradient each path length carries.

Writing every block as ``y = s(x) + f(x)`` and expanding, a network of n blocks is a sum over
2^n paths, each choosing the branch ``f`` in some blocks and the skip ``s`` in the others. A path
that uses k branches has "length" k; there are C(n, k) of them, so lengths follow Binomial(n, 1/2).

:func:`path_gradient_magnitudes` is Veit et al.'s (2016, Sec. 6) measurement: one forward pass,
then backward passes that go through the branch in k randomly chosen blocks and through the skip
in all others, measuring the gradient that reaches the input of the first block.

Chapter: *An ensemble of relatively shallow paths*.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.models import ResidualNet
from skipnet.probes.lesions import random_subsets
from skipnet.runtime import generator

__all__ = ["enumerate_paths", "enumerated_length_counts", "binomial_length_counts", "PathGraph", "path_gradient_magnitudes",
           "gradient_by_length", "effective_mean_length", "gradient_window", "path_share", "MAX_ENUMERATE"]

MAX_ENUMERATE = 20


def enumerate_paths(n: int) -> list[tuple[int, ...]]:
    """Every path through n blocks as a tuple of 0 (skip) / 1 (branch), in lexicographic order."""
    if not 0 <= n <= MAX_ENUMERATE:
        raise ValueError(f"n must be between 0 and {MAX_ENUMERATE} to enumerate 2^n paths, got {n}")
    return list(itertools.product((0, 1), repeat=n))


def enumerated_length_counts(n: int) -> np.ndarray:
    """Number of paths of each length 0..n, counted by enumerating all 2^n paths."""
    if not 0 <= n <= MAX_ENUMERATE:
        raise ValueError(f"n must be between 0 and {MAX_ENUMERATE} to enumerate 2^n paths, got {n}")
    counts = np.zeros(n + 1, dtype=np.int64)
    for path in itertools.product((0, 1), repeat=n):                 # one path at a time, never all in memory
        counts[sum(path)] += 1
    return counts


def binomial_length_counts(n: int) -> np.ndarray:
    """The closed form: C(n, k) paths of length k, k = 0..n (exact integers as float64 beyond 2^53)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return np.array([math.comb(n, k) for k in range(n + 1)], dtype=np.float64 if n > 60 else np.int64)


def _block_parts(block: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The skip and branch signals of a block in eval mode, as its forward pass combines them."""
    s, f = block.shortcut(h), block.branch(h)
    if block.residual and block.survival < 1.0:
        f = block.survival * f                                       # stochastic depth: expected branch
    return s, f


class PathGraph:
    """One ordinary forward pass (eval mode) of a residual net on ``(X, y)``, kept so that the loss
    gradient can be sent backward along any single path.

    At each block both routes are recorded with the same value: ``join(s, f.detach())`` (gradient
    only through the skip) and ``join(s.detach(), f)`` (only through the branch). Because the
    join is linear in ``s + f`` before its activation, the gradients of all 2^n paths add up to the
    ordinary gradient (a test checks this).
    """

    def __init__(self, model: ResidualNet, X: torch.Tensor, y: torch.Tensor):
        if not all(getattr(b, "residual", False) for b in model.blocks):
            raise ValueError("path gradients need a residual network (residual=True)")
        was_training = model.training
        model.eval()
        with torch.no_grad():
            h = model.embed(X)                                       # (B, C, H, W): where every path starts
        self.inputs, self.via_skip, self.via_branch = [], [], []
        for block in model.blocks:
            h = h.detach().requires_grad_(True)
            s, f = _block_parts(block, h)
            self.inputs.append(h)
            self.via_skip.append(block.join(s, f.detach()))
            self.via_branch.append(block.join(s.detach(), f))
            h = self.via_skip[-1]
        h_last = h.detach().requires_grad_(True)
        loss = F.cross_entropy(model.readout(h_last), y)
        self.g_last, = torch.autograd.grad(loss, h_last)             # (B, C, H, W) at the last block's output
        model.train(was_training)

    @property
    def n(self) -> int:
        return len(self.inputs)

    def gradient(self, branches) -> torch.Tensor:
        """The loss gradient at the first block's input along the path that takes the branch in the
        blocks listed in ``branches`` and the skip everywhere else."""
        use_branch = set(int(i) for i in branches)
        g = self.g_last
        for i in range(self.n - 1, -1, -1):
            route = self.via_branch[i] if i in use_branch else self.via_skip[i]
            g, = torch.autograd.grad(route, self.inputs[i], g, retain_graph=True)
        return g


def path_gradient_magnitudes(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, ks: Sequence[int],
                             n_samples: int = 10, seed: int = 0,
                             callback: Callable[[float], bool | None] | None = None) -> list[np.ndarray]:
    """For each k in ``ks``: norms of the loss gradient at the first block's input, backpropagated
    through the branch of k random blocks and the skip of the rest (``n_samples`` random choices).

    The forward pass is the network's ordinary one (eval mode, batch ``X``); see :class:`PathGraph`.
    Returns one array per k (length 1 where k is 0 or n). ``callback(fraction done)`` is called after
    each k; if it returns ``False`` the measurement stops and the arrays measured so far are returned.
    """
    graph = PathGraph(model, X, y)
    gen, out = generator(seed), []
    for j, k in enumerate(ks):
        out.append(np.array([graph.gradient(c).norm().item() for c in random_subsets(graph.n, k, n_samples, gen)]))
        if callback is not None and callback((j + 1) / len(ks)) is False:
            break
    return out


def gradient_by_length(n: int, ks: Sequence[int], magnitudes: Sequence[float]) -> np.ndarray:
    """Share of the total gradient carried by each length: C(n, k) x magnitude(k), normalized to sum 1."""
    counts = np.array([math.comb(n, int(k)) for k in ks], dtype=np.float64)
    total = counts * np.asarray(magnitudes, dtype=np.float64)
    if not total.sum() > 0:
        raise ValueError("magnitudes must contain a positive, finite value")
    return total / total.sum()


def effective_mean_length(ks: Sequence[int], weights: Sequence[float]) -> float:
    """Mean path length under the gradient weights (compare with n / 2, the mean of all paths)."""
    w = np.asarray(weights, dtype=np.float64)
    return float((np.asarray(ks, dtype=np.float64) * w).sum() / w.sum())


def gradient_window(weights: Sequence[float], share: float = 0.9) -> tuple[int, int]:
    """The shortest run of consecutive lengths [a, b] whose gradient shares add up to at least ``share``
    (Veit et al.: "nearly all of the gradient comes from paths of 5 to 17 blocks")."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    best = (0, len(w) - 1)
    for a in range(len(w)):
        total = 0.0
        for b in range(a, len(w)):
            total += w[b]
            if total >= share - 1e-12:
                if b - a < best[1] - best[0]:
                    best = (a, b)
                break
    return best


def path_share(n: int, lo: int, hi: int) -> float:
    """Share of all 2^n paths whose length lies in [lo, hi]."""
    return sum(math.comb(n, k) for k in range(max(lo, 0), min(hi, n) + 1)) / 2 ** n
