"""Plain and residual networks that differ ONLY in the skip connection.

The whole book is about one line, the forward pass of :class:`ResidualBlock`::

    return self.post(self.branch(x) + self.shortcut(x))          # y = F(x) + x, then ReLU if post-activation

Its plain twin, :class:`PlainBlock`, computes ``self.post(self.branch(x))`` with the very same layers and
initial weights. The parts are small modules of their own: the branch ``F`` (:class:`~skipnet.branch.Branch`,
with its placements and inits, optionally dropped by stochastic depth) in :mod:`skipnet.branch`; the shortcut
(the identity and the variants of He et al. 2016, Table 1) in :mod:`skipnet.shortcuts`; ``post``, what acts on
the stream after the addition (a ReLU for the original post-activation block).

Everything the chapters vary is a field of the frozen :class:`ModelConfig`. Probes run the stream with
:meth:`ResidualNet.blocks_forward`, whose one walk, :func:`stream_states`, every network of the package shares.

Chapters: the opening chapter (degradation), *The gradient highway* (activations, norms), *The
identity mapping* (placements, shortcuts, inits) and *An ensemble of relatively shallow paths*.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from skipnet.branch import Branch, StochasticDepth, activation, after_add, init_weight, norm_layer
from skipnet.checks import check_choice, check_float, check_int
from skipnet.config import Config
from skipnet.shortcuts import GatedBranch, make_shortcut

__all__ = ["ModelConfig", "ResidualNet", "ResidualBlock", "PlainBlock", "make_block", "weight_layers", "stream_states",
           "n_params", "build_model", "ARCHS", "NORMS", "ACTIVATIONS", "PLACEMENTS", "SHORTCUTS", "INITS",
           "SHORTCUT_INITS", "MAX_DEPTH"]

ARCHS = ("cnn", "mlp")
NORMS = ("none", "batch", "layer")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")
PLACEMENTS = ("post", "pre", "bn_after_add", "relu_before_add", "relu_only_pre")
SHORTCUTS = ("identity", "scale", "exclusive_gate", "shortcut_gate", "conv1x1", "dropout")
INITS = ("standard", "zero_gamma", "zero_last", "rezero", "fixup")
SHORTCUT_INITS = ("default", "identity", "orthogonal")    # of the 1x1 (``conv1x1``) shortcut
OPTIONAL_FIELDS = {"shortcut_init": "default", "final_norm": False, "zero_head": False}   # left out of as_dict at default
MAX_DEPTH = 1202              # weight layers of the CNN (He et al. 2015's deepest); MLPs: MAX_MLP_BLOCKS blocks
MAX_MLP_BLOCKS = 1000
MAX_WIDTH = 1024
_INV_SQRT = "1/sqrt(L)"


@dataclass(frozen=True)
class ModelConfig(Config):
    """Everything that defines a network. Invalid values raise ``ValueError`` naming the field.

    depth / n_blocks: give one, the other is derived. ``depth`` counts weight layers on the main path
        (stem, blocks, head): for the CNN it is 6n+2 (8, 14, 20, ..., 56, 110) with ``n_blocks = 3n``.
        An MLP is usually given by ``n_blocks``, hidden blocks of ``block_layers`` weight layers each
        (``depth = n_blocks * block_layers + 2``). Default: depth 20 (CNN) or 20 blocks (MLP).
    width: channels of the first CNN stage (the stages have width, 2 width, 4 width) or MLP width.
    norm: the kind of normalization (``none`` / ``batch`` / ``layer``); ``placement``: where norm and
        activation sit relative to the addition (He et al. 2016, Fig. 4). ``None`` picks ``post`` (He et
        al. 2015, ReLU after the addition) for the CNN and ``pre`` (full pre-activation) for the MLP.
    branch_scale: a constant multiplying the residual branch, or ``"1/sqrt(L)"`` (one over the square
        root of the number of blocks).
    shortcut_scale: the constant lambda of the ``scale`` shortcut, ``y = lambda x + F(x)`` (He et al. 2016
        use 0.5; up to 2, so that the identity chapter's lambda map can cross lambda = 1).
    shortcut_init: how the 1x1 (``conv1x1``) shortcut starts: ``default`` (PyTorch's own init, entries of
        std 1/sqrt(3 fan_in): the product of many such maps shrinks the signal), ``identity`` (I, or its
        first c_in columns where the width grows) or ``orthogonal`` (a random orthogonal matrix).
    final_norm: give every placement a norm before the head. Pre-activation placements already end
        in a norm and an activation; with ``final_norm=True`` the others get a norm (no activation) on
        the stream before pooling, so that every placement's classifier reads a normalized signal.
    zero_head: start the classifier at zero (weight and bias): every placement starts at the same loss, log C.
    gate_bias: initial bias of the gates of ``exclusive_gate`` / ``shortcut_gate`` shortcuts.
    drop_prob: stochastic depth (Huang et al. 2016): the last block's branch is dropped with this
        probability during training, earlier blocks' linearly less often.
    """

    arch: str = "cnn"
    depth: int | None = None
    n_blocks: int | None = None
    width: int = 16
    residual: bool = True
    norm: str = "batch"
    activation: str = "relu"
    placement: str | None = None
    shortcut: str = "identity"
    block_layers: int = 2
    branch_scale: float | str = 1.0
    shortcut_scale: float = 0.5
    shortcut_init: str = "default"
    gate_bias: float = 0.0
    init: str = "standard"
    drop_prob: float = 0.0
    in_shape: tuple[int, ...] = (1, 8, 8)
    n_classes: int = 10
    final_norm: bool = False
    zero_head: bool = False

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCHS)
        if self.placement is None:
            object.__setattr__(self, "placement", "post" if self.arch == "cnn" else "pre")
        check_choice("norm", self.norm, NORMS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("placement", self.placement, PLACEMENTS)
        check_choice("shortcut", self.shortcut, SHORTCUTS)
        check_choice("init", self.init, INITS)
        self._depth_and_blocks()
        check_int("width", self.width, 1, MAX_WIDTH)
        if isinstance(self.branch_scale, str):
            if self.branch_scale != _INV_SQRT:
                raise ValueError(f"branch_scale must be a positive number or '{_INV_SQRT}', got {self.branch_scale!r}")
        else:
            check_float("branch_scale", self.branch_scale, 0, 10, low_open=True)
        check_float("shortcut_scale", self.shortcut_scale, 0, 2, low_open=True)
        check_choice("shortcut_init", self.shortcut_init, SHORTCUT_INITS)
        if self.shortcut_init != "default" and self.shortcut != "conv1x1":
            raise ValueError(f"shortcut_init={self.shortcut_init!r} needs shortcut='conv1x1' (only the 1x1 shortcut "
                             f"has weights), got shortcut={self.shortcut!r}")
        for name in ("final_norm", "zero_head"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_float("gate_bias", self.gate_bias, -100, 100)
        check_float("drop_prob", self.drop_prob, 0, 1, high_open=True)
        check_int("n_classes", self.n_classes, 1)
        if not self.residual:
            for name, value, default in (("shortcut", self.shortcut, "identity"), ("init", self.init, "standard"),
                                         ("drop_prob", self.drop_prob, 0.0), ("branch_scale", self.branch_scale, 1.0)):
                if value != default:
                    raise ValueError(f"{name}={value!r} needs residual=True (a plain network has no shortcut); "
                                     f"use {name}={default!r} for a plain network")
        if self.init == "zero_gamma":
            if self.norm == "none" or self.placement not in ("post", "relu_before_add", "relu_only_pre"):
                raise ValueError("init='zero_gamma' needs a norm after the branch's last weight layer: norm 'batch' or "
                                 f"'layer' and placement 'post', 'relu_before_add' or 'relu_only_pre' (got norm="
                                 f"{self.norm!r}, placement={self.placement!r}); use init='zero_last' otherwise")
        if self.init == "fixup" and self.norm != "none":
            raise ValueError(f"init='fixup' replaces normalization: it needs norm='none', got norm={self.norm!r}")

    def _depth_and_blocks(self) -> None:
        """Fill in whichever of ``depth`` / ``n_blocks`` was not given, and check that they agree."""
        depth, n = self.depth, self.n_blocks
        if self.arch == "cnn":
            check_int("block_layers", self.block_layers, 2, 2)   # two 3x3 convolutions a block
            if len(self.in_shape) != 3:
                raise ValueError(f"in_shape must be (channels, height, width) for the CNN, got {self.in_shape}")
            if depth is None:
                depth = 20 if n is None else 2 * check_int("n_blocks", n, 3, 3 * ((MAX_DEPTH - 2) // 6)) + 2
            depth = check_int("depth", depth, 8, MAX_DEPTH)
            if (depth - 2) % 6:
                raise ValueError(f"depth must be 6n+2 with n >= 1 for the CNN (8, 14, 20, 26, 32, ..., 56, ..., 110, "
                                 f"up to {MAX_DEPTH}), got {depth}")
            blocks = (depth - 2) // 2
        else:
            m = check_int("block_layers", self.block_layers, 1, 2)
            if n is None and depth is not None:
                depth = check_int("depth", depth, m + 2, MAX_MLP_BLOCKS * m + 2)
                if (depth - 2) % m:
                    raise ValueError(f"depth must be n_blocks * block_layers + 2 for the MLP (block_layers={m}), "
                                     f"got {depth}; or give n_blocks")
                n = (depth - 2) // m
            blocks = check_int("n_blocks", 20 if n is None else n, 1, MAX_MLP_BLOCKS)
            depth = blocks * m + 2
        if self.n_blocks is not None and self.n_blocks != blocks:
            raise ValueError(f"n_blocks={self.n_blocks} does not match depth={depth} (give one of them)")
        if self.depth is not None and self.depth != depth:
            raise ValueError(f"depth={self.depth} does not match n_blocks={self.n_blocks} (give one of them)")
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "n_blocks", blocks)

    def as_dict(self) -> dict:
        """The fields as a dict. The options added for the identity chapter's reruns (``OPTIONAL_FIELDS``) appear
        only when set, so the configs recorded by earlier sweeps still equal the package's."""
        d = super().as_dict()
        for name, default in OPTIONAL_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    def with_(self, **changes) -> "ModelConfig":
        """A copy with some fields changed; changing ``depth`` re-derives ``n_blocks`` and vice versa."""
        if "depth" in changes and "n_blocks" not in changes:
            changes["n_blocks"] = None
        elif "n_blocks" in changes and "depth" not in changes:
            changes["depth"] = None
        if "arch" in changes and not {"depth", "n_blocks"} & set(changes):
            changes.update(depth=None, n_blocks=None)
        return super().with_(**changes)

    @property
    def branch_multiplier(self) -> float:
        return 1.0 / math.sqrt(self.n_blocks) if self.branch_scale == _INV_SQRT else float(self.branch_scale)

    @property
    def label(self) -> str:
        """``"residual-56"`` / ``"plain-20"`` for the CNN, ``"residual MLP, 30 blocks"`` for the MLP."""
        kind = "residual" if self.residual else "plain"
        return f"{kind}-{self.depth}" if self.arch == "cnn" else f"{kind} MLP, {self.n_blocks} blocks"

    def network(self) -> "ResidualNet":
        return ResidualNet(self)


# -- blocks -------------------------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """``y = post(F(x) + shortcut(x))``: the residual block (``post`` is a ReLU for He et al. 2015's block)."""

    def __init__(self, shortcut: nn.Module, branch: nn.Module, post: nn.Module, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.branch, self.shortcut, self.post = branch, shortcut, post    # parameters: branch first, then gate/proj
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.branch(x) + self.shortcut(x))


class PlainBlock(nn.Module):
    """``y = post(F(x))``: the same block without the skip."""

    def __init__(self, branch: nn.Module, post: nn.Module, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.branch, self.post = branch, post
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.branch(x))


def make_block(c_in: int, c_out: int, stride: int, cfg: ModelConfig, conv: bool, index: int) -> nn.Module:
    """Block ``index`` (0-based) of the network ``cfg``, plain or residual with its shortcut variant."""
    branch = Branch(c_in, c_out, stride, cfg, conv)
    post = after_add(cfg, c_out, conv)
    if not cfg.residual:
        return PlainBlock(branch, post, c_in, c_out, stride)
    shortcut = make_shortcut(cfg, c_in, c_out, stride, conv)
    branch.init_(cfg)
    if cfg.shortcut == "exclusive_gate":
        branch = GatedBranch(branch, shortcut.gate)
    survival = 1.0 - cfg.drop_prob * (index + 1) / cfg.n_blocks
    if survival < 1.0:
        branch = StochasticDepth(branch, survival)
    return ResidualBlock(shortcut, branch, post, c_in, c_out, stride)


def weight_layers(block: nn.Module) -> nn.ModuleList:
    """The weight layers of a block's branch (whatever wraps it: a gate, stochastic depth)."""
    branch = block.branch
    while not isinstance(branch, Branch):
        branch = branch.inner
    return branch.weights


# -- the network ---------------------------------------------------------------------------------------------
def stream_states(blocks, h: torch.Tensor, start: int = 0) -> list[torch.Tensor]:
    """``h`` and the stream after each of ``blocks[start:]`` in turn (every network's ``blocks_forward``)."""
    states = [h]
    for block in list(blocks)[start:]:
        states.append(block(states[-1]))
    return states


class ResidualNet(nn.Module):
    """Stem -> blocks -> head, built from a :class:`ModelConfig` (see :func:`build_model`).

    ``blocks_forward(h)`` runs an embedded stream through the blocks and returns it before and after each
    (the probes' one way to walk the stream); ``main_layers()`` lists the weight layers on the main path
    in forward order (stem, each block's layers, head): the layers whose gradients the probes measure.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        conv = cfg.arch == "cnn"
        pre = cfg.placement in ("pre", "relu_only_pre")
        bias = cfg.norm == "none"
        if conv:
            self.stem = nn.Conv2d(cfg.in_shape[0], cfg.width, 3, padding=1, bias=bias)
            n = cfg.n_blocks // 3
            widths = [cfg.width] * n + [2 * cfg.width] * n + [4 * cfg.width] * n
            strides = [1] * n + [2] + [1] * (n - 1) + [2] + [1] * (n - 1)
            c_prev, blocks = cfg.width, []
            for i, (c, s) in enumerate(zip(widths, strides)):
                blocks.append(make_block(c_prev, c, s, cfg, conv=True, index=i))
                c_prev = c
            c_final = 4 * cfg.width
        else:
            self.stem = nn.Linear(int(math.prod(cfg.in_shape)), cfg.width, bias=bias)
            blocks = [make_block(cfg.width, cfg.width, 1, cfg, conv=False, index=i) for i in range(cfg.n_blocks)]
            c_final = cfg.width
        init_weight(self.stem, cfg.activation)
        # post-activation nets normalize and activate right after the stem; pre-activation nets at the end
        self.stem_norm = nn.Identity() if pre else norm_layer(cfg.norm, cfg.width, conv)
        self.stem_act = nn.Identity() if pre else activation(cfg.activation)
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = norm_layer(cfg.norm, c_final, conv) if pre or cfg.final_norm else nn.Identity()
        self.final_act = activation(cfg.activation) if pre else nn.Identity()
        self.head = nn.Linear(c_final, cfg.n_classes)
        init_weight(self.head, "sigmoid" if cfg.activation in ("sigmoid", "tanh") else "relu")
        nn.init.zeros_(self.head.bias)
        if cfg.zero_head:
            nn.init.zeros_(self.head.weight)

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
            h = block(h)                                                   # x_{l+1} = post(x_l + F_l(x_l))
        return self.readout(h)

    def blocks_forward(self, h: torch.Tensor, start: int = 0, blocks=None) -> list[torch.Tensor]:
        """The stream ``h`` entering block ``start``, and after each later block: ``n - start + 1`` tensors.

        ``blocks`` runs other modules in place of ``self.blocks`` (a probe's reordering or lesion);
        the model itself is never changed.
        """
        return stream_states(self.blocks if blocks is None else blocks, h, start)

    def main_layers(self) -> list[tuple[str, nn.Module]]:
        layers = [("stem", self.stem)]
        for i, block in enumerate(self.blocks):
            layers += [(f"block{i}.w{j}", w) for j, w in enumerate(weight_layers(block))]
        return layers + [("head", self.head)]


def n_params(net: nn.Module | Config) -> int:
    """The number of parameters of a network (any module), or of the one a config builds."""
    if isinstance(net, Config):
        net = net.build(seed=0)
    return sum(p.numel() for p in net.parameters())


def build_model(cfg: Config | None = None, seed: int | None = None, **fields) -> nn.Module:
    """The network of ``cfg`` (any model config: this, the Transformer's, the RNN's) with ``fields``
    changed, its initialization seeded when ``seed`` is given. Without ``cfg`` the fields make a
    :class:`ModelConfig`.

    >>> net = build_model(arch="cnn", depth=20, width=8, residual=False, seed=0)
    """
    cfg = ModelConfig(**fields) if cfg is None else cfg.with_(**fields) if fields else cfg
    return cfg.build(seed)
