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

import time

import torch

from skipnet.data import load_digits
from skipnet.dense import DenseConfig, matched_growth
from skipnet.experiments.degradation import DEFAULT_TRAIN
from skipnet.experiments.identity_variants import STUDY_MODEL, STUDY_TRAIN, variant_row
from skipnet.models import ModelConfig, n_params
from skipnet.probes.decode import decodability
from skipnet.train import train_run

__all__ = ["DECODE_KINDS", "DECODE_TRAIN", "decode_configs", "decode_row", "sum_form_error", "LAMBDAS",
           "LAMBDA_BLOCKS", "lambda_config", "lambda_row"]

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
