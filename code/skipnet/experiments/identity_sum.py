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
           "LAMBDA_BLOCKS", "LAMBDA_PREDICTORS", "lambda_config", "lambda_row", "lambda_boundary", "FAMILY_SWEEPS",
           "load_identity_records", "ablation_cost", "identity_family", "confirmation_seeds", "family_seeds",
           "variants_grid", "init_best_losses", "FAMILY_VARIANTS"]

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


def _spearman(a, b) -> float:
    """Spearman's rank correlation with tied values given their average rank (scipy's convention). Depth and
    lambda take five tied values each on the map: breaking those ties by position would decide the result."""
    from scipy.stats import spearmanr
    return float(spearmanr(a, b).statistic)


LAMBDA_PREDICTORS = {"lambda^L": lambda lam, L: -L * math.log(lam), "lambda": lambda lam, L: -lam,
                     "L": lambda lam, L: float(L), "L(1-lambda)": lambda lam, L: L * (1 - lam)}
"""What the failure of a lambda < 1 cell might follow: -log lambda^L (He et al. 2016, eq. 7), lambda alone,
depth alone, and L(1 - lambda), which is -log lambda^L to first order in 1 - lambda."""


def lambda_boundary(rows: Sequence[Mapping], factor: float = 2.0, n_boot: int = 1000, seed: int = 0) -> dict:
    """The lambda map read against lambda^L. A cell (lambda, L) fails when its median test error is above ``factor``
    times that of lambda = 1 at the same depth. Returns the medians, the error ratios and the failing cells; on the
    lambda < 1 side the smallest lambda^L that trains (every cell below it fails) and the largest that fails (every
    cell above it trains); the Spearman correlations (ties averaged) of the error ratio with each of
    :data:`LAMBDA_PREDICTORS` over the lambda < 1 cells; and a bootstrap over those cells (``n_boot`` resamples,
    fixed ``seed``) of rho(lambda^L) - rho(L): its median and 95 % percentile interval."""
    med = {}
    for r in rows:
        med.setdefault((r["lam"], r["n_blocks"]), []).append(0.9 if r["test_err"] is None else r["test_err"])
    med = {k: float(np.median(v)) for k, v in med.items()}
    ratio = {k: v / med[(1.0, k[1])] for k, v in med.items()}
    fails = {k for k, v in ratio.items() if v > factor}
    below = sorted(k for k in med if k[0] < 1)
    pw = {k: k[0] ** k[1] for k in below}
    worst_fail = max((pw[k] for k in below if k in fails), default=None)
    best_ok = min((pw[k] for k in below if k not in fails), default=None)
    y = np.array([ratio[k] for k in below])
    X = {name: np.array([f(*k) for k in below]) for name, f in LAMBDA_PREDICTORS.items()}
    rho = {name: _spearman(y, x) for name, x in X.items()}
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(below), len(below))
        if np.ptp(y[i]) == 0 or np.ptp(X["L"][i]) == 0:
            continue
        diffs.append(_spearman(y[i], X["lambda^L"][i]) - _spearman(y[i], X["L"][i]))
    cell = {pw[k]: k for k in below}
    return {"median": med, "ratio": ratio, "fails": fails, "max_failing_pow": worst_fail, "min_training_pow": best_ok,
            "max_failing_cell": cell.get(worst_fail), "min_training_cell": cell.get(best_ok),
            "fails_above_one": sorted(k for k in fails if k[0] > 1), "rho": rho,
            "rho_diff_boot": {"median": float(np.median(diffs)),
                              "ci": (float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))),
                              "n": len(diffs)}}


FAMILY_SWEEPS = ("fit", "zero_gamma", "zero_gamma_long", "decode", "decode_control", "variants", "variants_fair",
                 "variants_lr", "variants_lr_top", "variants_lr_edge", "init_lr")
