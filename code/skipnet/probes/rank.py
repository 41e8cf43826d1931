"""Rank collapse of token representations, and the path decomposition that explains it.

Chapter: *Residual connections in Transformers (and the RNN question)*.

Dong et al. (2021) measure how far the T token vectors of one sequence are from all being the
same vector. With the stream of a sequence as a matrix ``X`` (T, C), the residual

    res(X) = X - 1 mean(X)^T        (subtract the mean token from every token)

is zero exactly when every token is identical (rank one, "collapsed"). We report the scale-free
ratio ``||res(X)||_F / ||X||_F``: about 1 for distinct random tokens, 0 for collapsed ones.

:func:`path_terms` splits the output of an attention-only residual stack, ``prod_l (I + A_l)``
applied to the input with each layer's attention pattern held fixed, into the sum over the
``2^L`` paths grouped by how many attention layers a path passes through (its length). The same
algebra as the unrolled view of Veit et al. (2016) and the residual stream of Elhage et al. (2021).
"""
from __future__ import annotations

import numpy as np
import torch

from skipnet.runtime import eval_mode

__all__ = ["token_residual_ratio", "stream_ratios", "path_terms"]


def token_residual_ratio(h: torch.Tensor) -> torch.Tensor:
    """``||X - 1 mean(X)^T||_F / ||X||_F`` for each sequence of ``h`` (B, T, C); returns (B,)."""
    h = h.double()
    res = h - h.mean(dim=1, keepdim=True)                                   # (B, T, C)
    return res.flatten(1).norm(dim=1) / h.flatten(1).norm(dim=1).clamp_min(1e-300)


@torch.no_grad()
def stream_ratios(model, h: torch.Tensor) -> np.ndarray:
    """The mean token residual ratio of the stream before the first block and after each block.

    ``model`` is a :class:`skipnet.transformer.TinyTransformer`; ``h`` (B, T, C) is fed straight into
    the blocks (random vectors for the probe at initialization). Returns ``depth + 1`` values.
    """
    with eval_mode(model):
        states = model.blocks_forward(h)
    return np.array([token_residual_ratio(s).mean().item() for s in states])


@torch.no_grad()
def path_terms(model, h: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Split an attention-only, norm-free residual stack's output into path-length terms.

    Runs ``h`` (B, T, C) through the blocks once and reads each layer's attention pattern; with
    the patterns fixed every sublayer is a linear map ``A_l``, and the output is
    ``prod_l (I + A_l) h = sum_k P_k``, where ``P_k`` sums the ``C(L, k)`` paths that pass through
    exactly ``k`` attention layers (``P_0 = h``: the skip-only path). Returns ``([P_0, ..., P_L],
    output)``; ``sum(P_k)`` equals ``output`` up to rounding (a test checks it).
    """
    cfg = model.cfg
    if cfg.mlp or cfg.norm != "none" or not cfg.residual:
        raise ValueError("path_terms needs an attention-only residual model without norms "
                         f"(mlp=False, norm='none', residual=True); got mlp={cfg.mlp}, norm={cfg.norm!r}, "
                         f"residual={cfg.residual}")
    attns = [b.attn for b in model.blocks]
    states = model.blocks_forward(h)
    out = states[-1]
    patterns = [a.pattern(x) for a, x in zip(attns, states)]           # block l's pattern, from its input
    terms = [h] + [torch.zeros_like(h) for _ in attns]       # terms[k]: paths through k layers so far
    for layer, (a, A) in enumerate(zip(attns, patterns)):
        for k in range(layer + 1, 0, -1):                     # update in place, longest paths first
            terms[k] = terms[k] + a.with_pattern(terms[k - 1], A)
    return terms, out
