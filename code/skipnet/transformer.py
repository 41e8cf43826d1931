"""A small, clear Transformer encoder and the synthetic sorting task it learns. Chapter: *Residual connections in
Transformers (and the RNN question)*.

The residual stream in two lines, the forward pass of :class:`PreLNBlock` (GPT-2, nanoGPT)::

    x = x + self.attn(self.ln_1(x))      # each block READS the stream through a norm ...
    x = x + self.mlp(self.ln_2(x))       # ... and WRITES its output back into the running sum

:class:`PostLNBlock` is the original Transformer's (Vaswani et al. 2017), ``x = ln_1(x + attn(x))``; the
plain twins :class:`PlainPreLNBlock` and :class:`PlainPostLNBlock` are the same blocks without the ``x +``.
Everything the chapter varies is a field of the frozen :class:`TransformerConfig`:

* ``residual``: keep the ``x +`` (the skip) or drop it (each sublayer's output replaces the stream);
* ``norm``: ``"layer"`` (LayerNorm) or ``"none"``; ``placement``: ``"pre"`` (norm inside the branch,
  stream untouched, a final norm before the head) or ``"post"`` (norm on the stream after each add);
* ``mlp``: keep or drop the feed-forward sublayers (attention-only models for the rank-collapse probe);
* ``init``: ``"depth"`` scales each branch's output projection by ``1/sqrt(2 n_blocks)`` in residual
  models (GPT-2's depth-aware init: the stream is a sum of ``2 n_blocks`` writes, so each write is kept
  small); ``"standard"`` leaves every linear layer at std ``1/sqrt(fan_in)``; ``"admin"`` (post-LN
  with skips only) is the standard init plus Admin's shortcut weights (Liu et al. 2020, "Understanding
  the difficulty of training Transformers"): :class:`AdminPostLNBlock` computes ``ln(omega * x + f(x))``
  with each ``omega`` set, by one profiling pass at build time, to the square root of the summed output
  variance of the sublayers below it (the embedding counted first), so that no sublayer dominates the
  renormalized stream at init.

Plain and residual models share every layer; only the ``x +`` differs, and, with ``init="depth"``, the
scale of the output projections (which exists only to keep a *sum* of writes at unit size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.checks import check_choice, check_int
from skipnet.config import Config
from skipnet.models import stream_states

__all__ = ["TransformerConfig", "TinyTransformer", "Attention", "MLP", "PreLNBlock", "PostLNBlock",
           "PlainPreLNBlock", "PlainPostLNBlock", "AdminPostLNBlock", "admin_profile", "SortTask", "TRANSFORMER_NORMS",
           "TRANSFORMER_PLACEMENTS", "TRANSFORMER_INITS", "MAX_TRANSFORMER_BLOCKS"]

TRANSFORMER_NORMS = ("layer", "none")
TRANSFORMER_PLACEMENTS = ("pre", "post")
TRANSFORMER_INITS = ("depth", "standard", "admin")
MAX_TRANSFORMER_BLOCKS = 64


@dataclass(frozen=True)
class TransformerConfig(Config):
    """Everything that defines the encoder. Invalid values raise ``ValueError`` naming the field.

    n_blocks: number of blocks (each one attention sublayer and, if ``mlp``, one feed-forward sublayer).
    width: model dimension d; ``heads`` must divide it. ffn: hidden width of the feed-forward sublayer.
    vocab / seq_len: input tokens and the longest sequence (learned position embeddings).
    """

    n_blocks: int = 6
    width: int = 64
    heads: int = 4
    ffn: int = 256
    residual: bool = True
    norm: str = "layer"
    placement: str = "pre"
    mlp: bool = True
    init: str = "depth"
    vocab: int = 16
    seq_len: int = 12

    def __post_init__(self) -> None:
        check_choice("norm", self.norm, TRANSFORMER_NORMS)
        check_choice("placement", self.placement, TRANSFORMER_PLACEMENTS)
        check_choice("init", self.init, TRANSFORMER_INITS)
        for name, lo, hi in (("n_blocks", 1, MAX_TRANSFORMER_BLOCKS), ("width", 4, 1024), ("heads", 1, 64),
                             ("ffn", 1, 4096), ("vocab", 2, 4096), ("seq_len", 1, 4096)):
            check_int(name, getattr(self, name), lo, hi)
        if self.width % self.heads:
            raise ValueError(f"heads must divide width ({self.width}), got heads={self.heads}")
        if self.init == "admin" and not (self.residual and self.norm == "layer" and self.placement == "post"):
            raise ValueError("init='admin' is defined for post-LN with skips (residual=True, norm='layer', "
                             f"placement='post'); got residual={self.residual}, norm={self.norm!r}, "
                             f"placement={self.placement!r}")

    @property
    def branch_scale(self) -> float:
        """The extra factor on each branch's output projection (depth-aware init of residual models)."""
        return 1.0 / math.sqrt(2 * self.n_blocks) if (self.residual and self.init == "depth") else 1.0

    @property
    def label(self) -> str:
        """``"pre-LN, 6 blocks"``, ``"no residual (post-LN), 6 blocks"``, ``"residual, no norm, 6 blocks"``."""
        kind = f"{self.placement}-LN" if self.norm == "layer" else "no norm"
        if not self.residual:
            kind = f"no residual ({kind})"
        elif self.norm == "none":
            kind = "residual, no norm"
        if self.init == "admin":
            kind += ", Admin"
        return f"{kind}, {self.n_blocks} blocks"

    def network(self) -> "TinyTransformer":
        return TinyTransformer(self)


