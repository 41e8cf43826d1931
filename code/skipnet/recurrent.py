"""Recurrent networks for the RNN question: is a skip connection like an RNN?

Chapter: *Residual connections in Transformers (and the RNN question)*.

Three recurrences over time, written out step by step so that each update is visible:

* ``"tanh"`` (Elman): ``h_t = tanh(W h_{t-1} + U x_t + b)``: every step MULTIPLIES the
  past by ``W`` and ``tanh'``; a signal from step 1 reaches step T through T such factors.
* ``"lstm"`` without forget gate (``forget_gate=False``, the 1997 LSTM of Hochreiter and
  Schmidhuber): ``c_t = c_{t-1} + i_t * g_t``: the cell state is ADDED to, a skip connection along
  time (the "constant error carousel": dc_T/dc_1 has an identity term).
* ``"lstm"`` with forget gate (Gers et al. 2000): ``c_t = f_t * c_{t-1} + i_t * g_t``: a GATED
  skip, like a Highway layer (Srivastava et al. 2015); it is a clean skip only while ``f_t`` is near 1.
* ``"gru"`` (Cho et al. 2014, torch's convention): ``h_t = (1 - z_t) n_t + z_t h_{t-1}``, a coupled gated skip.
* ``"additive"``: ``h_t = h_{t-1} + tanh(W h_{t-1} + U x_t + b)``, a gate-free residual block along time (the
  un-gated carousel, which cannot close against distractors).

Read-out from the last step: ``RecurrentNet(X)`` maps tokens (B, T) to logits (B, vocab).
:class:`RecallTask` is the long-range task: remember the first token through T - 1 distractors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from skipnet.checks import check_choice, check_int
from skipnet.config import Config

__all__ = ["RecurrentConfig", "RecurrentNet", "RecallTask", "CELLS"]

CELLS = ("tanh", "lstm", "gru", "additive")
_GATES = {"tanh": 1, "additive": 1, "gru": 3, "lstm": 4}


@dataclass(frozen=True)
class RecurrentConfig(Config):
    """cell: ``"tanh"`` or ``"lstm"``; forget_gate / forget_bias apply to the LSTM (the forget gate
    starts open at ``sigmoid(forget_bias)``); width: hidden units; vocab: input tokens and classes."""

    cell: str = "lstm"
    width: int = 64
    forget_gate: bool = True
    forget_bias: float = 1.0
    vocab: int = 8

    def __post_init__(self) -> None:
        check_choice("cell", self.cell, CELLS)
        check_int("width", self.width, 1, 1024)
        check_int("vocab", self.vocab, 2, 4096)

    @property
    def label(self) -> str:
        if self.cell in ("tanh", "gru", "additive"):
            return {"tanh": "tanh RNN", "gru": "GRU", "additive": "additive RNN"}[self.cell]
        return "LSTM (forget gate)" if self.forget_gate else "LSTM, no forget gate"

    def network(self) -> "RecurrentNet":
        return RecurrentNet(self)


class RecurrentNet(nn.Module):
    """Embedding -> recurrence over time -> linear read-out of the last hidden state.

    ``run(X)`` also returns the per-step carried states (``h`` for tanh, the cell state ``c`` for the
    LSTM), so that the through-time gradient probe can differentiate the end with respect to each step.
    """

    def __init__(self, cfg: RecurrentConfig):
        super().__init__()
        self.cfg = cfg
        H, n_gates = cfg.width, _GATES[cfg.cell]
        self.embed = nn.Embedding(cfg.vocab, H)
        self.U = nn.Linear(H, n_gates * H)                         # input -> gates (with bias)
        self.W = nn.Linear(H, n_gates * H, bias=False)             # hidden -> gates
        nn.init.normal_(self.embed.weight, std=1.0)
        nn.init.normal_(self.U.weight, std=1.0 / math.sqrt(H))
        nn.init.zeros_(self.U.bias)
        for k in range(n_gates):                                    # orthogonal recurrent blocks (gain 1)
            nn.init.orthogonal_(self.W.weight.data[k * H:(k + 1) * H])
        if cfg.cell == "lstm":
            nn.init.constant_(self.U.bias.data[H:2 * H], cfg.forget_bias)   # gate order: i, f, g, o
        self.head = nn.Linear(H, cfg.vocab)

    def run(self, X: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The last hidden state (B, H) and the carried state at every step (T tensors (B, H))."""
        B, T = X.shape
        H = self.cfg.width
        xs = self.U(self.embed(X))                                  # (B, T, gates * H), all steps at once
        h = xs.new_zeros(B, H)
        c = xs.new_zeros(B, H)
        kept = []
        for t in range(T):
            if self.cfg.cell == "gru":                              # torch's GRU: the reset gate scales W_n h
                xr, xz, xn = xs[:, t].chunk(3, dim=1)
                hr, hz, hn = self.W(h).chunk(3, dim=1)
                r, u = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                h = (1 - u) * torch.tanh(xn + r * hn) + u * h
                kept.append(h)
                continue
            z = xs[:, t] + self.W(h)                                # (B, gates * H)
            if self.cfg.cell == "tanh":
                h = torch.tanh(z)
                carried = h
            elif self.cfg.cell == "additive":
                h = h + torch.tanh(z)
                carried = h
            else:
                i, f, g, o = z.chunk(4, dim=1)                      # 4 x (B, H)
                update = torch.sigmoid(i) * torch.tanh(g)
                c = torch.sigmoid(f) * c + update if self.cfg.forget_gate else c + update
                h = torch.sigmoid(o) * torch.tanh(c)
                carried = c
            kept.append(carried)
        return h, kept

    def forward(self, X: torch.Tensor) -> torch.Tensor:          # (B, T) tokens -> (B, vocab) logits
        if self.cfg.cell in ("tanh", "gru") or (self.cfg.cell == "lstm" and self.cfg.forget_gate):
            return self.head(self._fused_last(X))
        return self.head(self.run(X)[0])

    def _fused_last(self, X: torch.Tensor) -> torch.Tensor:
        """The last hidden state of the same recurrence through torch's fused RNN / LSTM kernel (what ``nn.RNN`` and
        ``nn.LSTM`` call; same gate order i, f, g, o), about twice as fast to train as the loop in :meth:`run`, which
        stays the reference (a test checks that both give the same output and gradients). The forget-gate-free LSTM
        has no fused kernel."""
        e = self.embed(X)                                           # (B, T, H)
        h0 = e.new_zeros(1, X.shape[0], self.cfg.width)
        params = [self.U.weight, self.W.weight, self.U.bias, self.W.weight.new_zeros(self.W.weight.shape[0])]
        if self.cfg.cell == "tanh":
            out, _ = torch.rnn_tanh(e, h0, params, True, 1, 0.0, self.training, False, True)
        elif self.cfg.cell == "gru":
            out, _ = torch.gru(e, h0, params, True, 1, 0.0, self.training, False, True)
        else:
            out, _, _ = torch.lstm(e, (h0, h0), params, True, 1, 0.0, self.training, False, True)
        return out[:, -1]                                           # (B, H)

    def main_layers(self) -> list[tuple[str, nn.Module]]:
        return [("embed", self.embed), ("U", self.U), ("W", self.W), ("head", self.head)]


@dataclass(frozen=True)
class RecallTask:
    """Remember the first token: X (B, seq_len) uniform tokens in ``[0, vocab)``, y (B,) = X[:, 0].

    Everything after the first token is a distractor, so the answer must survive ``seq_len - 1``
    updates of the recurrence. Chance loss is ``ln(vocab)``.
    """

    seq_len: int = 40
    vocab: int = 8

    def __post_init__(self) -> None:
        check_int("seq_len", self.seq_len, 2, 2000)
        check_int("vocab", self.vocab, 2, 4096)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.randint(0, self.vocab, (batch_size, self.seq_len), generator=generator)   # (B, T)
        return X, X[:, 0].clone()                                                           # (B,)

    @property
    def chance_loss(self) -> float:
        return math.log(self.vocab)
