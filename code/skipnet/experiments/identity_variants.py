"""He et al. (2016), *Identity Mappings in Deep Residual Networks*, at the scale of the digits.
Chapter: *The identity mapping*.

The paper varies two things in ResNet-110 on CIFAR-10: what the shortcut does (Table 1: constant
scaling, gates, a 1x1 convolution, dropout) and where BatchNorm and ReLU sit around the addition
(Table 2). Here the network is the book's MLP with 54 two-layer blocks of width 32 plus the input
and output layers: 110 weight layers, as in ResNet-110, trained for 10 epochs on the digits.

One change of design, on purpose: the shortcut variants are applied to the full pre-activation
block (the best block of Table 2), because at this scale the original post-activation block
already trains poorly at depth 54 and would hide the differences between shortcuts.

:data:`FAIR_VARIANTS` reruns the two confounded comparisons with the confound removed: the 1x1
shortcut started at the identity or at a random orthogonal map (PyTorch's default start shrinks the
signal through 54 maps), and every placement with a norm before the classifier (``final_norm``) or a
zero-initialized classifier (``zero_head``), so that all placements start from comparable losses.
:func:`train_traced` records a probe of the network after every step (the product of the 1x1 maps).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

from skipnet.checks import check_choice, check_int
from skipnet.data import load_digits
from skipnet.experiments.degradation import DEFAULT_TRAIN
from skipnet.history import Run
from skipnet.models import ModelConfig
from skipnet.probes.branches import gate_openness
from skipnet.race import race_runs
from skipnet.train import Progress, TrainConfig, Trainer

__all__ = ["Variant", "VARIANTS", "FAIR_VARIANTS", "PAPER_BASELINE", "SHORTCUT_KEYS", "PLACEMENT_KEYS", "STUDY_MODEL",
           "STUDY_TRAIN", "FAIL_ERR", "variant_config", "shortcut_config", "variant_row", "failed", "train_variant",
           "race_variants", "race_configs", "train_traced", "summarize", "rank_of", "lr_grid_rows", "best_lr",
           "first_step_grads"]

STUDY_MODEL = ModelConfig(arch="mlp", n_blocks=54, width=32, norm="batch", placement="pre", in_shape=(64,))
STUDY_TRAIN = DEFAULT_TRAIN
FAIL_ERR = 0.20          # the paper's "fail": test error above 20 %


@dataclass(frozen=True)
class Variant:
    """One row of He et al. (2016) Table 1 or 2: the model fields it changes and the paper's
    CIFAR-10 test error in % for ResNet-110 (``None``: "fail", above 20 %), and ResNet-164 where given."""

    key: str
    label: str
    group: str                      # "shortcut" (Table 1) or "placement" (Table 2), "plain" (no shortcut)
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
    Variant("post", "original (post-activation)", "placement", {"placement": "post"}, 6.61, 5.93),
    Variant("bn_after_add", "BN after addition", "placement", {"placement": "bn_after_add"}, 8.17, 6.50),
    Variant("relu_before_add", "ReLU before addition", "placement", {"placement": "relu_before_add"}, 7.84, 6.14),
    Variant("relu_only_pre", "ReLU-only pre-activation", "placement", {"placement": "relu_only_pre"}, 6.71, 5.91),
    Variant("pre", "full pre-activation", "placement", {}, 6.37, 5.46),
    Variant("plain", "no shortcut (plain)", "plain", {"residual": False}, None, None,
            "Table 1: constant scaling 0 / 1, 'a plain net'"),
]}
SHORTCUT_KEYS = tuple(k for k, v in VARIANTS.items() if v.group == "shortcut")
PLACEMENT_KEYS = tuple(k for k, v in VARIANTS.items() if v.group == "placement")

FAIR_VARIANTS: dict[str, Variant] = {v.key: v for v in [
    Variant("conv1x1_identity", "1x1 shortcut started at I", "shortcut_fair",
            {"shortcut": "conv1x1", "shortcut_init": "identity"}, 12.22),
    Variant("conv1x1_orthogonal", "1x1 shortcut started orthogonal", "shortcut_fair",
            {"shortcut": "conv1x1", "shortcut_init": "orthogonal"}, 12.22),
    *(Variant(f"{k}_{arm}", f"{VARIANTS[k].label}, {text}", f"placement_{arm}", {**VARIANTS[k].fields, arm: True},
              VARIANTS[k].paper_110, VARIANTS[k].paper_164)
      for arm, text in (("final_norm", "norm before the classifier"), ("zero_head", "classifier started at 0"))
      for k in PLACEMENT_KEYS),
]}
"""The reruns without the confounds (see the module docstring); the paper's numbers are those of the original rows."""
PAPER_BASELINE = {"shortcut": 6.61, "shortcut_fair": 6.61, "plain": 6.61, "placement": 6.37,
                  "placement_final_norm": 6.37, "placement_zero_head": 6.37}
