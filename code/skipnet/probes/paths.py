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
import torch.nn.functional as F

from skipnet.models import ResidualBlock, ResidualNet
from skipnet.probes.lesions import random_subsets
from skipnet.runtime import eval_mode, generator

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


class PathGraph:
    """One ordinary forward pass (eval mode) of a residual net on ``(X, y)``, kept so that the loss
    gradient can be sent backward along any single path.

    At each block both routes are recorded with the same value: ``post(s + f.detach())`` (gradient
    only through the skip) and ``post(s.detach() + f)`` (only through the branch). Because the
    block is linear in ``s + f`` before ``post``, the gradients of all 2^n paths add up to the
    ordinary gradient (a test checks this); the Jacobian of ``post`` (the ReLU's mask after the add)
    is shared by both routes.
    """

    def __init__(self, model: ResidualNet, X: torch.Tensor, y: torch.Tensor):
        if not all(isinstance(b, ResidualBlock) for b in model.blocks):
            raise ValueError("path gradients need a residual network (residual=True)")
        with eval_mode(model):
            with torch.no_grad():
                h = model.embed(X)                                   # (B, C, H, W): where every path starts
            self.inputs, self.via_skip, self.via_branch = [], [], []
            for block in model.blocks:
                h = h.detach().requires_grad_(True)
                s, f = block.shortcut(h), block.branch(h)            # eval: the branch as the forward pass uses it
                self.inputs.append(h)
                self.via_skip.append(block.post(s + f.detach()))
                self.via_branch.append(block.post(s.detach() + f))
                h = self.via_skip[-1]
            h_last = h.detach().requires_grad_(True)
            loss = F.cross_entropy(model.readout(h_last), y)
            self.g_last, = torch.autograd.grad(loss, h_last)         # (B, C, H, W) at the last block's output

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
                             progress: Callable | None = None) -> list[np.ndarray]:
    """For each k in ``ks``: norms of the loss gradient at the first block's input, backpropagated
    through the branch of k random blocks and the skip of the rest (``n_samples`` random choices).

    The forward pass is the network's ordinary one (eval mode, batch ``X``); see :class:`PathGraph`.
    Returns one array per k (length 1 where k is 0 or n). ``progress`` is called after
    each k; if it returns ``False`` the measurement stops and the arrays measured so far are returned.
    (``progress(fraction, text, partial)`` is the package's progress protocol.)
    """
    graph = PathGraph(model, X, y)
    gen, out = generator(seed), []
    for j, k in enumerate(ks):
        out.append(np.array([graph.gradient(c).norm().item() for c in random_subsets(graph.n, k, n_samples, gen)]))
        if progress is not None and progress((j + 1) / len(ks), f"paths of length {k}", out) is False:
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
