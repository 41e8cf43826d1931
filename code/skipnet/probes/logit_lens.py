"""Inside a trained encoder's residual stream: the logit lens, direct logit attribution and per-head attention.

Chapter: *Residual connections in Transformers (and the RNN question)*, section "Inside the trained stream".

In a pre-LN Transformer the stream after any sublayer is the embedding plus the writes so far (Elhage et al. 2021),
and the head reads the final stream through one LayerNorm. So every partial sum can be read the same way:

* **logit lens** (nostalgebraist 2020): read the stream after each sublayer through the final norm and the head, as
  if the network stopped there; its loss shows how the answer builds up write by write. For post-LN the stream is
  already normalized and the head reads it directly.
* **direct logit attribution** (pre-LN): with the final norm's per-token scale ``sigma`` held at its value for the
  full stream, ``logits = sum_i W_U (gamma * (w_i - mean(w_i)) / sigma) + (W_U beta + b)``, an exact split of the
  logits over the writes ``w_i`` (the embedding is write 0). We report each write's contribution to the correct
  class's logit minus the mean logit.
* **per-head attention maps**: each head's pattern with the keys indexed by their rank in the sorted input, so that a
  head that fetches "the q-th smallest token" for output position q shows a diagonal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from skipnet.runtime import eval_mode

__all__ = ["StreamReadout", "sublayer_writes", "read_stream"]


@torch.no_grad()
def sublayer_writes(net, X: torch.Tensor) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Walk a pre-LN or post-LN :class:`~skipnet.transformer.TinyTransformer` (with skips) sublayer by sublayer.

    Returns ``(names, writes, states, patterns)``: ``names`` ``["embed", "attn 1", "mlp 1", ...]``; ``writes[i]``
    what sublayer i adds (the embedding first); ``states[i]`` the stream after it (post-LN: after its norm);
    ``patterns[l]`` block l's attention pattern (B, H, T, T). The last state equals ``blocks_forward``'s (a test
    checks it), so this is the block's own forward pass, written out."""
    cfg = net.cfg
    if not cfg.residual or cfg.norm != "layer" or not cfg.mlp or cfg.init == "admin":
        raise ValueError("read_stream needs a residual encoder with LayerNorm and MLPs (residual=True, norm='layer', "
                         f"mlp=True, init not 'admin'); got residual={cfg.residual}, norm={cfg.norm!r}, "
                         f"mlp={cfg.mlp}, init={cfg.init!r}")
    with eval_mode(net):
        x = net.embed(X)
        names, writes, states, patterns = ["embed"], [x], [x], []
        for i, b in enumerate(net.blocks):
            for kind, f, ln in (("attn", b.attn, b.ln_1), ("mlp", b.mlp, b.ln_2)):
                inp = ln(x) if cfg.placement == "pre" else x
                if kind == "attn":
                    patterns.append(b.attn.pattern(inp))
                w = f(inp)
                x = x + w if cfg.placement == "pre" else ln(x + w)
                names.append(f"{kind} {i + 1}")
                writes.append(w)
                states.append(x)
    return names, writes, states, patterns


@dataclass
class StreamReadout:
    """What :func:`read_stream` measures on one batch of sorting inputs."""

    names: list[str]                   # "embed", "attn 1", "mlp 1", ..., one per write
    lens_loss: np.ndarray              # cross-entropy reading the stream after each write
    lens_acc: np.ndarray               # token accuracy of the same read
    dla: np.ndarray | None             # per write: mean (correct logit - mean logit) it contributes (pre-LN only)
    dla_error: float | None            # max |sum of contributions + constant - logits| (the split is exact)
    maps: np.ndarray                   # (n_blocks, heads, T, T): mean pattern, query position x key RANK
    target_mass: np.ndarray            # (n_blocks, heads): attention on keys whose value is the query's answer
    rank_mass: np.ndarray              # (n_blocks, heads): attention on the key of rank = query position
    entropy: np.ndarray                # (n_blocks, heads): mean entropy of a query's attention (nats)
    uniform_target_mass: float         # what uniform attention puts on the answer's keys (the baseline)
    final_loss: float


@torch.no_grad()
def read_stream(net, X: torch.Tensor, y: torch.Tensor) -> StreamReadout:
    """Logit lens, direct logit attribution (pre-LN) and per-head attention of ``net`` on sorting inputs ``X``
    (B, T) with sorted targets ``y`` (B, T)."""
    names, writes, states, patterns = sublayer_writes(net, X)
    V = net.cfg.vocab
    loss, acc = [], []
    for s in states:
        logits = net.readout(s)
        loss.append(F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)).item())
        acc.append((logits.argmax(-1) == y).double().mean().item())
    out = net.readout(states[-1])
    dla = dla_error = None
    if net.cfg.placement == "pre":
        ln, head = net.ln_f, net.head
        final = states[-1]
        sigma = (final.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()         # (B, T, 1), frozen
        W = head.weight * ln.weight                                                    # (V, C)
        total = head(ln.bias.expand_as(final))                                         # the constant W_U beta + b
        contrib = []
        for w in writes:
            c = ((w - w.mean(-1, keepdim=True)) / sigma) @ W.T                         # (B, T, V)
            total = total + c
            contrib.append((c.gather(-1, y.unsqueeze(-1)).squeeze(-1) - c.mean(-1)).mean().item())
        dla, dla_error = np.array(contrib), (total - out).abs().max().item()
    T = X.shape[1]
    rank = X.argsort(dim=1, stable=True).argsort(dim=1, stable=True)                  # (B, T): rank of each key
    by_rank = F.one_hot(rank, T).double()                                              # (B, key, rank)
    answer = (X.unsqueeze(1) == y.unsqueeze(2)).double()                               # (B, query, key)
    maps, target, rank_mass, entropy = [], [], [], []
    for P in patterns:                                                                 # (B, H, Tq, Tk)
        P = P.double()
        m = torch.einsum("bhqk,bkr->bhqr", P, by_rank)                                 # keys re-indexed by rank
        maps.append(m.mean(0).numpy())
        target.append(torch.einsum("bhqk,bqk->bhq", P, answer).mean((0, 2)).numpy())
        rank_mass.append(m.diagonal(dim1=-2, dim2=-1).mean((0, 2)).numpy())
        entropy.append(-(P * P.clamp_min(1e-300).log()).sum(-1).mean((0, 2)).numpy())
    final_loss = F.cross_entropy(out.reshape(-1, V), y.reshape(-1)).item()
    return StreamReadout(names, np.array(loss), np.array(acc), dla, dla_error, np.array(maps), np.array(target),
                         np.array(rank_mass), np.array(entropy), answer.mean().item(), final_loss)
