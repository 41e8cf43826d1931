"""Linear decodability: what can still be read, linearly, from the stream after l blocks.
Chapter: *The identity mapping* ("isn't the sum messy?").

After l blocks a residual stream is ``x_l = x_0 + F_0 + ... + F_{l-1}`` (He et al. 2016, eq. 4), a plain
stream is only the last block's output, and a dense (concatenation) stream keeps every piece side by
side. A ridge regression fitted on the training digits maps ``x_l`` to a target; its R^2 on the test
digits says how much of the target survives in the stream:

* the input ``x_0`` (the stem's output), and the raw pixels;
* what each earlier block wrote (``F_k``: the branch output of a residual or dense block; for a plain
  block, its output);
* the class (accuracy of the one-hot regression's arg max);
* the control that makes the read-back able to fail (residual streams only): each ``F_k`` decoded from the
  stream with that very term removed, ``x_l - F_k``. A term that is *stored* in the sum loses R^2 when it is
  removed; a term that is only *predictable* from the rest of the stream (from the input and the other terms)
  does not. The unique part is ``R^2(x_l) - R^2(x_l - F_k)``;
* the baseline of the input alone (every kind): each ``F_k`` read from ``x_0``. Every ``F_k`` is a function of the
  input, so a linear probe on ``x_0`` already reads part of it; a stream that reads ``F_k`` better than ``x_0``
  does carries the write itself, not only the input it was computed from (``writes_from_x0``);
* the earlier states ``x_k`` (k < l), for every kind: states against states, the like-for-like comparison of
  a plain and a residual stream.

Features are standardized with the training statistics; the penalty is ``lam * N`` (N training digits).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.runtime import eval_mode

__all__ = ["ridge_r2", "stream_and_writes", "decodability"]


def ridge_r2(Z_train: torch.Tensor, Y_train: torch.Tensor, Z_test: torch.Tensor, Y_test: torch.Tensor,
             lam: float = 1e-2) -> tuple[float, torch.Tensor]:
    """Fit ``Y ~ Z W + b`` by ridge on the training rows; return the test R^2 (pooled over the targets'
    coordinates: 1 - SSE / total sum of squares) and the test predictions. Computed in float64."""
    Z_train, Z_test = Z_train.flatten(1).double(), Z_test.flatten(1).double()
    Y_train, Y_test = Y_train.flatten(1).double(), Y_test.flatten(1).double()
    mu, sd = Z_train.mean(0), Z_train.std(0) + 1e-8
    A = torch.cat([(Z_train - mu) / sd, torch.ones(len(Z_train), 1, dtype=torch.float64)], 1)
    B = torch.cat([(Z_test - mu) / sd, torch.ones(len(Z_test), 1, dtype=torch.float64)], 1)
    penalty = lam * len(A) * torch.eye(A.shape[1], dtype=torch.float64)
    penalty[-1, -1] = 0.0                                              # the intercept is not penalized
    W = torch.linalg.solve(A.T @ A + penalty, A.T @ Y_train)
    P = B @ W
    r2 = 1 - ((P - Y_test) ** 2).sum() / ((Y_test - Y_test.mean(0)) ** 2).sum()
    return float(r2), P


@torch.no_grad()
def stream_and_writes(model: nn.Module, X: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The stream entering each block and after the last (``blocks_forward``), and what each block wrote:
    ``block.branch(x_k)`` for residual and dense blocks, the block's output for a plain one (eval mode)."""
    with eval_mode(model):
        states = model.blocks_forward(model.embed(X))
        plain = not getattr(model.cfg, "residual", True)
        writes = [states[k + 1] if plain else block.branch(states[k]) for k, block in enumerate(model.blocks)]
    return states, writes


def decodability(model: nn.Module, data, layers: list[int], lam: float = 1e-2) -> dict[int, dict]:
    """For each ``l`` in ``layers``: test R^2 of ridge probes from ``x_l`` to ``x_0``, to the pixels, to each
    ``F_k`` and each state ``x_k`` (k < l), the class accuracy of a one-hot ridge probe, each ``F_k`` read from the
    input ``x_0`` alone (the baseline), and for a residual network each ``F_k`` read from ``x_l - F_k`` (the
    ablation control). ``data``: a flattened digits Dataset."""
    residual = bool(getattr(getattr(model, "cfg", None), "residual", False))      # a dense config has none
    s_tr, w_tr = stream_and_writes(model, data.X_train)
    s_te, w_te = stream_and_writes(model, data.X_test)
    Y_tr = F.one_hot(data.y_train, data.n_classes).double()
    out = {}
    for l in layers:
        if not 1 <= l < len(s_tr):
            raise ValueError(f"layer must be between 1 and {len(s_tr) - 1} (the number of blocks), got {l}")
        _, P = ridge_r2(s_tr[l], Y_tr, s_te[l], F.one_hot(data.y_test, data.n_classes).double(), lam)
        out[l] = {"x0": ridge_r2(s_tr[l], s_tr[0], s_te[l], s_te[0], lam)[0],
                  "pixels": ridge_r2(s_tr[l], data.X_train, s_te[l], data.X_test, lam)[0],
                  "writes": [ridge_r2(s_tr[l], w_tr[k], s_te[l], w_te[k], lam)[0] for k in range(l)],
                  "states": [ridge_r2(s_tr[l], s_tr[k], s_te[l], s_te[k], lam)[0] for k in range(l)],
                  "writes_from_x0": [ridge_r2(s_tr[0], w_tr[k], s_te[0], w_te[k], lam)[0] for k in range(l)],
                  "class_acc": float((P.argmax(1) == data.y_test).double().mean())}
        if residual:
            out[l]["writes_ablated"] = [ridge_r2(s_tr[l] - w_tr[k], w_tr[k], s_te[l] - w_te[k], w_te[k], lam)[0]
                                        for k in range(l)]
    return out
