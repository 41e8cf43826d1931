"""The exact path-length spectrum of a residual network's gradient, by a backward dynamic programme.

Veit et al. (2016) estimate how much gradient paths of length k carry by sampling a few paths of that
length and multiplying their mean norm by C(n, k) (:func:`skipnet.probes.paths.path_gradient_magnitudes`):
a sum of norms, which ignores that paths of one length partly cancel. The gradient summed over ALL
C(n, k) paths of length k can be computed exactly, with about n^2 vector-Jacobian products.

Each block is ``post(shortcut(x) + branch(x))``. Linearized at the intact forward pass, its Jacobian is
``P (J_s + J_f)``: the Jacobian ``P`` of ``post`` (the ReLU's mask after the add) times the sum of the
skip's and the branch's. Let ``G_k`` be the summed gradient of every path of length k, taken at a block's
output. Going down through the block, a path either takes the skip (its length is unchanged) or the
branch (one more), so at the block's input

    G'_k = VJP_skip(P^T G_k) + VJP_branch(P^T G_{k-1}),

starting from ``G_0 = dL/d(last output)``. Every step is linear in the cotangent, so at the first
block's input ``sum_k G_k`` is autograd's gradient exactly, whatever ``post`` is and whether BatchNorm
uses running or batch statistics (:func:`exact_path_spectrum` returns the check).

A fresh net's BatchNorm running statistics are 0 and 1, so in eval mode every BN is the identity and the
"fresh" net is an unnormalized one; the network as it trains uses batch statistics (``bn="batch"``), which
scale each branch down relative to its skip (De & Smith 2020). :func:`skipnet.probes.lesions.recalibrated`
gives a copy with running statistics computed from data.

Chapter: *An ensemble of relatively shallow paths*.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.models import ResidualBlock, ResidualNet
from skipnet.runtime import eval_mode

__all__ = ["BN_MODES", "Spectrum", "exact_path_spectrum", "gains_prediction", "bn_train_copy", "mean_of"]

BN_MODES = ("eval", "batch")
_BN = nn.modules.batchnorm._BatchNorm


def _bn_layers(model: nn.Module) -> list[_BN]:
    return [m for m in model.modules() if isinstance(m, _BN)]


def bn_train_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode except its BatchNorm layers, which use batch statistics (as in training);
    the original's running statistics are untouched. Stochastic depth stays in its test-time form."""
    net = copy.deepcopy(model).eval()
    for m in _bn_layers(net):
        m.train()
    return net


@dataclass
class Spectrum:
    """The exact gradient by path length at the first block's input, for n blocks.

    norms[k] = ||G_k||; shares[k] = norms[k] / sum(norms) (the magnitude view, comparable with Veit's);
    projection[k] = <G_k, G> / ||G||^2, an exact additive split of the gradient G (sums to 1, may be
    negative); mean_length: the mean of k under ``shares``; sum_error: max |sum_k G_k - G| / max |G|
    (autograd's G); coherence = ||G|| / sum_k ||G_k|| (1 when no length cancels another); gains[l]:
    block l's ||VJP_branch|| / ||VJP_skip|| of the total gradient at its output.
    """

    n: int
    norms: list[float]
    shares: list[float]
    projection: list[float]
    mean_length: float
    projection_mean: float
    sum_error: float
    coherence: float
    gains: list[float]
    label: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def gains_prediction(gains: Sequence[float]) -> np.ndarray:
    """Shares by length if every path's gradient were the product of per-block gains (r_l through block
    l's branch, 1 through its skip) and nothing cancelled: the coefficients e_k(r) of prod(1 + r_l z),
    normalized. Their mean is sum r_l / (1 + r_l)."""
    c = np.array([1.0])
    for r in gains:
        c = np.convolve(c, [1.0, float(r)])
    return c / c.sum()


def exact_path_spectrum(model: ResidualNet, X: torch.Tensor, y: torch.Tensor, bn: str = "eval",
                        label: str = "") -> Spectrum:
    """Exact per-length gradient (the dynamic programme of the module docstring) of the cross-entropy on
    ``(X, y)``. ``bn="eval"`` runs the net as it is tested; ``bn="batch"`` uses batch statistics in every
    BatchNorm (the network as it trains; the model's running statistics are untouched)."""
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    if not all(isinstance(b, ResidualBlock) for b in model.blocks):
        raise ValueError("path spectra need a residual network (residual=True)")
    net = bn_train_copy(model) if bn == "batch" else model
    with eval_mode(model):
        h0 = net.embed(X).detach().requires_grad_(True)
        direct, = torch.autograd.grad(F.cross_entropy(net.readout(net.blocks_forward(h0)[-1]), y), h0)
        rec, h = [], h0.detach()
        for block in net.blocks:                                   # one forward pass, every part recorded
            x = h.detach().requires_grad_(True)
            s, f = block.shortcut(x), block.branch(x)
            z = (s + f).detach().requires_grad_(True)
            out = block.post(z)
            rec.append((x, s, f, z, out))
            h = out
        last = h.detach().requires_grad_(True)
        g_last, = torch.autograd.grad(F.cross_entropy(net.readout(last), y), last)
        G, gains = [g_last], []
        for x, s, f, z, out in reversed(rec):
            Gz = [_vjp(out, z, g) for g in G]
            skip = [_vjp(s, x, g) for g in Gz]
            branch = [_vjp(f, x, g) for g in Gz]
            total_skip, total_branch = sum(skip), sum(branch)
            gains.append((total_branch.norm() / total_skip.norm().clamp_min(1e-30)).item())
            G = [skip[0]] + [skip[k] + branch[k - 1] for k in range(1, len(G))] + [branch[-1]]
    total = sum(G)
    err = ((total - direct).abs().max() / direct.abs().max().clamp_min(1e-30)).item()
    norms = np.array([g.norm().item() for g in G])
    shares = norms / norms.sum()
    proj = np.array([(g * direct).sum().item() for g in G]) / (direct * direct).sum().item()
    ks = np.arange(len(G))
    return Spectrum(len(G) - 1, norms.tolist(), shares.tolist(), proj.tolist(), float((ks * shares).sum()),
                    float((ks * proj).sum() / proj.sum()), err, float(direct.norm().item() / norms.sum()),
                    gains[::-1], label)


