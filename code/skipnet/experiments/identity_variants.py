"""He et al. (2016), *Identity Mappings in Deep Residual Networks*, at the scale of the digits.
Chapter: *The identity mapping*.

The paper varies two things in ResNet-110 on CIFAR-10: what the shortcut does (Table 1: constant
scaling, gates, a 1x1 convolution, dropout) and where BatchNorm and ReLU sit around the addition
(Table 2). Here the network is the book's MLP with 54 two-layer blocks of width 32 plus the input
and output layers: 110 weight layers, as in ResNet-110, trained for 10 epochs on the digits.

One change of design, on purpose: the shortcut variants are applied to the full pre-activation
block (the best block of Table 2), because at this scale the original post-activation block
already trains poorly at depth 54 and would hide the differences between shortcuts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from skipnet.data import load_digits
from skipnet.experiments.degradation import DEFAULT_TRAIN
from skipnet.models import ModelConfig, build_model
from skipnet.probes.branches import gate_openness
from skipnet.train import TrainConfig, Trainer, race as run_race

__all__ = ["Variant", "VARIANTS", "SHORTCUT_KEYS", "ORDER_KEYS", "STUDY_MODEL", "STUDY_TRAIN", "FAIL_ERR",
           "variant_config", "shortcut_config", "VariantRun", "train_variant", "race_variants", "race_configs", "summarize"]

STUDY_MODEL = ModelConfig(arch="mlp", depth=54, width=32, norm="batch", order="pre", in_shape=(64,))
STUDY_TRAIN = DEFAULT_TRAIN
FAIL_ERR = 0.20          # the paper's "fail": test error above 20 %


@dataclass(frozen=True)
class Variant:
    """One row of He et al. (2016) Table 1 or 2: the model fields it changes and the paper's
    CIFAR-10 test error in % for ResNet-110 (``None``: "fail", above 20 %), and ResNet-164 where given."""

    key: str
    label: str
    group: str                      # "shortcut" (Table 1) or "order" (Table 2), "plain" (no shortcut)
    fields: dict
    paper_110: float | None
    paper_164: float | None = None
    paper_note: str = ""


VARIANTS: dict[str, Variant] = {v.key: v for v in [
    Variant("identity", "identity (full pre-activation)", "shortcut", {}, 6.37, 5.46,
            "Table 2; 6.61 in Table 1"),
    Variant("scale", "constant scaling 0.5", "shortcut", {"shortcut": "scale", "shortcut_scale": 0.5}, None),
    Variant("scale_both", "constant scaling 0.5, F scaled 0.5", "shortcut",
            {"shortcut": "scale", "shortcut_scale": 0.5, "branch_scale": 0.5}, 12.35),
    Variant("exclusive_gate_0", "exclusive gating, b = 0", "shortcut",
            {"shortcut": "exclusive_gate", "gate_bias": 0.0}, None, None, "b = 0 to -5"),
    Variant("exclusive_gate_6", "exclusive gating, b = -6", "shortcut",
            {"shortcut": "exclusive_gate", "gate_bias": -6.0}, 8.70),
    Variant("shortcut_gate_0", "shortcut-only gating, b = 0", "shortcut",
            {"shortcut": "shortcut_gate", "gate_bias": 0.0}, 12.86),
    Variant("shortcut_gate_6", "shortcut-only gating, b = -6", "shortcut",
            {"shortcut": "shortcut_gate", "gate_bias": -6.0}, 6.91),
    Variant("conv1x1", "1x1 conv shortcut (a linear map)", "shortcut", {"shortcut": "conv1x1"}, 12.22),
    Variant("dropout", "dropout shortcut (keep 0.5, unscaled)", "shortcut", {"shortcut": "dropout"}, None),
    Variant("post", "original (post-activation)", "order", {"order": "post"}, 6.61, 5.93),
    Variant("bn_after_add", "BN after addition", "order", {"order": "bn_after_add"}, 8.17, 6.50),
    Variant("relu_before_add", "ReLU before addition", "order", {"order": "relu_before_add"}, 7.84, 6.14),
    Variant("relu_only_pre", "ReLU-only pre-activation", "order", {"order": "relu_only_pre"}, 6.71, 5.91),
    Variant("pre", "full pre-activation", "order", {}, 6.37, 5.46),
    Variant("plain", "no shortcut (plain)", "plain", {"residual": False}, None, None, "not in the tables"),
]}
SHORTCUT_KEYS = tuple(k for k, v in VARIANTS.items() if v.group == "shortcut")
ORDER_KEYS = tuple(k for k, v in VARIANTS.items() if v.group == "order")


def variant_config(key: str, depth: int | None = None, base: ModelConfig = STUDY_MODEL) -> ModelConfig:
    """The study's network with variant ``key`` (one of :data:`VARIANTS`), optionally at another depth (blocks)."""
    if key not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, VARIANTS))}; got {key!r}")
    changes = dict(VARIANTS[key].fields)
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 200:
            raise ValueError(f"depth must be an integer between 1 and 200 blocks, got {depth!r}")
        changes["depth"] = depth
    return base.with_(**changes)


