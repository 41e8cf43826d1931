"""A small, clear Transformer encoder and the synthetic sorting task it learns.

Chapter: *Residual connections in Transformers (and the RNN question)*.

The residual stream in two lines (pre-LN, as in GPT-2 and nanoGPT)::

    x = x + attn(ln_1(x))        # each block READS the stream through a norm ...
    x = x + mlp(ln_2(x))         # ... and WRITES its output back into the running sum

Everything the chapter varies is a field of the frozen :class:`TransformerConfig`:

* ``residual``: keep the ``x +`` (the skip) or drop it (each sublayer's output replaces the stream);
* ``norm``: ``"pre"`` (norm inside the branch, stream untouched, a final norm before the head),
  ``"post"`` (the original Transformer of Vaswani et al. 2017: ``x = ln(x + attn(x))``) or ``"none"``;
* ``mlp``: keep or drop the feed-forward sublayers (attention-only models for the rank-collapse probe);
* ``init``: ``"depth"`` scales each branch's output projection by ``1/sqrt(2 depth)`` in residual
  models (GPT-2's depth-aware init: the stream is a sum of ``2 depth`` writes, so each write is kept
  small); ``"standard"`` leaves every linear layer at std ``1/sqrt(fan_in)``.

Plain and residual models share every layer and parameter; only the ``x +`` differs (and the
depth-aware scale, which exists only to keep a *sum* of writes at unit size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TransformerConfig", "TinyTransformer", "Attention", "TransformerBlock", "build_transformer",
           "SortTask", "NORMS", "INITS", "MAX_DEPTH"]

NORMS = ("none", "post", "pre")
INITS = ("depth", "standard")
MAX_DEPTH = 64


@dataclass(frozen=True)
class TransformerConfig:
    """Everything that defines the encoder. Invalid values raise ``ValueError`` naming the field.

    depth: number of blocks (each one attention sublayer and, if ``mlp``, one feed-forward sublayer).
    width: model dimension d; ``heads`` must divide it. ffn: hidden width of the feed-forward sublayer.
    vocab / seq_len: input tokens and the longest sequence (learned position embeddings).
    """

    depth: int = 6
    width: int = 64
    heads: int = 4
    ffn: int = 256
    residual: bool = True
    norm: str = "pre"
    mlp: bool = True
    init: str = "depth"
    vocab: int = 16
    seq_len: int = 12

    def __post_init__(self) -> None:
        for name, accepted, value in (("norm", NORMS, self.norm), ("init", INITS, self.init)):
            if value not in accepted:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, accepted))}; got {value!r}")
        for name, lo, hi in (("depth", 1, MAX_DEPTH), ("width", 4, 1024), ("heads", 1, 64), ("ffn", 1, 4096),
                             ("vocab", 2, 4096), ("seq_len", 1, 4096)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer between {lo} and {hi}, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"heads must divide width ({self.width}), got heads={self.heads}")

    @property
    def branch_scale(self) -> float:
        """The extra factor on each branch's output projection (depth-aware init of residual models)."""
        return 1.0 / math.sqrt(2 * self.depth) if (self.residual and self.init == "depth") else 1.0

    def with_(self, **changes) -> "TransformerConfig":
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)


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
        self.pattern: torch.Tensor | None = None      # last attention pattern, kept when ``keep_pattern``
        self.keep_pattern = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                                    # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.heads, self.d_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d_head)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_head))       # (B, H, T, T)
        att = att.softmax(dim=-1)
        if self.keep_pattern:
            self.pattern = att.detach()
        y = (att @ v).transpose(1, 2).reshape(B, T, C)                          # (B, T, C)
        return self.proj(y)

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