def _linear(d_in: int, d_out: int, scale: float = 1.0, bias: bool = True) -> nn.Linear:
    """A linear layer with weights N(0, (scale / sqrt(d_in))^2) and zero bias."""
    layer = nn.Linear(d_in, d_out, bias=bias)
    nn.init.normal_(layer.weight, std=scale / math.sqrt(d_in))
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class Attention(nn.Module):
    """Multi-head self-attention over all positions (an encoder: no causal mask)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.heads, self.d_head = cfg.heads, cfg.width // cfg.heads
        self.qkv = _linear(cfg.width, 3 * cfg.width, bias=False)
        self.proj = _linear(cfg.width, cfg.width, scale=cfg.branch_scale, bias=False)   # no bias: linear given the pattern

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                                    # 3 x (B, T, C)
        return tuple(t.view(B, T, self.heads, self.d_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d_head)

    def _scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_head))       # (B, H, T, T)
        return att.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self._split(x)
        y = (self._scores(q, k) @ v).transpose(1, 2).reshape(B, T, C)           # (B, T, C)
        return self.proj(y)

    def pattern(self, x: torch.Tensor) -> torch.Tensor:
        """The attention pattern (B, H, T, T) that the sublayer applies to ``x`` (rows sum to 1)."""
        q, k, _ = self._split(x)
        return self._scores(q, k)

    def with_pattern(self, x: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
        """The sublayer with its attention ``pattern`` (B, H, T, T) held fixed: a LINEAR map of ``x``."""
        B, T, C = x.shape
        v = x @ self.qkv.weight[2 * C:].T                                        # (B, T, C)
        v = v.view(B, T, self.heads, self.d_head).transpose(1, 2)               # (B, H, T, d_head)
        y = (pattern @ v).transpose(1, 2).reshape(B, T, C)
        return y @ self.proj.weight.T                                            # (B, T, C)


class MLP(nn.Module):
    """The feed-forward sublayer: width -> ffn -> GELU -> width, applied to every token on its own."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.fc1 = _linear(cfg.width, cfg.ffn)
        self.fc2 = _linear(cfg.ffn, cfg.width, scale=cfg.branch_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))                                    # (B, T, C)


