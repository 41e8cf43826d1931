"""Causal linear attention written as the recurrent network it is (Katharopoulos et al. 2020; Schlag et al. 2021).

Chapter: *Residual connections in Transformers (and the RNN question)*, the modern answer to "is it like an RNN?".

Softmax attention at the last position reads ``sum_t softmax(k_t . q_T) v_t``. Drop the softmax and the read is
``sum_t (k_t . q_T) v_t = S_T q_T`` with the state

    S_t = g_t * S_{t-1} + v_t k_t^T          (a d x d matrix carried from step to step)

* ``decay="none"`` (``g_t = 1``): an ADDITIVE state, ``S_t = S_{t-1} + v_t k_t^T``: the LSTM's constant error
  carousel without a forget gate (``c_t = c_{t-1} + i_t g_t``), a skip connection along time;
* ``decay="fixed"`` (``g_t = decay_value``): every step shrinks the past by the same factor;
* ``decay="gate"`` (``g_t = sigmoid(w . x_t + b)``, ``b = gate_bias``): a learned forget gate, the LSTM's ``f_t``
  (it starts open at ``sigmoid(gate_bias)``, as the LSTM's forget gate starts at ``sigmoid(forget_bias)``).

:class:`LinearAttentionRNN` computes the same read two ways: :meth:`~LinearAttentionRNN.forward` in closed form,
``sum_t (prod_{s>t} g_s) (k_t . q_T) v_t`` (fast: no loop), and :meth:`~LinearAttentionRNN.run` as the explicit
recurrence over ``S_t`` (a test checks that they agree). The input at step t is a token embedding plus a learned
position embedding: without positions an additive state is a bag of tokens and cannot tell which came first.
The read-out is ``head(LN(S_T q_T))``, so the net plugs into :class:`skipnet.recurrent.RecallTask` like the RNNs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.checks import check_choice, check_float, check_int
from skipnet.config import Config

__all__ = ["LinearAttentionConfig", "LinearAttentionRNN", "DECAYS"]

DECAYS = ("none", "fixed", "gate")


@dataclass(frozen=True)
class LinearAttentionConfig(Config):
    """width: model dimension d (the state is d x d); vocab: input tokens and classes; seq_len: longest sequence
    (learned positions); decay: ``"none"``, ``"fixed"`` (``decay_value``) or ``"gate"`` (bias ``gate_bias``)."""

    width: int = 64
    vocab: int = 8
    seq_len: int = 128
    decay: str = "none"
    decay_value: float = 0.9
    gate_bias: float = 1.0
    positions: bool = True

    def __post_init__(self) -> None:
        check_int("width", self.width, 1, 1024)
        check_int("vocab", self.vocab, 2, 4096)
        check_int("seq_len", self.seq_len, 1, 4096)
        check_choice("decay", self.decay, DECAYS)
        check_float("decay_value", self.decay_value, 0, 1, low_open=True)
        check_float("gate_bias", self.gate_bias, -20, 20)

    @property
    def label(self) -> str:
        kind = {"none": "linear attention (additive state)", "fixed": f"linear attention, decay {self.decay_value:g}",
                "gate": "linear attention, gated decay"}[self.decay]
        return kind if self.positions else f"{kind}, no positions"

    def network(self) -> "LinearAttentionRNN":
        return LinearAttentionRNN(self)


class LinearAttentionRNN(nn.Module):
    """Embedding (+ positions) -> q, k, v -> the state ``S_t = g_t S_{t-1} + v_t k_t^T`` -> ``head(LN(S_T q_T))``."""

    def __init__(self, cfg: LinearAttentionConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.embed = nn.Embedding(cfg.vocab, d)
        nn.init.normal_(self.embed.weight, std=1.0)
        self.pos = nn.Embedding(cfg.seq_len, d) if cfg.positions else None
        if self.pos is not None:
            nn.init.normal_(self.pos.weight, std=1.0)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        nn.init.normal_(self.qkv.weight, std=1.0 / math.sqrt(d))
        self.gate = nn.Linear(d, 1) if cfg.decay == "gate" else None
        if self.gate is not None:                          # the gate starts at sigmoid(gate_bias) for every input
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, cfg.gate_bias)
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab)

    def inputs(self, X: torch.Tensor) -> torch.Tensor:
        T = X.shape[1]
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence length must be at most seq_len={self.cfg.seq_len}, got {T}")
        x = self.embed(X)                                                      # (B, T, d)
        return x if self.pos is None else x + self.pos(torch.arange(T, device=X.device))

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        """``log g_t`` for every step (B, T) (zeros without decay)."""
        B, T, _ = x.shape
        if self.cfg.decay == "gate":
            return F.logsigmoid(self.gate(x)).squeeze(-1)
        if self.cfg.decay == "fixed":
            return x.new_full((B, T), math.log(self.cfg.decay_value))
        return x.new_zeros(B, T)

    def forward(self, X: torch.Tensor) -> torch.Tensor:      # (B, T) tokens -> (B, vocab) logits
        x = self.inputs(X)
        q, k, v = self.qkv(x).chunk(3, dim=-1)                                 # 3 x (B, T, d)
        lg = self.log_decay(x)
        weight = (lg.flip(1).cumsum(1).flip(1) - lg).exp()                     # prod_{s>t} g_s, (B, T)
        scores = (k * q[:, -1:]).sum(-1) * weight                              # (k_t . q_T) * decay, (B, T)
        return self.head(self.ln((scores.unsqueeze(-1) * v).sum(1)))          # S_T q_T -> (B, vocab)

    def run(self, X: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The recurrence itself: the read ``S_T q_T`` (B, d) and the state ``S_t`` (B, d, d) at every step."""
        x = self.inputs(X)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        g = self.log_decay(x).exp()                                            # (B, T)
        S = x.new_zeros(x.shape[0], x.shape[2], x.shape[2])
        states = []
        for t in range(x.shape[1]):
            S = g[:, t, None, None] * S + v[:, t, :, None] * k[:, t, None, :]  # S_t = g_t S_{t-1} + v_t k_t^T
            states.append(S)
        return (S @ q[:, -1, :, None]).squeeze(-1), states

    def main_layers(self) -> list[tuple[str, nn.Module]]:
        return [("embed", self.embed), ("qkv", self.qkv), ("head", self.head)]
