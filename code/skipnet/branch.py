"""The residual branch F of :mod:`skipnet.models` and what sits around the addition.

* :class:`Branch`: ``m`` weight layers (3x3 convs or linear maps) with norms and activations where
  ``placement`` puts them (He et al. 2016, Fig. 4), times a constant ``branch_scale``, with the
  identity-preserving inits of *The identity mapping* (zero-gamma, zero-last, ReZero, Fixup-style);
* :class:`StochasticDepth`: the branch dropped at random in training (Huang et al. 2016);
* :func:`after_add`: what acts on the stream after the addition (a ReLU for He et al. 2015's block);
* the layer helpers every network of the package uses: :func:`activation`, :func:`norm_layer`,
  :func:`init_weight`.

Each takes the :class:`~skipnet.models.ModelConfig` being built. Chapters: the opening chapter, *The gradient
highway*, *The identity mapping*, *An ensemble of relatively shallow paths*.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from skipnet.config import Config

__all__ = ["Branch", "StochasticDepth", "after_add", "activation", "norm_layer", "init_weight"]


# -- layers -------------------------------------------------------------------------------------------
def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}[name]()


def norm_layer(kind: str, channels: int, conv: bool) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels) if conv else nn.BatchNorm1d(channels)
    return nn.GroupNorm(1, channels) if conv else nn.LayerNorm(channels)   # layer norm over (C, H, W) / features


def _weight(c_in: int, c_out: int, conv: bool, stride: int = 1, bias: bool = False) -> nn.Module:
    if conv:
        return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)
    return nn.Linear(c_in, c_out, bias=bias)


def init_weight(layer: nn.Module, activation: str) -> None:
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


# -- the branch F ---------------------------------------------------------------------------------------
class Branch(nn.Module):
    """F(x): ``m`` weight layers (3x3 convs or linear maps) with norms and activations placed by ``placement``:

    * ``post`` (He et al. 2015):       ``N(W2 act(N(W1 x)))``, and the block applies ``act`` after the add
    * ``pre`` (full pre-activation):   ``W2 act(N(W1 act(N(x))))``
    * ``bn_after_add``:                ``W2 act(N(W1 x))``, and the block applies ``act(N(.))`` after the add
    * ``relu_before_add``:             ``act(N(W2 act(N(W1 x))))``
    * ``relu_only_pre``:               ``N(W2 act(N(W1 act(x))))``

    The output is multiplied by ``branch_scale`` (and by a ReZero scalar ``alpha`` or the Fixup-style
    multiplier where the init asks for one).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, cfg: Config, conv: bool):
        super().__init__()
        m, bias = cfg.block_layers, cfg.norm == "none"
        self.placement = cfg.placement
        self.weights = nn.ModuleList(
            _weight(c_in if i == 0 else c_out, c_out, conv, stride if i == 0 else 1, bias) for i in range(m))
        if cfg.placement == "pre":
            self.norms = nn.ModuleList(norm_layer(cfg.norm, c_in if i == 0 else c_out, conv) for i in range(m))
        elif cfg.placement == "bn_after_add":
            self.norms = nn.ModuleList([*(norm_layer(cfg.norm, c_out, conv) for _ in range(m - 1)), nn.Identity()])
        else:
            self.norms = nn.ModuleList(norm_layer(cfg.norm, c_out, conv) for _ in range(m))
        self.act = activation(cfg.activation)
        for w in self.weights:
            init_weight(w, cfg.activation)
        self.scale = cfg.branch_multiplier
        self.alpha = self.fixup_bias = self.fixup_scale = None

    def init_(self, cfg: Config) -> None:
        """Apply the identity-preserving initializations of *The identity mapping*."""
        if cfg.init == "zero_gamma":
            nn.init.zeros_(self.norms[-1].weight)           # the branch starts at exactly zero
        elif cfg.init == "zero_last":
            nn.init.zeros_(self.weights[-1].weight)
        elif cfg.init == "rezero":
            self.alpha = _Scalar(0.0, multiply=True)        # SkipInit / ReZero: x + alpha F(x), alpha = 0
        elif cfg.init == "fixup":
            # Fixup-style (Zhang et al. 2019, the branch part only): the last layer at zero, the others scaled by
            # L^(-1/(2m-2)), a scalar bias before each weight layer and a scalar multiplier. Not done here (full
            # Fixup): the zeroed classifier, the scalar biases before each activation and after the multiplier,
            # bias-free weight layers (these keep a per-channel bias, which stands in for the missing scalars).
            m, L = cfg.block_layers, cfg.n_blocks
            if m > 1:
                for w in self.weights[:-1]:
                    w.weight.data.mul_(L ** (-1.0 / (2 * m - 2)))
            nn.init.zeros_(self.weights[-1].weight)
            self.fixup_bias = nn.ModuleList(_Scalar(0.0, multiply=False) for _ in range(m))
            self.fixup_scale = _Scalar(1.0, multiply=True)

    def _layer(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.weights[i](h if self.fixup_bias is None else self.fixup_bias[i](h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, m = x, len(self.weights)
        if self.placement == "pre":
            for i in range(m):
                h = self._layer(i, self.act(self.norms[i](h)))
        else:
            if self.placement == "relu_only_pre":
                h = self.act(h)
            for i in range(m):
                h = self.norms[i](self._layer(i, h))
                if i < m - 1:
                    h = self.act(h)
            if self.placement == "relu_before_add":
                h = self.act(h)
        if self.fixup_scale is not None:
            h = self.fixup_scale(h)
        if self.alpha is not None:
            h = self.alpha(h)
        return h * self.scale if self.scale != 1.0 else h


class StochasticDepth(nn.Module):
    """Stochastic depth (Huang et al. 2016) around a branch: in training the branch is dropped (its output
    is 0) with probability ``1 - survival``; at test time it is kept and scaled by ``survival``, its
    expected contribution."""

    def __init__(self, branch: nn.Module, survival: float):
        super().__init__()
        self.inner, self.survival = branch, survival

    @property
    def draws_at_random(self) -> bool:
        """Whether training draws from torch's global generator (read by :func:`skipnet.race.race`)."""
        return self.survival < 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.survival * self.inner(x)
        if torch.rand(()) >= self.survival:
            return torch.zeros(())                          # dropped this step: the block is its shortcut
        return self.inner(x)


def after_add(cfg: Config, c_out: int, conv: bool) -> nn.Module:
    """What acts on the stream after the addition: a ReLU (``post``), a norm and a ReLU (``bn_after_add``),
    nothing for the placements that leave the stream a pure sum."""
    if cfg.placement == "post":
        return activation(cfg.activation)
    if cfg.placement == "bn_after_add":
        return nn.Sequential(norm_layer(cfg.norm, c_out, conv), activation(cfg.activation))
    return nn.Identity()
