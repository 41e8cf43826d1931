"""Lesion probes: delete, or reorder, blocks of a trained network at test time and measure accuracy.

Deleting a residual block drops its branch and keeps its shortcut (``x -> shortcut(x)``); deleting a
plain block passes its input through unchanged (option-A subsampling where the shape changes). Both
use ``block.deleted`` from :mod:`skipnet.models`. Reordering swaps blocks of identical shape
(same input and output channels, same stride), so every reordered network still runs.

Chapter: *An ensemble of relatively shallow paths* (Veit et al. 2016, Fig. 3-5 analogues).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from skipnet.models import ResidualNet, deleted_blocks
from skipnet.runtime import generator

__all__ = ["accuracy", "lesioned_accuracy", "LesionEvaluator", "single_deletion_accuracies", "random_subsets",
           "random_deletion_accuracies", "block_signature", "swappable_groups", "reordered_blocks",
           "random_swap_order", "random_swap_accuracies"]


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Test accuracy of ``model`` in eval mode on ``(X, y)`` (one forward pass)."""
    was_training = model.training
    model.eval()
    acc = (model(X).argmax(-1) == y).float().mean().item()            # X: (N, C, H, W), y: (N,)
    model.train(was_training)
    return acc


def lesioned_accuracy(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, deleted: Iterable[int] = ()) -> float:
    """Accuracy with the blocks at ``deleted`` removed (restored afterwards)."""
    with deleted_blocks(model, deleted):
        return accuracy(model, X, y)


class LesionEvaluator:
    """Accuracy under deletions, fast: the intact stream is computed once, and a lesioned forward
    pass starts at the first deleted block (the blocks before it see exactly the intact input)."""

    @torch.no_grad()
    def __init__(self, model: ResidualNet, X: torch.Tensor, y: torch.Tensor):
        self.model, self.y = model, y
        was_training = model.training
        model.eval()
        h = model.embed(X)
        self.stream = [h]                                              # input of block i, then the last output
        for block in model.blocks:
            h = block(h)
            self.stream.append(h)
        self.intact = (model.readout(h).argmax(-1) == y).float().mean().item()
        model.train(was_training)

    @torch.no_grad()
    def accuracy(self, deleted: Iterable[int] = ()) -> float:
        deleted = sorted(set(int(i) for i in deleted))
        if not deleted:
            return self.intact
        model = self.model
        was_training = model.training
        model.eval()
        with deleted_blocks(model, deleted):
            h = self.stream[deleted[0]]
            for block in list(model.blocks)[deleted[0]:]:
                h = block(h)
            acc = (model.readout(h).argmax(-1) == self.y).float().mean().item()
        model.train(was_training)
        return acc


def single_deletion_accuracies(model: ResidualNet, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Accuracy after deleting each block alone: an (n_blocks,) array (Veit et al. Fig. 3)."""
    ev = LesionEvaluator(model, X, y)
    return np.array([ev.accuracy([i]) for i in range(len(model.blocks))])


def random_subsets(n: int, k: int, n_samples: int, gen: torch.Generator) -> list[list[int]]:
    """``n_samples`` random k-subsets of ``range(n)`` (one subset only when k is 0 or n)."""
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and {n} (the number of blocks), got {k}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if k in (0, n):
        return [list(range(k))]
    return [sorted(torch.randperm(n, generator=gen)[:k].tolist()) for _ in range(n_samples)]


def random_deletion_accuracies(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, ks: Sequence[int],
                               n_samples: int = 10, seed: int = 0) -> list[np.ndarray]:
    """For each k in ``ks``: accuracies after deleting ``n_samples`` random sets of k blocks (Fig. 5a).

    Returns one array per k (length 1 where k is 0 or n: there is only one such set).
    """
    gen, n, ev = generator(seed), len(model.blocks), LesionEvaluator(model, X, y)
    return [np.array([ev.accuracy(s) for s in random_subsets(n, k, n_samples, gen)]) for k in ks]


# -- reordering --------------------------------------------------------------------------------------
def block_signature(block: nn.Module) -> tuple[int, int, int]:
    """(input channels, output channels, stride): blocks with equal signatures may trade places."""
    return (block.c_in, block.c_out, block.stride)


def swappable_groups(model: ResidualNet) -> list[list[int]]:
    """Positions of blocks that share a signature (within a stage, the non-downsampling blocks)."""
    groups: dict[tuple, list[int]] = {}
    for i, b in enumerate(model.blocks):
        groups.setdefault(block_signature(b), []).append(i)
    return [g for g in groups.values() if len(g) >= 2]


@contextmanager
def reordered_blocks(model: ResidualNet, order: Sequence[int]) -> Iterator[ResidualNet]:
    """Temporarily run the blocks in ``order`` (a permutation of their positions); restored on exit.

    Position j must receive a block with the same signature as the original block j, so shapes
    never change (downsampling blocks stay where they are).
    """
    old = list(model.blocks)
    n = len(old)
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of 0..{n - 1}, got {list(order)}")
    for j, i in enumerate(order):
        if block_signature(old[i]) != block_signature(old[j]):
            raise ValueError(f"order puts block {i} {block_signature(old[i])} at position {j}, which needs "
                             f"(c_in, c_out, stride) = {block_signature(old[j])}")
    try:
        model.blocks = nn.ModuleList([old[i] for i in order])
        yield model
    finally:
        model.blocks = nn.ModuleList(old)


def random_swap_order(model: ResidualNet, k: int, gen: torch.Generator) -> list[int]:
    """A block order made by swapping ``k`` random pairs of same-signature blocks (Veit et al. Fig. 5b)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    groups = swappable_groups(model)
    order = list(range(len(model.blocks)))
    if not groups:
        return order
    sizes = torch.tensor([len(g) * (len(g) - 1) / 2 for g in groups], dtype=torch.float64)
    for _ in range(k):
        g = groups[int(torch.multinomial(sizes, 1, generator=gen))]      # a pair chosen uniformly over all pairs
        a, b = (g[int(i)] for i in torch.randperm(len(g), generator=gen)[:2])
        order[a], order[b] = order[b], order[a]
    return order


def random_swap_accuracies(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, ks: Sequence[int],
                           n_samples: int = 10, seed: int = 0) -> list[np.ndarray]:
    """For each k in ``ks``: accuracies after ``n_samples`` random orders of k swapped pairs."""
    gen, out = generator(seed), []
    for k in ks:
        accs = []
        for _ in range(1 if k == 0 else n_samples):
            with reordered_blocks(model, random_swap_order(model, k, gen)):
                accs.append(accuracy(model, X, y))
        out.append(np.array(accs))
    return out