"""The paper's baseline for each group: Table 1 varies the shortcut of the original unit (6.61 %), Table 2 the
placement, against full pre-activation (6.37 %)."""


def variant_config(key: str, n_blocks: int | None = None, base: ModelConfig = STUDY_MODEL) -> ModelConfig:
    """The study's network with variant ``key`` (one of :data:`VARIANTS`), optionally with another number of blocks."""
    check_choice("variant", key, tuple(VARIANTS) + tuple(FAIR_VARIANTS))
    changes = dict({**VARIANTS, **FAIR_VARIANTS}[key].fields)
    if n_blocks is not None:
        changes["n_blocks"] = check_int("n_blocks", n_blocks, 1, 200)
    return base.with_(**changes)


def shortcut_config(shortcut: str, placement: str, n_blocks: int, base: ModelConfig = STUDY_MODEL) -> ModelConfig:
    """A shortcut variant (a Table 1 key, or ``"plain"``) with placement ``placement`` (a Table 2 key) and
    ``n_blocks`` blocks (the Shortcut lab)."""
    check_choice("shortcut", shortcut, SHORTCUT_KEYS + ("plain",))
    check_choice("placement", placement, PLACEMENT_KEYS)
    check_int("n_blocks", n_blocks, 2, 200)
    return base.with_(**VARIANTS[shortcut].fields, **VARIANTS[placement].fields, n_blocks=n_blocks)


def failed(row: dict) -> bool:
    """The paper's criterion: test error above 20 % (or no result at all)."""
    return row["test_err"] is None or row["test_err"] > FAIL_ERR


def variant_row(key: str, run: Run) -> dict:
    """The stored record of one variant's training: key, seed, blocks, status, final numbers, the per-step
    batch loss and, for gated shortcuts, each block's mean gate value on the test digits."""
    cfg, f = run.model, run.final
    gates = None
    if cfg.residual and cfg.shortcut in ("exclusive_gate", "shortcut_gate") and f:
        gates = [round(float(g), 5) for g in gate_openness(run.net, load_digits(flatten=True).X_test)]
    row = run.row()
    return {"key": key, "seed": run.seed, "n_blocks": cfg.n_blocks, "status": run.status,
            "train_loss": row["train_loss"], "train_err": row["train_err"], "test_err": row["test_err"],
            "loss": [round(v, 5) for v in run.history.loss], "gates": gates, "seconds": row["seconds"]}


def train_variant(key: str, seed: int = 0, n_blocks: int | None = None, base: ModelConfig = STUDY_MODEL,
                  train: TrainConfig = STUDY_TRAIN, progress: Progress | None = None) -> dict:
    """Train variant ``key`` on the digits; return its :func:`variant_row`."""
    return race_variants([key], seed, n_blocks, base, train, progress)[key]


def race_variants(keys: Iterable[str], seed: int = 0, n_blocks: int | None = None, base: ModelConfig = STUDY_MODEL,
                  train: TrainConfig = STUDY_TRAIN, progress: Progress | None = None) -> dict[str, dict]:
    """Train several variants of :data:`VARIANTS` side by side (see :func:`race_configs`)."""
    return race_configs({k: variant_config(k, n_blocks, base) for k in dict.fromkeys(keys)}, seed, train, progress)


def race_configs(cfgs: dict[str, ModelConfig], seed: int = 0, train: TrainConfig = STUDY_TRAIN,
                 progress: Progress | None = None) -> dict[str, dict]:
    """Train the MLPs ``cfgs`` (name -> config) on the digits side by side, one step of each in turn
    (the Shortcut lab's live race); return a :func:`variant_row` each (seconds: the race's, shared)."""
    runs = race_runs(cfgs, load_digits(flatten=True), train, seed, progress)
    for run in runs.values():
        run.seconds /= len(cfgs)
    return {k: variant_row(k, run) for k, run in runs.items()}