class _NoWrite(nn.Module):
    """An absent sublayer in a residual stack: it writes nothing (``x + 0``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), dtype=x.dtype, device=x.device)


class _Block(nn.Module):
    """The parts every block has: attention, the MLP (or, if ``cfg.mlp`` is off, a sublayer that leaves the
    stream as it is) and the two norms."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg) if cfg.mlp else _NoWrite() if cfg.residual else nn.Identity()
        ln = (lambda: nn.LayerNorm(cfg.width)) if cfg.norm == "layer" else nn.Identity
        self.ln_1 = ln()
        self.ln_2 = ln() if cfg.mlp else nn.Identity()


class PreLNBlock(_Block):
    """``x + f(ln(x))``: the norm sits inside the branch; the stream is a pure sum of writes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:     # (B, T, C) -> (B, T, C)
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class PostLNBlock(_Block):
    """``ln(x + f(x))``: the original Transformer's block; the norm acts on the stream after each add."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(x + self.attn(x))
        return self.ln_2(x + self.mlp(x))


class AdminPostLNBlock(_Block):
    """:class:`PostLNBlock` with Admin's learnable shortcut weights ``omega`` (set at init by :func:`admin_profile`)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.omega_1 = nn.Parameter(torch.ones(cfg.width))
        self.omega_2 = nn.Parameter(torch.ones(cfg.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(self.omega_1 * x + self.attn(x))
        return self.ln_2(self.omega_2 * x + self.mlp(x))


class PlainPreLNBlock(_Block):
    """:class:`PreLNBlock` without the skip."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.ln_1(x))
        return self.mlp(self.ln_2(x))


class PlainPostLNBlock(_Block):
    """:class:`PostLNBlock` without the skip."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(self.attn(x))
        return self.ln_2(self.mlp(x))


BLOCKS = {(True, "pre"): PreLNBlock, (True, "post"): PostLNBlock,
          (False, "pre"): PlainPreLNBlock, (False, "post"): PlainPostLNBlock}


class TinyTransformer(nn.Module):
    """Token + learned position embeddings -> ``n_blocks`` blocks -> (final norm if pre-LN) -> per-token logits.

    ``forward(X)`` maps tokens (B, T) to logits (B, T, vocab); ``blocks_forward(h)`` runs the blocks
    on an already embedded stream (B, T, C) and returns the stream before and after every block (the
    probes' one way to walk the stream); ``main_layers()`` lists the weight layers in forward order for
    the gradient probes and ``Trainer(record_grads_every=...)``.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Embedding(cfg.seq_len, cfg.width)
        nn.init.normal_(self.tok.weight, std=1.0)
        nn.init.normal_(self.pos.weight, std=1.0)
        block = AdminPostLNBlock if cfg.init == "admin" else BLOCKS[(cfg.residual, cfg.placement)]
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.n_blocks))
        self.ln_f = nn.LayerNorm(cfg.width) if (cfg.norm == "layer" and cfg.placement == "pre") else nn.Identity()
        self.head = _linear(cfg.width, cfg.vocab)
        if cfg.init == "admin":
            admin_profile(self)

    def embed(self, X: torch.Tensor) -> torch.Tensor:
        T = X.shape[1]
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence length must be at most seq_len={self.cfg.seq_len}, got {T}")
        return self.tok(X) + self.pos(torch.arange(T, device=X.device))          # (B, T, C)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln_f(h))                                           # (B, T, vocab)

    def blocks_forward(self, h: torch.Tensor, start: int = 0, blocks=None) -> list[torch.Tensor]:
        """The stream entering block ``start`` and after each later block (``blocks`` replaces ``self.blocks``)."""
        return stream_states(self.blocks if blocks is None else blocks, h, start)

    def forward(self, X: torch.Tensor) -> torch.Tensor:     # (B, T) tokens -> (B, T, vocab) logits
        h = self.embed(X)
        for block in self.blocks:
            h = block(h)
        return self.readout(h)

    def main_layers(self) -> list[tuple[str, nn.Module]]:
        layers: list[tuple[str, nn.Module]] = [("tok", self.tok)]
        for i, b in enumerate(self.blocks):
            layers += [(f"block{i}.qkv", b.attn.qkv), (f"block{i}.proj", b.attn.proj)]
            if isinstance(b.mlp, MLP):
                layers += [(f"block{i}.fc1", b.mlp.fc1), (f"block{i}.fc2", b.mlp.fc2)]
        return layers + [("head", self.head)]


