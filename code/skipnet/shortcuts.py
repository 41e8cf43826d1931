"""The shortcuts of a residual block: the identity and the variants of He et al. (2016), Table 1.

Each is a small module that maps the block's input ``x`` to what is added to the branch's output:
:class:`OptionA` (the identity; subsample and zero-pad where the block changes the shape, He et al. 2015's
parameter-free "option A"), :class:`Scaled` (``lambda x``), :class:`GatedShortcut` (``(1 - g(x)) x``, with
:class:`GatedBranch` for the exclusive gate's ``g(x) F(x)``), :class:`Projection` (a learned 1x1 convolution) and
:class:`DropMask` (an unscaled Bernoulli mask); :func:`make_shortcut` picks the one a config names.
:mod:`skipnet.models` builds blocks from them.
Chapter: *The identity mapping*.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["OptionA", "Scaled", "Gate", "GatedShortcut", "GatedBranch", "Projection", "DropMask", "make_shortcut"]


class OptionA(nn.Module):
    """The identity shortcut. Where a block changes shape it subsamples and zero-pads the new channels
    (He et al. 2015's parameter-free "option A"); otherwise it returns ``x`` itself."""

    def __init__(self, c_in: int, c_out: int, stride: int, conv: bool):
        super().__init__()
        self.c_in, self.c_out, self.stride, self.conv = c_in, c_out, stride, conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]                      # (B, C_in, H/2, W/2)
        if self.c_out > self.c_in:
            x = F.pad(x, (0, 0, 0, 0, 0, self.c_out - self.c_in) if self.conv else (0, self.c_out - self.c_in))
        return x


class Scaled(nn.Module):
    """Constant scaling: ``lambda * x`` (He et al. 2016 use lambda = 0.5)."""

    def __init__(self, skip: OptionA, scale: float):
        super().__init__()
        self.skip, self.scale = skip, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.skip(x)


class Gate(nn.Module):
    """``g(x) = sigmoid(W s + b)`` of the shortcut signal ``s``; W starts at 0, so g starts at sigmoid(b)."""

    def __init__(self, skip: OptionA, channels: int, conv: bool, bias: float):
        super().__init__()
        self.skip = skip
        self.linear = nn.Conv2d(channels, channels, 1) if conv else nn.Linear(channels, channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(self.skip(x)))


class GatedShortcut(nn.Module):
    """``(1 - g(x)) * x``: the shortcut of both gated variants."""

    def __init__(self, gate: Gate):
        super().__init__()
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - self.gate(x)) * self.gate.skip(x)


class GatedBranch(nn.Module):
    """``g(x) * F(x)``: the branch of the exclusive gate (Highway networks' coupled gates)."""

    def __init__(self, branch: nn.Module, gate: Gate):
        super().__init__()
        self.inner, self.gate = branch, gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x) * self.inner(x)


class Projection(nn.Module):
    """A learned 1x1 convolution (or linear map) on the shortcut, started by ``init`` (see
    ``ModelConfig.shortcut_init``). PyTorch's default draw is made in every case, so that the branches of
    the ``default`` and ``identity`` networks of one seed start from the same weights."""

    def __init__(self, c_in: int, c_out: int, stride: int, conv: bool, init: str = "default"):
        super().__init__()
        self.proj = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if conv else nn.Linear(c_in, c_out, bias=False)
        with torch.no_grad():
            w = self.proj.weight.view(c_out, c_in)                          # (c_out, c_in): a 1x1 conv is a matrix
            if init == "identity":
                w.copy_(torch.eye(c_out, c_in))
            elif init == "orthogonal":
                nn.init.orthogonal_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class DropMask(nn.Module):
    """Dropout on the shortcut: an UNSCALED Bernoulli(1/2) mask in training, 0.5 at test time (expected
    scale 0.5, as in He et al. 2016; ``nn.Dropout`` would rescale by 2)."""

    draws_at_random = True          # training draws from torch's global generator (read by skipnet.race.race)

    def __init__(self, skip: OptionA):
        super().__init__()
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.skip(x)
        keep = torch.bernoulli(torch.full_like(s, 0.5)) if self.training else 0.5
        return keep * s


def make_shortcut(cfg, c_in: int, c_out: int, stride: int, conv: bool) -> nn.Module:
    """The shortcut ``cfg.shortcut`` names (a :class:`~skipnet.models.ModelConfig` field), for a block from
    ``c_in`` to ``c_out`` channels."""
    skip = OptionA(c_in, c_out, stride, conv)
    kind = cfg.shortcut
    if kind == "identity":
        return skip
    if kind == "scale":
        return Scaled(skip, cfg.shortcut_scale)
    if kind == "conv1x1":
        return Projection(c_in, c_out, stride, conv, cfg.shortcut_init)
    if kind == "dropout":
        return DropMask(skip)
    return GatedShortcut(Gate(skip, c_out, conv, cfg.gate_bias))        # exclusive_gate / shortcut_gate
