"""The data and settings of the in-browser lab of the opening chapter ("train it here", no kernel).

The lab (``site_assets/skiplab/skiplab.js``) is a small JavaScript port of the book's MLP, plain and residual,
trained in the reader's browser. Everything it needs from the package is written, by :func:`write_lab_data`
(``scripts/export_skiplab.py``), into one generated file, ``site_assets/skiplab/digits.js``:

* the digits of :func:`skipnet.data.load_digits`, the same split in the same order, as their raw grey levels
  (0..16) with the training mean and standard deviation, so that the browser rebuilds the package's
  standardized float32 tensors bit for bit;
* the network (:data:`LAB_MODEL`, the identity chapter's MLP) and the training (:data:`LAB_TRAIN`, the opening
  chapter's SGD), read from the package's own configs, so the page types no setting of its own.

``tests/test_skiplab.py`` checks that the shipped file is what this module writes now, and that the browser's
losses and gradients equal the package's from the same weights and batches.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from skipnet.data import load_digits
from skipnet.experiments.identity_variants import STUDY_MODEL, STUDY_TRAIN
from skipnet.models import ModelConfig, build_model

__all__ = ["LAB_MODEL", "LAB_TRAIN", "LAB_BLOCKS", "LAB_DEFAULT_BLOCKS", "LAB_SEED", "lab_model", "raw_levels",
           "lab_data", "lab_js", "write_lab_data", "LAB_DATA_FILE"]

LAB_MODEL = STUDY_MODEL                 # MLP, pre-activation blocks (BatchNorm, ReLU, linear) x 2, width 32
LAB_TRAIN = STUDY_TRAIN                 # the opening chapter's SGD (Nesterov), warm-up then cosine, 10 epochs
LAB_BLOCKS = (2, 5, 10, 20, 30, 54)     # the lab's choices of depth (54: the identity chapter's study depth)
LAB_DEFAULT_BLOCKS = 20
LAB_SEED = 0
LAB_DATA_FILE = Path(__file__).resolve().parents[2] / "site_assets" / "skiplab" / "digits.js"
_LEVELS = "abcdefghijklmnopq"           # grey level v (0..16) is written as the letter _LEVELS[v]


def lab_model(n_blocks: int, residual: bool) -> ModelConfig:
    """The lab's network with ``n_blocks`` blocks, plain or residual."""
    return LAB_MODEL.with_(n_blocks=n_blocks, residual=residual)


def _check_portable(cfg: ModelConfig) -> None:
    """The JavaScript port implements exactly this block; anything else must fail loudly, not differ quietly."""
    want = dict(arch="mlp", norm="batch", activation="relu", placement="pre", block_layers=2, shortcut="identity",
                init="standard", branch_scale=1.0, drop_prob=0.0, final_norm=False, zero_head=False, in_shape=(64,))
    bad = {k: getattr(cfg, k) for k, v in want.items() if getattr(cfg, k) != v}
    if bad:
        raise ValueError(f"the browser lab implements only the pre-activation BatchNorm/ReLU MLP, got {bad}")
    t = LAB_TRAIN
    if t.optimizer != "sgd" or t.grad_clip is not None or t.steps is not None:
        raise ValueError(f"the browser lab implements SGD over epochs without clipping, got {t}")


def raw_levels(X: torch.Tensor) -> tuple[np.ndarray, float, float]:
    """The grey levels (0..16) behind standardized digits ``X``, with the mean and standard deviation that
    :func:`~skipnet.data.load_digits` used. Every digit has a blank (level 0) pixel and the brightest level is 16,
    which fixes the affine map; the levels are then rounded to integers and checked."""
    x = X.numpy().reshape(len(X), -1).astype(np.float64)
    lo, hi = x.min(), x.max()
    levels = np.rint((x - lo) / (hi - lo) * 16).astype(np.int64)
    if not (levels.min() == 0 and levels.max() == 16 and np.abs((x - lo) / (hi - lo) * 16 - levels).max() < 1e-3):
        raise ValueError("these are not standardized 0..16 grey levels")
    return levels, lo, hi


def lab_data() -> dict:
    """Everything the page needs from the package, as plain JSON-able data (see the module docstring)."""
    _check_portable(LAB_MODEL)
    ds = load_digits(flatten=True)
    train, _, _ = raw_levels(ds.X_train)
    test, _, _ = raw_levels(ds.X_test)
    # the mean and standard deviation exactly as load_digits computes them: float32, over the training images
    train_f32 = train.astype(np.float32).reshape(-1, 8, 8)
    mean, std = train_f32.mean(), train_f32.std()
    for levels, X in ((train, ds.X_train), (test, ds.X_test)):
        rebuilt = (levels.astype(np.float32) - mean) / std
        if not np.array_equal(rebuilt, X.numpy()):
            raise AssertionError("the grey levels do not rebuild the package's digits bit for bit")
    bn = build_model(lab_model(1, True), seed=0).final_norm
    t = LAB_TRAIN
    return {
        "model": {"width": LAB_MODEL.width, "in_features": int(ds.X_train.shape[1]), "n_classes": ds.n_classes,
                  "bn_eps": bn.eps, "bn_momentum": bn.momentum},
        "train": {"lr": t.lr, "momentum": t.momentum, "nesterov": t.nesterov, "weight_decay": t.weight_decay,
                  "batch_size": t.batch_size, "epochs": t.epochs, "warmup_steps": t.warmup_steps,
                  "schedule": t.schedule},
        "blocks": list(LAB_BLOCKS), "default_blocks": LAB_DEFAULT_BLOCKS, "seed": LAB_SEED,
        "digits": {"mean": float(mean), "std": float(std),
                   "train_levels": "".join(_LEVELS[v] for v in train.ravel()),
                   "train_labels": "".join(str(int(v)) for v in ds.y_train),
                   "test_levels": "".join(_LEVELS[v] for v in test.ravel()),
                   "test_labels": "".join(str(int(v)) for v in ds.y_test)},
    }


def lab_js(data: dict | None = None) -> str:
    """The text of ``digits.js``: the data as one global, ``SKIPLAB_DATA``, with a header saying where it came from."""
    data = lab_data() if data is None else data
    body = json.dumps(data, separators=(",", ":"))
    return ("// Generated by scripts/export_skiplab.py from the skipnet package (skipnet.skiplab.lab_data):\n"
            "// the digits of skipnet.data.load_digits (grey levels 0..16, same split and order) and the lab's\n"
            "// model and training settings. Do not edit; rerun the script.\n"
            f"self.SKIPLAB_DATA = {body};\n")


def write_lab_data(path: Path = LAB_DATA_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lab_js())
    return path