ABLATION_MARGIN = 0.05      # of R^2, stated before the control was run: each write predictable to within it
CLASS_MARGIN = 0.02         # of accuracy (about 7 of 359 test digits)
CHANCE_LOSS = math.log(10)  # a diverged run of the normalization-free starts counts as chance
FAMILY_VARIANTS = {"conv1x1_identity": "1x1 shortcut started at I", "conv1x1_orthogonal": "1x1 shortcut started "
                   "orthogonal", "conv1x1": "1x1 shortcut, default start", "scale": "constant scaling 0.5",
                   "scale_both": "0.5x + 0.5F(x)", "exclusive_gate_0": "exclusive gate, b = 0",
                   "shortcut_gate_0": "shortcut-only gate, b = 0", "dropout": "dropout shortcut",
                   "bn_after_add": "BN after addition"}
"""The shortcut variants whose reading at their best rate the chapter states, each against the identity."""


def load_identity_records(tag: str | None = None) -> dict:
    """The chapter's stored sweeps (``identity_<name>.json``, or the ``tag`` files of a confirmation)."""
    from skipnet.store import load_sweep
    return {name: load_sweep(f"identity_{name}", tag) for name in FAMILY_SWEEPS}


def variants_grid(recs: Mapping) -> list[dict]:
    """Every shortcut-variant run over the learning-rate grid (0.01 to 0.1, then 0.2 and 0.5, then 1 and 2 where
    the top of the grid so far was best), from the stored records: what :func:`best_lr` reads."""
    from skipnet.experiments.identity_variants import lr_grid_rows
    return lr_grid_rows(recs["variants"]["data"]["runs"], recs["variants_fair"]["data"]["runs"],
                        [*recs["variants_lr"]["data"]["runs"], *recs["variants_lr_top"]["data"]["runs"],
                         *recs["variants_lr_edge"]["data"]["runs"]])


def confirmation_seeds(m: int, alpha: float = 0.05, one_sided: bool = False) -> int:
    """The fewest seeds with which a family of ``m`` tests (Holm) can pass any of them at level ``alpha``: the
    smallest n with ``m * p_min(n) < alpha`` (every seed agreeing in sign), where p_min is the two-sided 2 / 2^n of
    a difference test, or the one-sided 1 / 2^n of an equivalence test (``one_sided``; the protocol Holm-adjusts
    the equivalence tests among themselves). Fewer seeds read "not detected" whatever the data; more are needed
    as soon as one seed disagrees."""
    from skipnet.inference import min_p
    if m < 1:
        raise ValueError(f"m must be at least 1, got {m}")
    n = 2
    while m * min_p(n) / (2 if one_sided else 1) >= alpha:
        n += 1
    return n


def family_seeds(fam) -> dict:
    """The seeds a confirmation needs for each kind of test of ``fam``: ``{"difference": n, "equivalence": n}``
    (the latter None when the family has no equivalence test)."""
    res = fam.results().values()
    m_eq = sum(c.margin is not None for c in res)
    return {"difference": confirmation_seeds(len(fam)),
            "equivalence": confirmation_seeds(m_eq, one_sided=True) if m_eq else None}


def _by_seed(rows, **match) -> dict:
    return {r["seed"]: r for r in rows if all(r.get(k) == v for k, v in match.items())}


def ablation_cost(row: Mapping, n_blocks: int) -> float:
    """Mean over the blocks k of R^2(F_k from x_L) - R^2(F_k from x_L - F_k): what removing the term costs."""
    d = row["decode"][str(n_blocks)]
    return float(np.mean(np.subtract(d["writes"], d["writes_ablated"])))


def init_best_losses(rows: Sequence[Mapping]) -> dict[str, dict]:
    """The normalization-free starts (``identity_init_lr``), each at its own best learning rate: the rate with the
    lowest median final training loss over seeds, a diverged run counted as chance (ln 10), and the seeds' losses
    there, in seed order."""
    cells: dict[str, dict[float, dict[int, float]]] = {}
    for r in rows:
        loss = CHANCE_LOSS if r["train_loss"] is None else min(float(r["train_loss"]), CHANCE_LOSS)
        cells.setdefault(r["init"], {}).setdefault(float(r["lr"]), {})[r["seed"]] = loss
    out = {}
    for key, by_lr in cells.items():
        med = {lr: float(np.median(list(v.values()))) for lr, v in by_lr.items()}
        lr = min(med, key=lambda x: (med[x], x))
        out[key] = {"lr": lr, "loss": med[lr], "losses": [by_lr[lr][s] for s in sorted(by_lr[lr])],
                    "seeds": sorted(by_lr[lr])}
    return out


