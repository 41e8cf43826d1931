"""Plain and residual networks that differ ONLY in the skip connection.

A residual block computes ``join(shortcut(x), branch(x))``; its plain twin computes ``branch(x)``
alone with the very same layers and parameters. Everything the chapters vary is a field of the
frozen :class:`ModelConfig`:

* ``arch``: ``"cnn"``, the CIFAR-style 6n+2 network of He et al. (2015) with parameter-free
  "option A" shortcuts (subsample + zero-pad), or ``"mlp"``, a stack of fully connected blocks.
* ``norm`` (none / batch / layer), ``activation``, ``order`` (where norm and activation sit
  relative to the addition, He et al. 2016 Fig. 4), ``shortcut`` (the variants of He et al. 2016
  Table 1), ``branch_scale`` and ``init`` (zero-gamma, SkipInit/ReZero, Fixup), ``drop_prob``
  (stochastic depth).

Chapters: the opening chapter (degradation), *The gradient highway* (activations, norms),
*The identity mapping* (orders, shortcuts, inits) and *An ensemble of shallow paths* (deleting
blocks, stochastic depth).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, asdict, replace
from typing import Iterator, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ModelConfig", "ResidualNet", "Block", "BlockTrace", "build_model", "deleted_blocks",
    "ARCHS", "NORMS", "ACTIVATIONS", "ORDERS", "SHORTCUTS", "INITS", "MAX_DEPTH",
]

ARCHS = ("cnn", "mlp")
NORMS = ("none", "batch", "layer")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")
ORDERS = ("post", "pre", "bn_after_add", "relu_before_add", "relu_only_pre")
SHORTCUTS = ("identity", "scale", "exclusive_gate", "shortcut_gate", "conv1x1", "dropout")
INITS = ("standard", "zero_gamma", "zero_last", "rezero", "fixup")
MAX_DEPTH = {"cnn": 1202, "mlp": 1000}
MAX_WIDTH = 1024
_INV_SQRT = "1/sqrt(L)"


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a network. Invalid values raise ``ValueError`` naming the field.

    depth: for ``cnn`` the number of weight layers, 6n+2 (8, 14, 20, ..., 56, 110); for ``mlp``
        the number of hidden blocks (each of ``block_layers`` weight layers) between the input
        layer and the classifier.
    width: channels of the first CNN stage (the stages have width, 2 width, 4 width) or MLP width.
    order: ``None`` picks the default of the architecture: ``post`` (He et al. 2015, ReLU after
        the addition) for the CNN, ``pre`` (norm -> activation -> weight inside the branch, the
        stream left untouched) for the MLP.
    branch_scale: a constant multiplying the residual branch, or ``"1/sqrt(L)"`` for one over the
        square root of the number of blocks.
    shortcut_scale: the constant of the ``scale`` shortcut (He et al. 2016 use 0.5).
    gate_bias: initial bias of the gates of ``exclusive_gate`` / ``shortcut_gate`` shortcuts.
    drop_prob: stochastic depth (Huang et al. 2016): the last block is skipped with this
        probability during training, earlier blocks linearly less often.
    """

    arch: str = "cnn"
    depth: int = 20
    width: int = 16
    residual: bool = True
    norm: str = "batch"
    activation: str = "relu"
    order: str | None = None
    shortcut: str = "identity"
    block_layers: int = 2
    branch_scale: float | str = 1.0
    shortcut_scale: float = 0.5
    gate_bias: float = 0.0
    init: str = "standard"
    drop_prob: float = 0.0
    in_shape: tuple[int, ...] = (1, 8, 8)
    n_classes: int = 10

    def __post_init__(self) -> None:
        _choice("arch", self.arch, ARCHS)
        if self.order is None:
            object.__setattr__(self, "order", "post" if self.arch == "cnn" else "pre")
        _choice("norm", self.norm, NORMS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("order", self.order, ORDERS)
        _choice("shortcut", self.shortcut, SHORTCUTS)
        _choice("init", self.init, INITS)
        if isinstance(self.depth, bool) or not isinstance(self.depth, int):
            raise ValueError(f"depth must be an integer, got {self.depth!r}")
        if self.arch == "cnn":
            if self.depth < 8 or (self.depth - 2) % 6 or self.depth > MAX_DEPTH["cnn"]:
                raise ValueError(
                    f"depth must be 6n+2 with n >= 1 for the CNN (8, 14, 20, 26, 32, ..., 56, ..., 110, up to "
                    f"{MAX_DEPTH['cnn']}), got {self.depth}")
            if self.block_layers != 2:
                raise ValueError(f"block_layers must be 2 for the CNN (two 3x3 convolutions a block), got {self.block_layers}")
            if len(self.in_shape) != 3:
                raise ValueError(f"in_shape must be (channels, height, width) for the CNN, got {self.in_shape}")
        else:
            if not 1 <= self.depth <= MAX_DEPTH["mlp"]:
                raise ValueError(f"depth must be between 1 and {MAX_DEPTH['mlp']} blocks for the MLP, got {self.depth}")
            if self.block_layers not in (1, 2):
                raise ValueError(f"block_layers must be 1 or 2 for the MLP, got {self.block_layers}")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 1 <= self.width <= MAX_WIDTH:
            raise ValueError(f"width must be an integer between 1 and {MAX_WIDTH}, got {self.width!r}")
        if isinstance(self.branch_scale, str):
            if self.branch_scale != _INV_SQRT:
                raise ValueError(f"branch_scale must be a positive number or '{_INV_SQRT}', got {self.branch_scale!r}")
        elif not (isinstance(self.branch_scale, (int, float)) and 0 < self.branch_scale <= 10):
            raise ValueError(f"branch_scale must be in (0, 10] or '{_INV_SQRT}', got {self.branch_scale!r}")
        if not 0 < self.shortcut_scale <= 1:
            raise ValueError(f"shortcut_scale must be in (0, 1], got {self.shortcut_scale}")
        if not 0.0 <= self.drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {self.drop_prob}")
        if self.n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {self.n_classes}")
        if not self.residual:
            for name, value, default in (("shortcut", self.shortcut, "identity"), ("init", self.init, "standard"),
                                         ("drop_prob", self.drop_prob, 0.0), ("branch_scale", self.branch_scale, 1.0)):
                if value != default:
                    raise ValueError(f"{name}={value!r} needs residual=True (a plain network has no shortcut); "
                                     f"use {name}={default!r} for a plain network")
        if self.init == "zero_gamma":
            if self.norm == "none" or self.order not in ("post", "relu_before_add", "relu_only_pre"):
                raise ValueError("init='zero_gamma' needs a norm after the branch's last weight layer: norm 'batch' or "
                                 f"'layer' and order 'post', 'relu_before_add' or 'relu_only_pre' (got norm={self.norm!r}, "
                                 f"order={self.order!r}); use init='zero_last' otherwise")
        if self.init == "fixup" and self.norm != "none":
            raise ValueError(f"init='fixup' replaces normalization: it needs norm='none', got norm={self.norm!r}")

    @property
    def n_blocks(self) -> int:
        return 3 * ((self.depth - 2) // 6) if self.arch == "cnn" else self.depth

    @property
    def branch_multiplier(self) -> float:
        return 1.0 / math.sqrt(self.n_blocks) if self.branch_scale == _INV_SQRT else float(self.branch_scale)

    def with_(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


def _choice(name: str, value, accepted: tuple) -> None:
    if value not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, accepted))}; got {value!r}")


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}[name]()


