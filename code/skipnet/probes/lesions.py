"""Lesion probes: delete, or reorder, blocks of a trained network at test time and measure accuracy.

Deleting a residual block drops its branch and keeps its shortcut (``x -> post(shortcut(x))``); deleting a
plain block passes its input through unchanged (option-A subsampling and zero-padding where the shape
changes). The model is never modified: a lesioned network is a list of blocks, some wrapped in
:class:`Deleted`, run by ``model.blocks_forward``. Reordering swaps blocks of identical shape (same input
and output channels, same stride), so every reordered network still runs.

A lesion also leaves every BatchNorm after it with statistics measured on the intact stream.
:func:`recalibrated` recomputes them on the lesioned network (weights unchanged), the control that
separates what the deleted block computed from what the stale normalization costs.

Chapter: *An ensemble of relatively shallow paths* (Veit et al. 2016, Fig. 3-5 analogues).
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from skipnet.models import ResidualBlock, ResidualNet
from skipnet.runtime import eval_mode, generator
from skipnet.shortcuts import OptionA

__all__ = ["accuracy", "Deleted", "lesioned_blocks", "lesioned_accuracy", "LesionEvaluator",
           "single_deletion_accuracies", "random_subsets", "random_deletion_accuracies", "block_signature",
           "swappable_groups", "check_order", "random_swap_order", "max_disjoint_swaps", "kendall_distance",
           "random_swap_accuracies", "recalibrated", "recalibrated_accuracy"]


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


def max_disjoint_swaps(model: ResidualNet, fixed: Iterable[int] = ()) -> int:
    """How many disjoint same-signature pairs the blocks allow (half of each group, ``fixed`` left out)."""
    fixed = set(int(i) for i in fixed)
    return sum(len([i for i in g if i not in fixed]) // 2 for g in swappable_groups(model))


def random_swap_order(model: ResidualNet, k: int, gen: torch.Generator, fixed: Iterable[int] = ()) -> list[int]:
    """A block order made by swapping ``k`` DISJOINT random pairs of same-signature blocks (no block moves twice,
    so no swap undoes another); the positions in ``fixed`` stay in place. The pairs are taken in a random order
    of all allowed pairs, each when neither of its blocks is used yet (within a group every pair is allowed,
    so this always finds ``k`` pairs when :func:`max_disjoint_swaps` allows them)."""
    fixed = set(int(i) for i in fixed)
    most = max_disjoint_swaps(model, fixed)
    if not 0 <= k <= most:
        raise ValueError(f"k must be between 0 and {most} (disjoint same-shape pairs of this network), got {k}")
    pairs = [(a, b) for g in swappable_groups(model) for a in g for b in g if a < b and not {a, b} & fixed]
    order, used, taken = list(range(len(model.blocks))), set(), 0
    for j in torch.randperm(len(pairs), generator=gen).tolist():
        if taken == k:
            break
        a, b = pairs[j]
        if a in used or b in used:
            continue
        order[a], order[b] = order[b], order[a]
        used |= {a, b}
        taken += 1
    return order


def kendall_distance(order: Sequence[int]) -> int:
    """Number of inverted pairs of ``order`` (Kendall's distance to the built order; Veit et al. Fig. 5b plot
    against Kendall's tau, which is 1 - 4 distance / (n (n - 1)))."""
    order = list(order)
    return sum(order[i] > order[j] for i in range(len(order)) for j in range(i + 1, len(order)))


def random_swap_accuracies(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, ks: Sequence[int],
                           n_samples: int = 10, seed: int = 0, fixed: Iterable[int] = (),
                           kendall: list | None = None) -> list[np.ndarray]:
    """For each k in ``ks``: accuracies after ``n_samples`` random orders of k disjoint swapped pairs
    (``fixed`` positions stay). ``kendall``, if given a list, receives each order's Kendall distance."""
    gen, out = generator(seed), []
    for k in ks:
        orders = [random_swap_order(model, k, gen, fixed) for _ in range(1 if k == 0 else n_samples)]
        out.append(np.array([_accuracy_of(model, X, y, lesioned_blocks(model, order=o)) for o in orders]))
        if kendall is not None:
            kendall.append([kendall_distance(o) for o in orders])
    return out


# -- recalibrated normalization ------------------------------------------------------------------------
@torch.no_grad()
def recalibrated(model: ResidualNet, X: torch.Tensor, deleted: Iterable[int] = (), order: Sequence[int] | None = None,
                 batch_size: int = 2048) -> tuple[ResidualNet, list]:
    """A deep copy of ``model`` whose BatchNorm running statistics are recomputed on ``X`` for the network
    lesioned by ``deleted`` / ``order``: reset, then cumulative averages (``momentum=None``) over no-grad
    passes with batch statistics, every other module in its test-time form. Returns the copy (eval mode,
    weights unchanged) and its lesioned block list, to pass to ``blocks_forward(..., blocks=)``."""
    net = copy.deepcopy(model).eval()
    blocks = lesioned_blocks(net, deleted, order)
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for i in range(0, len(X), batch_size):
        net.readout(net.blocks_forward(net.embed(X[i:i + batch_size]), blocks=blocks)[-1])
    for m in layers:
        m.momentum = 0.1
    return net.eval(), blocks


def recalibrated_accuracy(model: ResidualNet, X_calib: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                          deleted: Iterable[int] = ()) -> float:
    """Accuracy on ``(X, y)`` with the blocks at ``deleted`` removed and BatchNorm recalibrated on ``X_calib``."""
    net, blocks = recalibrated(model, X_calib, deleted)
    return _accuracy_of(net, X, y, blocks)