def identity_family(recs: Mapping):
    """The chapter's claims over seeds as one :class:`skipnet.inference.Family` (Holm within it). A pure function
    of the stored records (:func:`load_identity_records`), so that a confirmation on fresh seeds reads the same."""
    from skipnet.experiments.identity_variants import best_lr
    from skipnet.inference import Family
    fam = Family("identity")
    fit = recs["fit"]["data"]["runs"]
    p16, r16 = _by_seed(fit, n_blocks=16, residual=False), _by_seed(fit, n_blocks=16, residual=True)
    s = sorted(set(p16) & set(r16))
    fam.add("fit16", [math.log10(p16[i]["rel_error"][-1]) for i in s], [math.log10(r16[i]["rel_error"][-1]) for i in s],
            "16 blocks learning the identity: log10 relative error, plain minus residual", unit="decades")
    zg = recs["zero_gamma"]["data"]["runs"]
    b20, b56 = _by_seed(zg, depth=20, init="standard"), _by_seed(zg, depth=56, init="standard")
    s = sorted(set(b20) & set(b56))
    fam.add("branch_depth", [np.median(b20[i]["rel_norm"]) for i in s], [np.median(b56[i]["rel_norm"]) for i in s],
            "trained branch size ‖F‖/‖x‖, residual-20 minus residual-56")
    res16 = _by_seed(recs["decode_control"]["data"]["runs"], kind="residual", n_blocks=16)
    s = sorted(res16)
    fam.add("ablation", [ablation_cost(res16[i], 16) for i in s], ABLATION_MARGIN,
            f"residual-16 MLP: R^2 of each write lost when that write is removed from the stream (mean over blocks), "
            f"minus the {ABLATION_MARGIN} margin (lower: the loss is below the margin)", fmt=".3f")
    dec = recs["decode"]["data"]["runs"]
    r8, p8 = _by_seed(dec, kind="residual", n_blocks=8), _by_seed(dec, kind="plain", n_blocks=8)
    s = sorted(set(r8) & set(p8))
    fam.add("class_mid", [r8[i]["decode"]["4"]["class_acc"] for i in s], [p8[i]["decode"]["4"]["class_acc"] for i in s],
            "8-block MLPs: class read linearly from the state after block 4 (which the classifier never reads), "
            "residual minus plain", margin=CLASS_MARGIN, scale=100, unit="points", fmt=".1f")
    best = best_lr(variants_grid(recs))
    for key, text in FAMILY_VARIANTS.items():
        fam.add(f"best_{key}", best[key]["errs"], best["identity"]["errs"],
                f"{text} minus the identity shortcut, test error, each at its best learning rate", scale=100,
                unit="points", fmt=".1f")
    zl = recs["zero_gamma_long"]["data"]["runs"]
    for init, data, key in (("zero_gamma", zg, "zg10"), ("standard", zl, "std40")):
        d20, d56 = _by_seed(data, depth=20, init=init), _by_seed(data, depth=56, init=init)
        s = sorted(set(d20) & set(d56))
        epochs = 10 if key == "zg10" else 40
        fam.add(key, [math.log10(d56[i]["train_loss"]) for i in s], [math.log10(d20[i]["train_loss"]) for i in s],
                f"{init.replace('_', '-')} init, {epochs} epochs: log10 training loss, residual-56 minus residual-20",
                unit="decades")
    starts = init_best_losses(recs["init_lr"]["data"]["runs"])
    for key, name, text in (("1/sqrt(L)", "scaled", "branch x 1/sqrt(L)"), ("rezero", "rezero", "ReZero"),
                            ("fixup", "fixup", "Fixup-style")):
        fam.add(f"init_{name}", starts[key]["losses"],
                starts["standard"]["losses"], f"no normalization, residual-56: {text} minus the standard start, "
                "training loss (a diverged run counts as chance, ln 10), each at its best learning rate")
    return fam
