"""Lesion probes: delete, or reorder, blocks of a trained network at test time and measure accuracy.

Deleting a residual block drops its branch and keeps its shortcut (``x -> post(shortcut(x))``); deleting a
plain block passes its input through unchanged (option-A subsampling and zero-padding where the shape
changes). The model is never modified: a lesioned network is a list of blocks, some wrapped in
:class:`Deleted`, run by ``model.blocks_forward``. Reordering swaps blocks of identical shape (same input
and output channels, same stride), so every reordered network still runs.

Chapter: *An ensemble of relatively shallow paths* (Veit et al. 2016, Fig. 3-5 analogues).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from skipnet.models import OptionA, ResidualBlock, ResidualNet
from skipnet.runtime import eval_mode, generator

__all__ = ["accuracy", "Deleted", "lesioned_blocks", "lesioned_accuracy", "LesionEvaluator",
           "single_deletion_accuracies", "random_subsets", "random_deletion_accuracies", "block_signature",
           "swappable_groups", "check_order", "random_swap_order", "random_swap_accuracies"]


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Test accuracy of ``model`` in eval mode on ``(X, y)`` (one forward pass)."""
    with eval_mode(model):
        return (model(X).argmax(-1) == y).float().mean().item()        # X: (N, C, H, W), y: (N,)


class Deleted(nn.Module):
    """A block with its branch removed: a residual block becomes ``post(shortcut(x))``, a plain block
    passes its input on (subsampled and zero-padded where the block changes the shape)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.skip = None if isinstance(block, ResidualBlock) else OptionA(block.c_in, block.c_out, block.stride,
                                                                         conv=isinstance(block.branch.weights[0],
                                                                                         nn.Conv2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip is not None:
            return self.skip(x)
        return self.block.post(self.block.shortcut(x))


def lesioned_blocks(model: ResidualNet, deleted: Iterable[int] = (), order: Sequence[int] | None = None) -> list:
    """The blocks of ``model`` in ``order`` (default: as built), with the positions in ``deleted`` replaced by
    :class:`Deleted` ones: pass it to ``model.blocks_forward(h, blocks=...)``."""
    n = len(model.blocks)
    deleted = set(int(i) for i in deleted)
    bad = sorted(i for i in deleted if not 0 <= i < n)
    if bad:
        raise ValueError(f"block indices must be in 0..{n - 1}, got {bad}")
    blocks = [model.blocks[i] for i in (range(n) if order is None else check_order(model, order))]
    return [Deleted(b) if i in deleted else b for i, b in enumerate(blocks)]


@torch.no_grad()
def _accuracy_of(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, blocks: list) -> float:
    with eval_mode(model):
        h = model.blocks_forward(model.embed(X), blocks=blocks)[-1]
        return (model.readout(h).argmax(-1) == y).float().mean().item()


def lesioned_accuracy(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, deleted: Iterable[int] = ()) -> float:
    """Accuracy with the blocks at ``deleted`` removed (the model itself is not changed)."""
    return _accuracy_of(model, X, y, lesioned_blocks(model, deleted))


class LesionEvaluator:
    """Accuracy under deletions, fast: the intact stream is computed once, and a lesioned forward
    pass starts at the first deleted block (the blocks before it see exactly the intact input)."""

    @torch.no_grad()
    def __init__(self, model: ResidualNet, X: torch.Tensor, y: torch.Tensor):
        self.model, self.y = model, y
        with eval_mode(model):
            self.stream = model.blocks_forward(model.embed(X))      # input of block i, then the last output
            self.intact = (model.readout(self.stream[-1]).argmax(-1) == y).float().mean().item()

    @torch.no_grad()
    def accuracy(self, deleted: Iterable[int] = ()) -> float:
        deleted = sorted(set(int(i) for i in deleted))
        if not deleted:
            return self.intact
        model, first = self.model, deleted[0]
        with eval_mode(model):
            h = model.blocks_forward(self.stream[first], start=first, blocks=lesioned_blocks(model, deleted))[-1]
            return (model.readout(h).argmax(-1) == self.y).float().mean().item()


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


def check_order(model: ResidualNet, order: Sequence[int]) -> list[int]:
    """``order`` (a permutation of the block positions) if position j receives a block with the same signature
    as the original block j, so that shapes never change (downsampling blocks stay where they are)."""
    old = list(model.blocks)
    n = len(old)
    order = [int(i) for i in order]
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of 0..{n - 1}, got {list(order)}")
    for j, i in enumerate(order):
        if block_signature(old[i]) != block_signature(old[j]):
            raise ValueError(f"order puts block {i} {block_signature(old[i])} at position {j}, which needs "
                             f"(c_in, c_out, stride) = {block_signature(old[j])}")
    return order


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
        accs = [_accuracy_of(model, X, y, lesioned_blocks(model, order=random_swap_order(model, k, gen)))
                for _ in range(1 if k == 0 else n_samples)]
        out.append(np.array(accs))
    return out