class TransformerBlock(nn.Module):
    """One block. With ``residual`` the sublayers write into the stream (``x + f(x)``), without it
    their output replaces the stream (``f(x)``); ``norm`` places LayerNorm (see module docstring)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg) if cfg.mlp else None
        ln = (lambda: nn.LayerNorm(cfg.width)) if cfg.norm != "none" else nn.Identity
        self.ln_1, self.ln_2 = ln(), ln()

    def _sublayer(self, x: torch.Tensor, f: nn.Module, ln: nn.Module) -> torch.Tensor:
        norm, skip = self.cfg.norm, self.cfg.residual
        if norm == "pre":
            h = f(ln(x))
            return x + h if skip else h
        h = f(x)
        return ln(x + h if skip else h)                   # post (ln is the identity when norm is none)

    def forward(self, x: torch.Tensor) -> torch.Tensor:     # (B, T, C) -> (B, T, C)
        x = self._sublayer(x, self.attn, self.ln_1)
        if self.mlp is not None:
            x = self._sublayer(x, self.mlp, self.ln_2)
        return x


class TinyTransformer(nn.Module):
    """Token + learned position embeddings -> ``depth`` blocks -> (final norm if pre-LN) -> per-token logits.

    ``forward(X)`` maps tokens (B, T) to logits (B, T, vocab); ``blocks_forward(h)`` runs the blocks
    on an already embedded stream (B, T, C) and returns the stream after every block (the
    rank-collapse probe feeds it random vectors); ``main_layers()`` lists the weight layers in
    forward order for the gradient probes and ``Trainer(record_grads_every=...)``.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Embedding(cfg.seq_len, cfg.width)
        nn.init.normal_(self.tok.weight, std=1.0)
        nn.init.normal_(self.pos.weight, std=1.0)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(cfg.width) if cfg.norm == "pre" else nn.Identity()
        self.head = _linear(cfg.width, cfg.vocab)

    def embed(self, X: torch.Tensor) -> torch.Tensor:
        T = X.shape[1]
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence length must be at most seq_len={self.cfg.seq_len}, got {T}")
        return self.tok(X) + self.pos(torch.arange(T, device=X.device))          # (B, T, C)

    def blocks_forward(self, h: torch.Tensor) -> list[torch.Tensor]:
        """The stream before the first block and after each block: ``depth + 1`` tensors (B, T, C)."""
        states = [h]
        for block in self.blocks:
            h = block(h)
            states.append(h)
        return states

    def forward(self, X: torch.Tensor) -> torch.Tensor:     # (B, T) tokens -> (B, T, vocab) logits
        h = self.embed(X)
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))

    def main_layers(self) -> list[tuple[str, nn.Module]]:
        layers: list[tuple[str, nn.Module]] = [("tok", self.tok)]
        for i, b in enumerate(self.blocks):
            layers += [(f"block{i}.qkv", b.attn.qkv), (f"block{i}.proj", b.attn.proj)]
            if b.mlp is not None:
                layers += [(f"block{i}.fc1", b.mlp.fc1), (f"block{i}.fc2", b.mlp.fc2)]
        return layers + [("head", self.head)]


def build_transformer(cfg: TransformerConfig | None = None, seed: int | None = None, **fields) -> TinyTransformer:
    """Build the encoder from a config (or keyword fields), seeding its init when ``seed`` is given.

    >>> net = build_transformer(depth=6, norm="post", residual=True, seed=0)
    """
    if cfg is None:
        cfg = TransformerConfig(**fields)
    elif fields:
        cfg = cfg.with_(**fields)
    if seed is not None:
        from skipnet.runtime import seed_everything
        seed_everything(seed)
    return TinyTransformer(cfg)


@dataclass(frozen=True)
class SortTask:
    """Sort a sequence of ``seq_len`` integer tokens in ``[0, vocab)``: the output at position t is
    the t-th smallest input (a per-token classification over ``vocab`` classes).

    ``sample(batch_size, generator)`` draws a fresh batch: X, y both (B, T) int64. Chance loss is
    ``ln(vocab)``; :meth:`position_only_loss` is the best a model can do while ignoring the tokens
    (it only knows the position, so it predicts the distribution of the t-th order statistic).
    """

    seq_len: int = 12
    vocab: int = 16

    def __post_init__(self) -> None:
        if not 2 <= self.seq_len <= 512:
            raise ValueError(f"seq_len must be between 2 and 512, got {self.seq_len}")
        if not 2 <= self.vocab <= 4096:
            raise ValueError(f"vocab must be between 2 and 4096, got {self.vocab}")

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.randint(0, self.vocab, (batch_size, self.seq_len), generator=generator)   # (B, T)
        y = X.sort(dim=1).values                                                             # (B, T)
        return X, y

    @property
    def chance_loss(self) -> float:
        return math.log(self.vocab)

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