def shortcut_config(shortcut: str, order: str, depth: int, base: ModelConfig = STUDY_MODEL) -> ModelConfig:
    """A combination the paper's tables do not list: the fields of shortcut variant ``shortcut`` (a Table 1
    key) with activation placement ``order`` (a Table 2 key) at ``depth`` blocks (the Shortcut lab)."""
    if shortcut not in SHORTCUT_KEYS:
        raise ValueError(f"shortcut must be one of {', '.join(SHORTCUT_KEYS)}; got {shortcut!r}")
    if order not in ORDER_KEYS:
        raise ValueError(f"order must be one of {', '.join(ORDER_KEYS)}; got {order!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 2 <= depth <= 200:
        raise ValueError(f"depth must be an integer between 2 and 200 blocks, got {depth!r}")
    order_fields = VARIANTS[order].fields or {"order": "pre"}
    return base.with_(**VARIANTS[shortcut].fields, **order_fields, depth=depth)


@dataclass
class VariantRun:
    """One training of one variant: final full-set numbers, the per-step batch loss, gate openness."""

    key: str
    seed: int
    depth: int
    status: str
    train_loss: float | None
    train_err: float | None
    test_err: float | None
    loss: list[float] = field(default_factory=list)
    gates: list[float] | None = None         # mean gate value per block (gated shortcuts only)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """The paper's criterion: test error above 20 % (or no result at all)."""
        return self.test_err is None or self.test_err > FAIL_ERR

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("key", "seed", "depth", "status", "train_loss", "train_err",
                                              "test_err", "loss", "gates", "seconds")}


def _finish(key: str, seed: int, cfg: ModelConfig, trainer: Trainer, seconds: float) -> VariantRun:
    h, f = trainer.history, trainer.history.final
    gates = None
    if cfg.residual and cfg.shortcut in ("exclusive_gate", "shortcut_gate") and f:
        gates = [round(float(g), 5) for g in gate_openness(trainer.model, trainer.data.X_test)]
    return VariantRun(key, seed, cfg.depth, h.status, f.get("train_loss"),
                      None if not f else 1 - f["train_acc"], None if not f else 1 - f["test_acc"],
                      [round(v, 5) for v in h.loss], gates, round(seconds, 2))


def train_variant(key: str, seed: int = 0, depth: int | None = None, base: ModelConfig = STUDY_MODEL,
                  train: TrainConfig = STUDY_TRAIN, callback: Callable[[Trainer], bool | None] | None = None) -> VariantRun:
    """Train variant ``key`` on the digits; return its :class:`VariantRun`."""
    return race_variants([key], seed, depth, base, train, on_step=None if callback is None else
                         (lambda trainers: callback(next(iter(trainers.values())))))[key]


def race_variants(keys: Iterable[str], seed: int = 0, depth: int | None = None, base: ModelConfig = STUDY_MODEL,
                  train: TrainConfig = STUDY_TRAIN,
                  on_step: Callable[[dict[str, Trainer]], bool | None] | None = None) -> dict[str, VariantRun]:
    """Train several variants of :data:`VARIANTS` side by side (see :func:`race_configs`)."""
    return race_configs({k: variant_config(k, depth, base) for k in dict.fromkeys(keys)}, seed, train, on_step)


def race_configs(cfgs: dict[str, ModelConfig], seed: int = 0, train: TrainConfig = STUDY_TRAIN,
                 on_step: Callable[[dict[str, Trainer]], bool | None] | None = None) -> dict[str, VariantRun]:
    """Train the MLPs ``cfgs`` (name -> config) on the digits side by side, one step of each in turn
    (the Shortcut lab's live race). ``on_step(trainers)`` runs after each round; returning ``False``
    stops every run."""
    data = load_digits(flatten=True)
    trainers = {k: Trainer(build_model(c, seed=seed), data, train.with_(seed=seed)) for k, c in cfgs.items()}
    seconds = run_race(trainers, on_step)
    return {k: _finish(k, seed, cfgs[k], t, seconds / len(cfgs)) for k, t in trainers.items()}


def summarize(runs: Iterable[dict | VariantRun]) -> dict[str, dict]:
    """Per variant over seeds: median train loss / train error / test error, failures, seeds.

    A run without a result (diverged) counts as a failure, with error 0.9 (chance) in the error medians;
    the training-loss median is over the runs that finished (``None`` if none did).
    """
    by_key: dict[str, list[dict]] = {}
    for r in runs:
        d = r.as_dict() if isinstance(r, VariantRun) else r
        by_key.setdefault(d["key"], []).append(d)
    out = {}
    for key, rows in by_key.items():
        def med(name, missing):
            return float(np.median([missing if r[name] is None else r[name] for r in rows]))
        losses = [r["train_loss"] for r in rows if r["train_loss"] is not None]
        out[key] = {"n": len(rows), "train_loss": float(np.median(losses)) if losses else None,
                    "train_err": med("train_err", 0.9),
                    "test_err": med("test_err", 0.9),
                    "test_err_range": [min(0.9 if r["test_err"] is None else r["test_err"] for r in rows),
                                       max(0.9 if r["test_err"] is None else r["test_err"] for r in rows)],
                    "fails": sum(r["test_err"] is None or r["test_err"] > FAIL_ERR for r in rows)}
        gates = [np.mean(r["gates"]) for r in rows if r.get("gates")]
        if gates:
            out[key]["gate_mean"] = float(np.median(gates))
    return out