def _norm(kind: str, channels: int, conv: bool) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels) if conv else nn.BatchNorm1d(channels)
    return nn.GroupNorm(1, channels) if conv else nn.LayerNorm(channels)   # layer norm over (C, H, W) / features


def _weight(c_in: int, c_out: int, conv: bool, stride: int = 1, bias: bool = False) -> nn.Module:
    if conv:
        return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)
    return nn.Linear(c_in, c_out, bias=bias)


def _init_weight(layer: nn.Module, activation: str) -> None:
    """He (Kaiming) init for ReLU-like activations, Glorot (Xavier) for sigmoid and tanh."""
    if activation in ("relu", "gelu"):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    else:
        nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain(activation))
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


class _Scalar(nn.Module):
    """A learnable scalar, added (``bias``) or multiplied (``scale``)."""

    def __init__(self, value: float, multiply: bool):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))
        self.multiply = multiply

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value if self.multiply else x + self.value


class BlockTrace(NamedTuple):
    """What one block saw and wrote: its input, the shortcut and branch signals, and its output."""

    input: torch.Tensor
    shortcut: torch.Tensor
    branch: torch.Tensor
    output: torch.Tensor


class Block(nn.Module):
    """One block: ``join(shortcut(x), branch(x))`` if residual, ``branch(x)`` if plain.

    The branch holds ``m`` weight layers (3x3 convs or linear maps) with norms and activations
    placed by ``order``:

    * ``post`` (He et al. 2015): ``act(x + N(W2 act(N(W1 x))))``
    * ``pre`` (full pre-activation, He et al. 2016): ``x + W2 act(N(W1 act(N(x))))``
    * ``bn_after_add``: ``act(N(x + W2 act(N(W1 x))))``
    * ``relu_before_add``: ``x + act(N(W2 act(N(W1 x))))``
    * ``relu_only_pre``: ``x + N(W2 act(N(W1 act(x))))``

    Set ``block.deleted = True`` to delete the block at test time (residual: drop the branch, keep
    the shortcut; plain: the block's input passes through unchanged).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, cfg: ModelConfig, conv: bool, index: int):
        super().__init__()
        self.cfg, self.conv, self.index = cfg, conv, index
        self.residual = cfg.residual
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        m = cfg.block_layers
        bias = cfg.norm == "none"
        self.weights = nn.ModuleList(
            _weight(c_in if i == 0 else c_out, c_out, conv, stride if i == 0 else 1, bias) for i in range(m))
        if cfg.order == "pre":
            self.norms = nn.ModuleList(_norm(cfg.norm, c_in if i == 0 else c_out, conv) for i in range(m))
        elif cfg.order == "bn_after_add":
            self.norms = nn.ModuleList([*(_norm(cfg.norm, c_out, conv) for _ in range(m - 1)), nn.Identity()])
            self.join_norm = _norm(cfg.norm, c_out, conv)
        else:
            self.norms = nn.ModuleList(_norm(cfg.norm, c_out, conv) for _ in range(m))
        self.act = _activation(cfg.activation)
        for w in self.weights:
            _init_weight(w, cfg.activation)
        self.scale = cfg.branch_multiplier
        self.survival = 1.0 - cfg.drop_prob * (index + 1) / cfg.n_blocks
        self.deleted = False
        if cfg.residual:
            self._build_shortcut(cfg)
            self._apply_init(cfg)

    # -- construction ---------------------------------------------------------------------------
    def _build_shortcut(self, cfg: ModelConfig) -> None:
        kind = cfg.shortcut
        if kind == "conv1x1":
            proj = (nn.Conv2d(self.c_in, self.c_out, 1, stride=self.stride, bias=False) if self.conv
                    else nn.Linear(self.c_in, self.c_out, bias=False))
            self.proj = proj
        if kind in ("exclusive_gate", "shortcut_gate"):
            gate = nn.Conv2d(self.c_out, self.c_out, 1) if self.conv else nn.Linear(self.c_out, self.c_out)
            nn.init.zeros_(gate.weight)                     # the gate starts at sigmoid(gate_bias)
            nn.init.constant_(gate.bias, cfg.gate_bias)
            self.gate = gate

    def _apply_init(self, cfg: ModelConfig) -> None:
        if cfg.init == "zero_gamma":
            nn.init.zeros_(self.norms[-1].weight)           # the branch starts at exactly zero
        elif cfg.init == "zero_last":
            nn.init.zeros_(self.weights[-1].weight)
        elif cfg.init == "rezero":
            self.alpha = _Scalar(0.0, multiply=True)        # SkipInit / ReZero: x + alpha F(x), alpha = 0
        elif cfg.init == "fixup":
            m, L = cfg.block_layers, cfg.n_blocks
            if m > 1:
                for w in self.weights[:-1]:
                    w.weight.data.mul_(L ** (-1.0 / (2 * m - 2)))
            nn.init.zeros_(self.weights[-1].weight)
            self.fixup_bias = nn.ModuleList(_Scalar(0.0, multiply=False) for _ in range(m))
            self.fixup_scale = _Scalar(1.0, multiply=True)

    # -- the two paths ---------------------------------------------------------------------------
    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """The skip path, shaped like the branch output (option A when the shape changes)."""
        if self.cfg.residual and self.cfg.shortcut == "conv1x1":
            return self.proj(x)
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]                      # (B, C_in, H/2, W/2)
        if self.c_out > self.c_in:
            x = F.pad(x, (0, 0, 0, 0, 0, self.c_out - self.c_in) if self.conv else (0, self.c_out - self.c_in))
        return x

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the block's weight layers, scaled as configured."""
        order, m = self.cfg.order, len(self.weights)
        fixup = getattr(self, "fixup_bias", None)
        h = x
        if order == "pre":
            for i in range(m):
                h = self.act(self.norms[i](h))
                h = self.weights[i](fixup[i](h) if fixup is not None else h)
        else:
            if order == "relu_only_pre":
                h = self.act(h)
            for i in range(m):
                h = self.norms[i](self.weights[i](fixup[i](h) if fixup is not None else h))
                if i < m - 1:
                    h = self.act(h)
            if order == "relu_before_add":
                h = self.act(h)
        if fixup is not None:
            h = self.fixup_scale(h)
        if hasattr(self, "alpha"):
            h = self.alpha(h)
        return h * self.scale if self.scale != 1.0 else h

    def join(self, s: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Combine shortcut ``s`` and branch ``f`` (a plain block keeps ``f`` only)."""
        cfg = self.cfg
        if not cfg.residual:
            y = f
        elif cfg.shortcut == "scale":
            y = cfg.shortcut_scale * s + f
        elif cfg.shortcut in ("exclusive_gate", "shortcut_gate"):
            g = torch.sigmoid(self.gate(s))
            y = (1 - g) * s + (g * f if cfg.shortcut == "exclusive_gate" else f)
        elif cfg.shortcut == "dropout":
            # an UNSCALED Bernoulli(1/2) mask: expected scale 0.5, as in He et al. (2016)
            keep = torch.bernoulli(torch.full_like(s, 0.5)) if self.training else 0.5
            y = keep * s + f
        else:
            y = s + f
        if cfg.order == "post":
            y = self.act(y)
        elif cfg.order == "bn_after_add":
            y = self.act(self.join_norm(y))
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deleted:
            return self.join(self.shortcut(x), torch.zeros(())) if self.residual else self.shortcut(x)
        if self.residual and self.survival < 1.0:
            if self.training:
                if torch.rand(()) >= self.survival:                       # stochastic depth: skip the branch
                    return self.join(self.shortcut(x), torch.zeros(()))
                return self.join(self.shortcut(x), self.branch(x))
            return self.join(self.shortcut(x), self.survival * self.branch(x))
        return self.join(self.shortcut(x), self.branch(x))

    def trace(self, x: torch.Tensor) -> BlockTrace:
        s, f = self.shortcut(x), self.branch(x)
        return BlockTrace(x, s, f, self.forward(x))


class ResidualNet(nn.Module):
    """Stem -> blocks -> head, built from a :class:`ModelConfig` (see :func:`build_model`).

    ``main_layers()`` lists the weight layers on the main path in forward order (stem, each
    block's layers, head): the layers whose gradients the probes measure.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        conv = cfg.arch == "cnn"
        pre = cfg.order in ("pre", "relu_only_pre")
        bias = cfg.norm == "none"
        if conv:
            c_in = cfg.in_shape[0]
            self.stem = nn.Conv2d(c_in, cfg.width, 3, padding=1, bias=bias)
            n = (cfg.depth - 2) // 6
            widths = [cfg.width] * n + [2 * cfg.width] * n + [4 * cfg.width] * n
            strides = [1] * n + [2] + [1] * (n - 1) + [2] + [1] * (n - 1)
            c_prev, blocks = cfg.width, []
            for i, (c, s) in enumerate(zip(widths, strides)):
                blocks.append(Block(c_prev, c, s, cfg, conv=True, index=i))
                c_prev = c
            c_final = 4 * cfg.width
        else:
            d_in = int(math.prod(cfg.in_shape))
            self.stem = nn.Linear(d_in, cfg.width, bias=bias)
            blocks = [Block(cfg.width, cfg.width, 1, cfg, conv=False, index=i) for i in range(cfg.depth)]
            c_final = cfg.width
        _init_weight(self.stem, cfg.activation)
        # post-activation nets normalize and activate right after the stem; pre-activation nets at the end
        self.stem_norm = nn.Identity() if pre else _norm(cfg.norm, cfg.width, conv)
        self.stem_act = nn.Identity() if pre else _activation(cfg.activation)
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = _norm(cfg.norm, c_final, conv) if pre else nn.Identity()
        self.final_act = _activation(cfg.activation) if pre else nn.Identity()
        self.head = nn.Linear(c_final, cfg.n_classes)
        _init_weight(self.head, "sigmoid" if cfg.activation in ("sigmoid", "tanh") else "relu")
        nn.init.zeros_(self.head.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.arch == "mlp":
            x = x.flatten(1)                                               # (B, D)
        return self.stem_act(self.stem_norm(self.stem(x)))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        h = self.final_act(self.final_norm(h))
        if h.dim() == 4:
            h = h.mean(dim=(2, 3))                                         # global average pool: (B, C)
        return self.head(h)                                                # (B, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.readout(h)

    def trace(self, x: torch.Tensor) -> list[BlockTrace]:
        """Run ``x`` through the network and return each block's :class:`BlockTrace`."""
        h, out = self.embed(x), []
        for block in self.blocks:
            t = block.trace(h)
            out.append(t)
            h = t.output
        return out

    def main_layers(self) -> list[tuple[str, nn.Module]]:
        layers = [("stem", self.stem)]
        for i, block in enumerate(self.blocks):
            layers += [(f"block{i}.w{j}", w) for j, w in enumerate(block.weights)]
        return layers + [("head", self.head)]


def build_model(cfg: ModelConfig | None = None, seed: int | None = None, **fields) -> ResidualNet:
    """Build a network from a config (or from keyword fields), seeding its init when ``seed`` is given.

    >>> net = build_model(arch="cnn", depth=20, width=8, residual=False, seed=0)
    """
    if cfg is None:
        cfg = ModelConfig(**fields)
    elif fields:
        cfg = cfg.with_(**fields)
    if seed is not None:
        from skipnet.runtime import seed_everything
        seed_everything(seed)
    return ResidualNet(cfg)


@contextmanager
def deleted_blocks(model: ResidualNet, indices) -> Iterator[ResidualNet]:
    """Temporarily delete the blocks at ``indices`` (see :class:`Block`); restores them on exit."""
    indices = list(indices)
    n = len(model.blocks)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"block indices must be in 0..{n - 1}, got {bad}")
    before = [b.deleted for b in model.blocks]
    try:
        for i in indices:
            model.blocks[i].deleted = True
        yield model
    finally:
        for b, d in zip(model.blocks, before):
            b.deleted = d