@torch.no_grad()
def admin_profile(net: TinyTransformer, n_seq: int = 256) -> list[float]:
    """Admin's profiling pass (Liu et al. 2020): run the post-LN stack with every ``omega = 1`` on ``n_seq`` random
    token sequences and set the ``omega`` of sublayer i to ``sqrt(Var[embedding] + sum_{j<i} Var[f_j])``. Returns the
    omegas in stream order."""
    cfg = net.cfg
    X = torch.randint(0, cfg.vocab, (n_seq, cfg.seq_len), generator=torch.Generator().manual_seed(0))
    h = net.embed(X)
    total, omegas = h.var().item(), []
    for b in net.blocks:
        for omega, f, ln in ((b.omega_1, b.attn, b.ln_1), (b.omega_2, b.mlp, b.ln_2)):
            omega.fill_(math.sqrt(total))
            omegas.append(math.sqrt(total))
            write = f(h)
            total += write.var().item() if write.dim() else 0.0
            h = ln(h + write)
    return omegas


@dataclass(frozen=True)
class SortTask:
    """Sort a sequence of ``seq_len`` integer tokens in ``[0, vocab)``: the output at position t is
    the t-th smallest input (a per-token classification over ``vocab`` classes).

    ``sample(batch_size, generator)`` draws a fresh batch: X, y both (B, T) int64. Chance loss is
    ``ln(vocab)``; :meth:`position_only_loss` is the best a model can do while ignoring the tokens
    (it only knows the position, so it predicts the distribution of the t-th order statistic);
    :meth:`token_uniform_loss` the best a model can do when every position carries the same vector.
    """

    seq_len: int = 12
    vocab: int = 16

    def __post_init__(self) -> None:
        check_int("seq_len", self.seq_len, 2, 512)
        check_int("vocab", self.vocab, 2, 4096)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.randint(0, self.vocab, (batch_size, self.seq_len), generator=generator)   # (B, T)
        y = X.sort(dim=1).values                                                             # (B, T)
        return X, y

    @property
    def chance_loss(self) -> float:
        return math.log(self.vocab)

    def token_uniform_loss(self, n: int = 200_000, seed: int = 0) -> float:
        """The best loss of a predictor that gives every position the SAME distribution (what a rank-collapsed
        stream can do): it predicts the histogram of the inputs, so its loss is E[entropy of the input histogram]
        (Monte Carlo over ``n`` sequences, seeded)."""
        X = torch.randint(0, self.vocab, (n, self.seq_len), generator=torch.Generator().manual_seed(seed))
        p = F.one_hot(X, self.vocab).sum(1).double() / self.seq_len                     # (n, V) histograms
        return -(p * p.clamp_min(1e-300).log()).sum(1).mean().item()

    def position_only_loss(self) -> float:
        """Mean over positions of the entropy of the t-th order statistic of ``seq_len`` uniform draws."""
        T, V = self.seq_len, self.vocab
        total = 0.0
        for t in range(1, T + 1):                 # P(Y_(t) <= v) = P(at least t of the T draws are <= v)
            cdf = [sum(math.comb(T, j) * p ** j * (1 - p) ** (T - j) for j in range(t, T + 1))
                   for p in ((v + 1) / V for v in range(V))]
            probs = [cdf[0]] + [cdf[v] - cdf[v - 1] for v in range(1, V)]
            total -= sum(q * math.log(q) for q in probs if q > 0)
        return total / T
