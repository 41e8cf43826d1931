"""Is a residual branch "useful noise"? Replace its output at test time and see what the network loses.

Each block computes ``post(shortcut(x) + F(x))``. :class:`Replacer` runs the trained network with the
branch output ``F_l`` of some blocks replaced by

* ``delete``: nothing (0), the lesion of :mod:`skipnet.probes.lesions`;
* ``other image``: the same branch's intact output on another test image (a derangement of the batch);
* ``noise``: Gaussian noise with the per-channel mean and variance of ``F_l`` (over images and positions);
* ``channel mean``: the per-channel mean of ``F_l``, the same for every image.

If the branches added noise around the skip's signal, noise with their own statistics should do about as
well as the real output. If they add an input-specific correction, another image's output should cost
MORE than deleting it.

:func:`refinement_cosines` is the iterative-refinement diagnostic of Jastrzebski et al. (2018): per block,
the cosine between the branch output and the negative loss gradient at the point it is added to (the sum
``shortcut(x) + F(x)``, same shape as ``F``), per image: positive when the block moves the stream downhill.

Chapter: *An ensemble of relatively shallow paths*.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from skipnet.models import ResidualBlock, ResidualNet
from skipnet.runtime import eval_mode, generator

__all__ = ["VARIANTS", "Replacer", "derangement", "refinement_cosines"]

VARIANTS = ("delete", "other image", "noise", "channel mean")


def derangement(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation of 0..n-1 that moves every index (n >= 2)."""
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    while True:
        perm = torch.randperm(n, generator=gen)
        if not (perm == torch.arange(n)).any():
            return perm


class Replacer:
    """The intact branch outputs of a trained residual net on ``(X, y)``, and accuracy with some replaced."""

    @torch.no_grad()
    def __init__(self, model: ResidualNet, X: torch.Tensor, y: torch.Tensor):
        if not all(isinstance(b, ResidualBlock) for b in model.blocks):
            raise ValueError("branch replacement needs a residual network (residual=True)")
        self.model, self.X, self.y = model, X, y
        with eval_mode(model):
            self.h0 = model.embed(X)
            h, self.outputs = self.h0, []
            for block in model.blocks:
                f = block.branch(h)                             # (N, C, H, W): what block l adds, per image
                self.outputs.append(f)
                h = block.post(f + block.shortcut(h))
            self.intact = self._acc(model.readout(h))
        self.mean = [f.mean(dim=_stat_dims(f), keepdim=True) for f in self.outputs]     # (1, C, 1, 1)
        self.std = [f.std(dim=_stat_dims(f), keepdim=True) for f in self.outputs]

    @property
    def n(self) -> int:
        return len(self.outputs)

    def _acc(self, logits: torch.Tensor) -> float:
        return (logits.argmax(-1) == self.y).float().mean().item()

    def replacement(self, i: int, variant: str, gen: torch.Generator) -> torch.Tensor | float:
        """What block ``i`` adds instead of its branch output under ``variant``."""
        f = self.outputs[i]
        if variant == "delete":
            return 0.0
        if variant == "other image":
            return f[derangement(len(f), gen)]
        if variant == "noise":
            return self.mean[i] + self.std[i] * torch.randn(f.shape, generator=gen)
        if variant == "channel mean":
            return self.mean[i].expand_as(f)
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")

    @torch.no_grad()
    def accuracy(self, blocks: Sequence[int], variant: str, gen: torch.Generator | None = None) -> float:
        """Test accuracy with the branch outputs of ``blocks`` replaced by ``variant``."""
        gen = gen if gen is not None else generator(0)
        bad = sorted(int(i) for i in blocks if not 0 <= int(i) < self.n)
        if bad:
            raise ValueError(f"block indices must be in 0..{self.n - 1}, got {bad}")
        rep = {int(i): self.replacement(int(i), variant, gen) for i in blocks}
        model = self.model
        with eval_mode(model):
            h = self.h0
            for i, block in enumerate(model.blocks):
                f = rep[i] if i in rep else block.branch(h)
                h = block.post(f + block.shortcut(h))
            return self._acc(model.readout(h))

    def sweep(self, ms: Sequence[int], n_sets: int = 10, seed: int = 0, exclude: Sequence[int] = (),
              variants: Sequence[str] = VARIANTS) -> dict:
        """For each m in ``ms``: ``n_sets`` random sets of m blocks (never those in ``exclude``), the SAME sets
        for every variant; returns ``{"ms": [...], variant: [[acc per set] per m], "sets": [...]}``."""
        pool = [i for i in range(self.n) if i not in set(exclude)]
        gen = generator(seed)
        out = {"ms": [int(m) for m in ms], "sets": [], **{v: [] for v in variants}}
        for m in ms:
            if not 1 <= m <= len(pool):
                raise ValueError(f"m must be between 1 and {len(pool)} (the blocks that may be replaced), got {m}")
            sets = [sorted(pool[j] for j in torch.randperm(len(pool), generator=gen)[:m].tolist())
                    for _ in range(1 if m == len(pool) else n_sets)]
            out["sets"].append(sets)
            for v in variants:
                out[v].append([self.accuracy(s, v, gen) for s in sets])
        return out


def _stat_dims(f: torch.Tensor) -> tuple[int, ...]:
    return (0, 2, 3) if f.dim() == 4 else (0,)


def refinement_cosines(model: ResidualNet, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Per block l, the mean over images of cos(F_l(x), -dL/dz_l), with z_l = shortcut(x_l) + F_l(x_l) the sum the
    branch writes to and L each image's own cross-entropy (eval mode): an (n_blocks,) array."""
    if not all(isinstance(b, ResidualBlock) for b in model.blocks):
        raise ValueError("refinement cosines need a residual network (residual=True)")
    with eval_mode(model):
        h, sums, outs = model.embed(X).detach(), [], []
        for block in model.blocks:
            f = block.branch(h)
            z = f + block.shortcut(h)                                        # in the graph: dL/dz_l is the total
            sums.append(z)
            outs.append(f.detach())
            h = block.post(z)
        loss = F.cross_entropy(model.readout(h), y, reduction="sum")        # each image its own gradient
        grads = torch.autograd.grad(loss, sums)
    cos = [F.cosine_similarity(f.flatten(1), -g.flatten(1), dim=1, eps=1e-12).mean().item()
           for f, g in zip(outs, grads)]
    return np.array(cos)
