"""Concatenation instead of addition: a DenseNet-like fully connected network (Huang et al. 2017).

A residual block adds what it computes to the stream, ``x + F(x)``; a dense block appends it,
``[x, F(x)]``, so every block reads everything written before it, unmixed::

    return torch.cat([x, self.branch(x)], dim=1)                     # the stream grows by `growth` features

The branch is the book's full pre-activation MLP branch (BatchNorm, ReLU, linear, twice) that reads the
whole concatenation and writes ``growth`` new features. :func:`matched_growth` picks ``growth`` so that
the network has (about) as many parameters as the residual MLP of the same number of blocks: the
chapter *The identity mapping* compares the two ("isn't the sum messy?") at equal size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from skipnet.checks import check_int
from skipnet.config import Config
from skipnet.models import stream_states

__all__ = ["DenseConfig", "DenseBlock", "DenseNet", "matched_growth", "dense_params"]


@dataclass(frozen=True)
class DenseConfig(Config):
    """A dense MLP: a stem to ``width`` features, ``n_blocks`` blocks each appending ``growth`` features
    (inner width ``width``), then BatchNorm, ReLU and the classifier on the whole concatenation."""

    n_blocks: int = 8
    width: int = 64
    growth: int = 13
    in_shape: tuple[int, ...] = (64,)
    n_classes: int = 10

    def __post_init__(self) -> None:
        check_int("n_blocks", self.n_blocks, 1, 200)
        check_int("width", self.width, 1, 1024)
        check_int("growth", self.growth, 1, 1024)
        check_int("n_classes", self.n_classes, 1)

    @property
    def label(self) -> str:
        return f"concatenation MLP, {self.n_blocks} blocks"

    def network(self) -> "DenseNet":
        return DenseNet(self)


def _linear(c_in: int, c_out: int, bias: bool = False) -> nn.Linear:
    layer = nn.Linear(c_in, c_out, bias=bias)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class DenseBlock(nn.Module):
    """``[x, F(x)]``: the block appends its branch's output to the stream."""

    def __init__(self, c_in: int, width: int, growth: int):
        super().__init__()
        self.branch = nn.Sequential(nn.BatchNorm1d(c_in), nn.ReLU(), _linear(c_in, width),
                                    nn.BatchNorm1d(width), nn.ReLU(), _linear(width, growth))
        self.c_in, self.c_out = c_in, c_in + growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.branch(x)], dim=1)


class DenseNet(nn.Module):
    """Stem -> dense blocks -> BatchNorm, ReLU, classifier; ``embed`` / ``blocks_forward`` / ``readout`` as in
    :class:`~skipnet.models.ResidualNet`, so the same probes walk its stream."""

    def __init__(self, cfg: DenseConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = _linear(int(math.prod(cfg.in_shape)), cfg.width)
        blocks, c = [], cfg.width
        for _ in range(cfg.n_blocks):
            blocks.append(DenseBlock(c, cfg.width, cfg.growth))
            c += cfg.growth
        self.blocks = nn.ModuleList(blocks)
        self.final_norm, self.final_act = nn.BatchNorm1d(c), nn.ReLU()
        self.head = _linear(c, cfg.n_classes, bias=True)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x.flatten(1))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.final_act(self.final_norm(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.readout(h)

    def blocks_forward(self, h: torch.Tensor, start: int = 0, blocks=None) -> list[torch.Tensor]:
        return stream_states(self.blocks if blocks is None else blocks, h, start)

    def main_layers(self) -> list[tuple[str, nn.Module]]:
        layers = [("stem", self.stem)]
        for i, block in enumerate(self.blocks):
            layers += [(f"block{i}.w0", block.branch[2]), (f"block{i}.w1", block.branch[5])]
        return layers + [("head", self.head)]


def dense_params(n_blocks: int, width: int, growth: int, in_dim: int = 64, n_classes: int = 10) -> int:
    """The parameter count of :class:`DenseNet` in closed form (tested against the built network)."""
    total, c = in_dim * width, width                                          # stem, no bias
    for _ in range(n_blocks):
        total += 2 * c + c * width + 2 * width + width * growth               # BN(c), W(c->width), BN(width), W(width->g)
        c += growth
    return total + 2 * c + c * n_classes + n_classes                           # final BN, classifier with bias


def matched_growth(n_blocks: int, target: int, width: int = 64, in_shape: tuple[int, ...] = (64,),
                   n_classes: int = 10) -> int:
    """The growth whose dense network has the parameter count closest to ``target``."""
    in_dim = int(math.prod(in_shape))
    return min(range(1, 257), key=lambda g: abs(dense_params(n_blocks, width, g, in_dim, n_classes) - target))
