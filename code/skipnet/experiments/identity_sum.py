""""Isn't the sum messy?", measured; and the scaled shortcut over depth. Chapter: *The identity mapping*.

* :func:`decode_row`: train a residual, a plain and a concatenation (DenseNet-like) MLP of the same
  number of blocks and (about) the same number of parameters on the digits, then probe their streams
  linearly (:func:`skipnet.probes.decode.decodability`): how much of the input, of every earlier
  block's output and of the class can still be read after l blocks.
* :func:`sum_form_error`: He et al. (2016), eq. 4, checked on a network: in a full pre-activation
  residual stack the stream after block L is ``x_l + sum_{i=l}^{L-1} F_i(x_i)``, to rounding error.
* :func:`lambda_row`: the shortcut ``y = lambda x + F(x)`` (He et al. 2016, eq. 7: the input reaches
  block L multiplied by ``lambda^L``) trained over lambda and depth, for a trainability map.
"""
from __future__ import annotations

import math
import time
from typing import Mapping, Sequence

import numpy as np
import torch

from skipnet.data import load_digits
from skipnet.dense import DenseConfig, matched_growth
from skipnet.experiments.degradation import DEFAULT_TRAIN
from skipnet.experiments.identity_variants import STUDY_MODEL, STUDY_TRAIN, variant_row
from skipnet.models import ModelConfig, n_params
from skipnet.probes.decode import decodability
from skipnet.train import train_run

__all__ = ["DECODE_KINDS", "DECODE_TRAIN", "decode_configs", "decode_row", "sum_form_error", "LAMBDAS",
           "LAMBDA_BLOCKS", "lambda_config", "lambda_row", "lambda_boundary"]

DECODE_KINDS = ("residual", "plain", "dense")
DECODE_TRAIN = DEFAULT_TRAIN.with_(epochs=20)
LAMBDAS = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2)
LAMBDA_BLOCKS = (4, 8, 16, 32, 54)


def decode_configs(n_blocks: int, width: int = 64) -> dict:
    """The three networks of the decodability study: full pre-activation residual MLP, the same without
    the skip, and a dense MLP whose growth matches the residual one's parameter count."""
    res = ModelConfig(arch="mlp", n_blocks=n_blocks, width=width, placement="pre", in_shape=(64,))
    growth = matched_growth(n_blocks, n_params(res.build(0)), width)
    return {"residual": res, "plain": res.with_(residual=False),
            "dense": DenseConfig(n_blocks=n_blocks, width=width, growth=growth)}


def decode_row(kind: str, n_blocks: int, seed: int = 0, layers: tuple[int, ...] | None = None,
               train=DECODE_TRAIN) -> dict:
    """Train network ``kind`` (one of :data:`DECODE_KINDS`) and probe its stream after the blocks ``layers``
    (default: the first, the middle and the last)."""
    if kind not in DECODE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, DECODE_KINDS))}; got {kind!r}")
    cfg = decode_configs(n_blocks)[kind]
    data = load_digits(flatten=True)
    run = train_run(cfg, data, train, seed)
    layers = sorted({1, n_blocks // 2, n_blocks}) if layers is None else list(layers)
    t0 = time.perf_counter()
    dec = decodability(run.net, data, layers)
    row = run.row()
    row.update({"kind": kind, "n_blocks": n_blocks, "params": n_params(run.net),
                "growth": getattr(cfg, "growth", None), "layers": layers,
                "decode": {str(l): {k: (round(v, 5) if isinstance(v, float) else [round(x, 5) for x in v])
                                    for k, v in d.items()} for l, d in dec.items()},
                "probe_seconds": round(time.perf_counter() - t0, 2)})
    return row


@torch.no_grad()
def sum_form_error(net, X: torch.Tensor, start: int = 0) -> float:
    """``max |x_L - (x_l + sum_i F_i(x_i))| / max |x_L|`` over the batch ``X``, ``l = start``: zero up to
    rounding for a residual network whose stream is a pure sum (full pre-activation, identity shortcuts)."""
    net.eval()
    states = net.blocks_forward(net.embed(X))
    total = states[start] + sum(block.branch(x) for block, x in zip(net.blocks[start:], states[start:-1]))
    return float((states[-1] - total).abs().max() / states[-1].abs().max())


def lambda_config(lam: float, n_blocks: int, base: ModelConfig = STUDY_MODEL) -> ModelConfig:
    """The study's full pre-activation MLP with every shortcut ``lambda * x`` (``lambda = 1``: the identity)."""
    return base.with_(shortcut="scale", shortcut_scale=lam, n_blocks=n_blocks)


def lambda_row(lam: float, n_blocks: int, seed: int = 0, train=STUDY_TRAIN) -> dict:
    """Train the lambda-shortcut network on the digits; its variant row plus lambda and ``lambda ** n_blocks``."""
    cfg = lambda_config(lam, n_blocks)
    run = train_run(cfg, load_digits(flatten=True), train, seed)
    row = variant_row("scale", run)
    row.pop("gates")
    row["loss"] = None
    row.update({"lam": lam, "lam_pow": lam ** n_blocks})
    return row


def _ranks(a) -> np.ndarray:
    return np.argsort(np.argsort(np.asarray(a, dtype=float))).astype(float)


def lambda_boundary(rows: Sequence[Mapping], factor: float = 2.0) -> dict:
    """The lambda map read against lambda^L. A cell (lambda, L) fails when its median test error is above ``factor``
    times that of lambda = 1 at the same depth. Returns the medians, the error ratios and the failing cells; on the
    lambda < 1 side the smallest lambda^L that trains (every cell below it fails) and the largest that fails (every
    cell above it trains); and the rank correlations (Spearman) of the error ratio with -log lambda^L, with -lambda
    and with L over the lambda < 1 cells: which of the three the failure follows."""
    med = {}
    for r in rows:
        med.setdefault((r["lam"], r["n_blocks"]), []).append(0.9 if r["test_err"] is None else r["test_err"])
    med = {k: float(np.median(v)) for k, v in med.items()}
    ratio = {k: v / med[(1.0, k[1])] for k, v in med.items()}
    fails = {k for k, v in ratio.items() if v > factor}
    below = [k for k in med if k[0] < 1]
    pw = {k: k[0] ** k[1] for k in below}
    worst_fail = max((pw[k] for k in below if k in fails), default=None)
    best_ok = min((pw[k] for k in below if k not in fails), default=None)
    r = _ranks([ratio[k] for k in below])

    def rho(x):
        return float(np.corrcoef(r, _ranks(x))[0, 1])
    cell = {pw[k]: k for k in below}
    return {"median": med, "ratio": ratio, "fails": fails, "max_failing_pow": worst_fail, "min_training_pow": best_ok,
            "max_failing_cell": cell.get(worst_fail), "min_training_cell": cell.get(best_ok),
            "fails_above_one": sorted(k for k in fails if k[0] > 1),
            "rho": {"lambda^L": rho([-k[1] * math.log(k[0]) for k in below]), "lambda": rho([-k[0] for k in below]),
                    "L": rho([k[1] for k in below])}}