def train_traced(key: str, seed: int = 0, probe: Callable | None = None, base: ModelConfig = STUDY_MODEL,
                 train: TrainConfig = STUDY_TRAIN) -> dict:
    """:func:`train_variant` (the same build and training), with ``probe(net)`` recorded at initialization
    and after every step in ``row["trace"]``, and the first and the largest batch loss."""
    cfg = variant_config(key, None, base)
    net = cfg.build(seed)
    train = train.with_(seed=seed)
    t0 = time.perf_counter()
    trainer = Trainer(net, load_digits(flatten=True), train)
    trace = [probe(net)] if probe else []
    if probe:
        trainer.add_callback("on_step_end", lambda _: trace.append(probe(net)))
    trainer.run()
    row = variant_row(key, Run(cfg, train, trainer.history, time.perf_counter() - t0, net.eval()))
    loss = trainer.history.loss
    row.update({"first_loss": round(loss[0], 4) if loss else None, "max_loss": round(max(loss), 4) if loss else None})
    if probe:
        row["trace"] = trace
    return row


def summarize(rows: Iterable[dict]) -> dict[str, dict]:
    """Per variant over seeds: median train loss / train error / test error, failures, seeds.

    A run without a result (diverged) counts as a failure, with error 0.9 (chance) in the error medians;
    the training-loss median is over the runs that finished (``None`` if none did).
    """
    by_key: dict[str, list[dict]] = {}
    for d in rows:
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


def rank_of(values: Mapping[str, float]) -> dict[str, int]:
    """Rank of each key by value, 1 = lowest (best error)."""
    order = sorted(values, key=lambda k: values[k])
    return {k: order.index(k) + 1 for k in values}


def lr_grid_rows(variants: Iterable[dict], fair: Iterable[dict], lr_runs: Iterable[dict], lr_default: float = 0.1,
                 seeds: Iterable[int] | None = None) -> list[dict]:
    """One list of runs over the learning-rate grid: the stored ``variants_lr`` runs (each with its ``lr``) and, at
    the identity's rate ``lr_default``, the runs of ``variants`` and ``variants_fair`` of the same keys (the same
    network and budget). Only ``seeds`` (default: those of ``lr_runs``) are kept, so that every cell has the same
    seeds. A pure function of the stored records."""
    lr_runs = list(lr_runs)
    keys = {r["key"] for r in lr_runs}
    seeds = set(r["seed"] for r in lr_runs) if seeds is None else set(seeds)
    old = [dict(r, lr=lr_default) for r in [*variants, *fair] if r["key"] in keys and r["seed"] in seeds]
    return [r for r in [*old, *lr_runs] if r["seed"] in seeds]


def best_lr(rows: Iterable[dict]) -> dict[str, dict]:
    """Per variant: the learning rate with the lowest median test error over seeds (a diverged run counts as
    chance, 0.9), that median, the per-seed errors there (in seed order), the failures there, and the median at
    every rate tried. Best against best: each variant is read at its own best rate on the same grid."""
    cells: dict[str, dict[float, dict[int, float]]] = {}
    for r in rows:
        err = 0.9 if r["test_err"] is None else float(r["test_err"])
        cells.setdefault(r["key"], {}).setdefault(float(r["lr"]), {})[r["seed"]] = err
    out = {}
    for key, by_lr in cells.items():
        med = {lr: float(np.median(list(v.values()))) for lr, v in sorted(by_lr.items())}
        lr = min(med, key=lambda x: (med[x], x))
        errs = [by_lr[lr][s] for s in sorted(by_lr[lr])]
        out[key] = {"lr": lr, "test_err": med[lr], "errs": errs, "seeds": sorted(by_lr[lr]),
                    "fails": sum(e > FAIL_ERR for e in errs), "by_lr": med}
    return out


def first_step_grads(key: str, seed: int = 0, batch: int = 128, base: ModelConfig = STUDY_MODEL) -> dict:
    """The gradient at the first step, layer by layer: Frobenius norm of each weight layer's gradient (input layer,
    then the two layers of every block, then the classifier) for variant ``key`` at initialization, on the first
    ``batch`` training digits, in training mode. Measures whether a failing variant's gradients vanish or explode."""
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    net = variant_config(key, None, base).build(seed).train()
    data = load_digits(flatten=True)
    loss = F.cross_entropy(net(data.X_train[:batch]), data.y_train[:batch])
    loss.backward()
    named = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.Linear) and m.weight.grad is not None]
    norms = [float(m.weight.grad.norm()) for n, m in named if "shortcut" not in n]     # input, branches, classifier
    shortcut = [float(m.weight.grad.norm()) for n, m in named if "shortcut" in n]      # 1x1 maps and gates
    return {"key": key, "seed": seed, "loss": float(loss.detach()), "grad_norms": norms, "shortcut_grad_norms": shortcut}