def _vjp(out: torch.Tensor, at: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if out is at:                                   # an identity shortcut returns its input
        return g
    v, = torch.autograd.grad(out, at, g, retain_graph=True, allow_unused=True)
    return torch.zeros_like(at) if v is None else v


def mean_of(shares: Sequence[float]) -> float:
    """The mean length under weights ``shares`` (index = length)."""
    w = np.asarray(shares, dtype=np.float64)
    return float((np.arange(len(w)) * w).sum() / w.sum())


class LengthTruncation:
    """Train on the gradient of the paths of at most ``K`` branches only (the chapter *An ensemble of relatively
    shallow paths*, its causal test by length): hooks record each block's ``x, s = shortcut(x), f = branch(x),
    z = s + f, out = post(z)`` in the training forward pass, and :meth:`loss_fn` replaces the trainer's loss by a
    surrogate with the same value whose gradient is, for every parameter, the part carried by backward paths from
    the loss of at most ``K`` branches (the dynamic programme of :func:`exact_path_spectrum`, cut at ``K``; a
    branch's own parameters count its branch). ``norm_match=True`` rescales that gradient to the full gradient's
    norm each step (the control for a smaller step). ``K >= n`` gives autograd's gradient exactly."""

    def __init__(self, model: ResidualNet, K: int, norm_match: bool = False):
        if not all(isinstance(b, ResidualBlock) for b in model.blocks):
            raise ValueError("length truncation needs a residual network (residual=True)")
        if K < 0:
            raise ValueError(f"K must be at least 0, got {K}")
        if len({id(b.post) for b in model.blocks}) != len(model.blocks):
            raise ValueError("every block needs its own post module")
        self.model, self.K, self.norm_match = model, int(K), norm_match
        self.rec: list[dict] = [dict() for _ in model.blocks]
        self.handles = []
        for i, b in enumerate(model.blocks):
            self.handles += [b.branch.register_forward_hook(self._keep(i, "x", "f")),
                             b.shortcut.register_forward_hook(self._keep(i, None, "s")),
                             b.post.register_forward_hook(self._keep(i, "z", "out"))]
        self.block_params = [list(b.branch.parameters()) + list(b.shortcut.parameters()) for b in model.blocks]
        in_blocks = {id(p) for ps in self.block_params for p in ps}
        self.other_params = [p for p in model.parameters() if id(p) not in in_blocks and p.requires_grad]
        self.scale: list[float] = []                # full / truncated gradient norm, each step

    def _keep(self, i: int, name_in: str | None, name_out: str):
        def hook(module, args, out):
            if module.training:
                if name_in is not None:
                    self.rec[i][name_in] = args[0]
                self.rec[i][name_out] = out
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor):
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        grads = self.gradients(loss)
        params = [p for ps in self.block_params for p in ps] + self.other_params
        if self.norm_match:
            full = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            num = torch.sqrt(sum((g * g).sum() for g in full if g is not None))
            den = torch.sqrt(sum((grads[id(p)] * grads[id(p)]).sum() for p in params)).clamp_min(1e-30)
            self.scale.append(float(num / den))
            grads = {k: g * (num / den) for k, g in grads.items()}
        surrogate = sum((p * grads[id(p)]).sum() for p in params)
        return loss.detach() + surrogate - surrogate.detach(), acc

    def gradients(self, loss: torch.Tensor) -> dict[int, torch.Tensor]:
        """``{id(parameter): gradient}`` of ``loss`` over the backward paths of at most K branches."""
        rec, K = self.rec, self.K
        grads: dict[int, torch.Tensor] = {}
        last = rec[-1]["out"]
        G = list(torch.autograd.grad(loss, last, retain_graph=True))               # length 0 at the top
        for i in reversed(range(len(rec))):
            r, ps = rec[i], self.block_params[i]
            Gz = [torch.autograd.grad(r["out"], r["z"], g, retain_graph=True)[0] for g in G]
            skip = [torch.autograd.grad(r["s"], r["x"], g, retain_graph=True)[0] for g in Gz]
            branch, acc = [], [torch.zeros_like(p) for p in ps]
            for g in Gz[:K]:                          # through this branch: one more branch on the path
                out = torch.autograd.grad(r["f"], [r["x"]] + ps, g, retain_graph=True, allow_unused=True)
                branch.append(out[0])
                acc = [a + (o if o is not None else 0) for a, o in zip(acc, out[1:])]
            for p, a in zip(ps, acc):
                grads[id(p)] = a
            G = [skip[0]] + [skip[k] + branch[k - 1] for k in range(1, len(skip))]
            if len(branch) == len(Gz):                # the longest length not yet at K: it grows by one
                G.append(branch[-1])
        h0, total = rec[0]["x"], sum(G)
        full = torch.autograd.grad(loss, self.other_params, retain_graph=True, allow_unused=True)
        stem = torch.autograd.grad(h0, self.other_params, total, retain_graph=True, allow_unused=True)
        for p, f, s in zip(self.other_params, full, stem):     # the head: length 0; the stem: through the blocks
            grads[id(p)] = s if s is not None else (f if f is not None else torch.zeros_like(p))
        return grads
