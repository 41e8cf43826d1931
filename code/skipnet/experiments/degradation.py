"""The degradation problem (He et al. 2015, Fig. 1 and 6) on the digits: deeper plain CNNs train
WORSE, residual ones do not. The opening chapter and *The gradient highway*.

* :func:`train_one`, :func:`race`, :func:`degradation_table`, :func:`degradation_row`: the chapter's budget
  (10 epochs = 110 SGD steps on the 1,438 training digits).
* :func:`convergence_run`: the same networks with a budget ten times longer, recording the step at which the
  training-batch loss first falls below fixed thresholds: He et al.'s conjecture of "exponentially low
  convergence rates" for deep plain nets, measured (steps to a loss against depth).
* :func:`lr_row`: one point of the learning-rate sweep of the opening chapter's exercise.
* :func:`intervention_run`: a test of "explosion, then paralysis" (*The gradient highway*): plain SGD, every
  BatchNorm-followed weight held at its initial norm (no weight growth, so no shrinking effective step), or
  layer-wise relative (LARS-like) steps.
"""
from __future__ import annotations

import time
from typing import Iterable

import numpy as np
import torch

from skipnet.data import load_digits
from skipnet.history import Run
from skipnet.models import ModelConfig
from skipnet.race import race_runs
from skipnet.train import Progress, TrainConfig, Trainer, evaluate, train_run

__all__ = ["DEGRADATION_MODEL", "DEFAULT_TRAIN", "train_one", "race", "degradation_table", "degradation_row",
           "epoch_means", "THRESHOLDS", "LONG_EPOCHS", "convergence_run", "steps_to", "lr_row", "INTERVENTIONS",
           "LARS_TRUST", "SMALL_LRS", "CONTROLS", "intervention_run", "convergence_fit", "steps_table"]

DEGRADATION_MODEL = ModelConfig(arch="cnn", depth=20, width=8, norm="batch")
DEFAULT_TRAIN = TrainConfig(lr=0.1, optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4,
                            batch_size=128, epochs=10, warmup_steps=12, schedule="cosine")


def train_one(depth: int, residual: bool, seed: int = 0, model: ModelConfig = DEGRADATION_MODEL,
              train: TrainConfig = DEFAULT_TRAIN, progress: Progress | None = None) -> Run:
    """Train one CNN of the given depth on the digits; return the :class:`~skipnet.history.Run`."""
    return train_run(model.with_(depth=depth, residual=residual), load_digits(), train, seed, progress=progress)


def race(depth: int, seed: int = 0, model: ModelConfig = DEGRADATION_MODEL, train: TrainConfig = DEFAULT_TRAIN,
         progress: Progress | None = None, variants: Iterable[bool] = (False, True)) -> dict[str, Run]:
    """Train the plain and the residual network of one depth side by side, one step of each in turn.

    ``progress(fraction, text, {"plain": history, "residual": history})`` runs after every pair of steps
    (live curves); returning ``False`` stops both. Returns a Run per variant, keyed ``"plain"`` / ``"residual"``.
    """
    models = {("residual" if r else "plain"): model.with_(depth=depth, residual=r) for r in variants}
    return race_runs(models, load_digits(), train, seed, progress)


def degradation_table(depths: Iterable[int] = (8, 20, 56), seeds: Iterable[int] = (0,),
                      model: ModelConfig = DEGRADATION_MODEL, train: TrainConfig = DEFAULT_TRAIN) -> list[Run]:
    """Every (depth, plain/residual, seed) combination, trained to the end (plain and residual side by side)."""
    depths, seeds = list(depths), list(seeds)
    races = {(d, s): race(d, s, model, train) for d in depths for s in seeds}
    return [races[(d, s)][kind] for d in depths for kind in ("plain", "residual") for s in seeds]


def epoch_means(values: list[float], per_epoch: int) -> list[float]:
    """Mean of a per-step curve over each epoch (a last partial epoch is averaged too)."""
    return [float(np.mean(values[i:i + per_epoch])) for i in range(0, len(values), per_epoch)]


def degradation_row(run: Run) -> dict:
    """The stored record of one run: :meth:`Run.row` with depth and residual, plus ``epoch_loss`` (the mean
    training-batch loss of each epoch)."""
    per_epoch = max(1, len(load_digits().X_train) // run.train.batch_size)
    row = run.row("depth", "residual")
    del row["label"]
    return {**row, "epoch_loss": epoch_means(run.history.loss, per_epoch)}


# -- the convergence rate: steps to a fixed training loss ----------------------------------------------------
THRESHOLDS = (1.0, 0.5, 0.2, 0.1)
LONG_EPOCHS = 100                   # ten times the chapter's budget: 1,100 SGD steps


def steps_to(loss: list[float], threshold: float, window: int) -> int | None:
    """The first step k (counted from 1) at which the mean training-batch loss of steps k-window+1..k (fewer at
    the start) is below ``threshold``; ``None`` if it never is. A running mean, because one batch is noisy."""
    c = np.cumsum(np.asarray(loss, dtype=np.float64))
    for k in range(1, len(c) + 1):
        lo = max(0, k - window)
        mean = (c[k - 1] - (c[lo - 1] if lo else 0.0)) / (k - lo)
        if mean < threshold:
            return k
    return None


def convergence_run(depth: int, residual: bool, seed: int = 0, epochs: int = LONG_EPOCHS,
                    thresholds: Iterable[float] = THRESHOLDS, stop_below: float | None = None,
                    model: ModelConfig = DEGRADATION_MODEL, train: TrainConfig = DEFAULT_TRAIN,
                    progress: Progress | None = None) -> dict:
    """Train one CNN with the chapter's SGD but ``epochs`` long (warm-up, then cosine over the whole budget) and
    return a plain record: the step at which the running mean (one epoch of steps) of the TRAINING-BATCH loss
    first falls below each threshold (``steps_to``, ``None`` = not within the budget), the epoch means of the
    batch loss, and the eval-mode loss and accuracy on the full training and test sets at the end.

    The run stops early once the running mean falls below ``stop_below`` (default: the lowest threshold), so a
    network that converges costs only the steps it needs; the schedule is always that of the full budget, so
    the crossing steps do not depend on when the run stops. Only a non-finite training-batch loss counts as a
    divergence: early in training a deep plain BatchNorm net's eval-mode loss can be huge or infinite (its
    running statistics lag behind the batch statistics) while its training loss is fine, so the eval-mode
    numbers are recorded as they come (``None`` when not finite) and never stop the run.
    """
    thresholds = sorted((float(t) for t in thresholds), reverse=True)
    stop_below = min(thresholds) if stop_below is None else float(stop_below)
    data = load_digits()
    cfg = model.with_(depth=depth, residual=residual)
    net = cfg.build(seed)
    per_epoch = max(1, len(data.X_train) // train.batch_size)
    tcfg = train.with_(epochs=epochs, seed=seed, eval_every=0, record_grads_every=0)
    budget = tcfg.total_steps(len(data.X_train))
    trainer = Trainer(net, data, tcfg)
    t0 = time.process_time()
    status = "budget"
    while trainer.step():
        h = trainer.history
        k = h.steps_done
        if k % per_epoch:
            continue
        if np.mean(h.loss[-per_epoch:]) < stop_below:
            status = f"reached {stop_below:g}"
            break
        if progress is not None and progress(k / budget, f"{cfg.label}, seed {seed}: step {k}/{budget}, "
                                             f"loss {h.loss[-1]:.3g}", h) is False:
            status = f"stopped at step {k}"
            break
    h = trainer.history                 # the trainer's own final evaluation may flag an infinite eval-mode loss
    diverged = h.diverged_at is not None and h.diverged_at > h.steps_done       # a non-finite BATCH loss
    final = {}
    for part, (X, y) in {"train": (trainer.X, trainer.y), "test": (trainer.X_test, trainer.data.y_test)}.items():
        loss, acc = evaluate(trainer.model, X, y)
        final[f"{part}_loss"] = loss if np.isfinite(loss) else None
        final[f"{part}_acc"] = acc
    return {"depth": cfg.depth, "residual": residual, "seed": seed, "budget": budget, "steps_done": h.steps_done,
            "status": f"diverged at step {h.diverged_at}" if diverged else status,
            "steps_to": {f"{t:g}": steps_to(h.loss, t, per_epoch) for t in thresholds},
            "epoch_loss": [round(v, 5) for v in epoch_means(h.loss, per_epoch)],
            "last_loss": round(float(np.mean(h.loss[-per_epoch:])), 5) if h.loss else None,
            **final, "cpu_seconds": round(time.process_time() - t0, 1)}


def steps_table(rows: Iterable[dict], threshold: float, residual: bool) -> dict[int, list[int | None]]:
    """``{depth: [steps to threshold of each seed]}`` from stored :func:`convergence_run` rows (``None`` = not
    within the budget), depths ascending, seeds in stored order."""
    key = f"{float(threshold):g}"
    out: dict[int, list[int | None]] = {}
    for r in sorted(rows, key=lambda r: (r["depth"], r["seed"])):
        if r["residual"] == residual:
            out.setdefault(r["depth"], []).append(r["steps_to"][key])
    return out


def convergence_fit(rows: Iterable[dict], threshold: float, residual: bool = False, min_depth: int = 0) -> dict:
    """Least-squares fit of ``ln(steps to threshold) = a + b * depth`` over the depths (at least ``min_depth``:
    set it above the warm-up floor, where every network needs about the same few steps) at which EVERY seed got
    there (a censored depth would bias the fit down). Returns ``slope`` (b, per layer), ``doubling`` (ln 2 / b
    layers), ``r2``, the ``depths`` used, ``r2_power`` of the rival power law ``ln steps = c + k ln depth`` on the
    same points (He et al.'s conjecture is "exponentially low convergence rates"), and ``seed_slopes``: the same
    fit for each seed alone, one slope a seed (a seed is one draw of every depth's network), which the chapter's
    interval and test read."""
    table = steps_table(rows, threshold, residual)
    pts = [(d, s) for d, ss in table.items() if d >= min_depth and ss and all(v is not None for v in ss) for s in ss]
    depths = sorted({d for d, _ in pts})
    if len(depths) < 3:
        raise ValueError(f"need at least 3 depths where every seed reached {threshold:g}, got {depths}")
    x = np.array([d for d, _ in pts], dtype=np.float64)
    y = np.log(np.array([s for _, s in pts], dtype=np.float64))

    def r2(u):
        A = np.stack([np.ones_like(u), u], axis=1)
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        resid = y - A @ coef
        return coef, 1 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())

    (a, b), r2_exp = r2(x)
    _, r2_pow = r2(np.log(x))
    key = f"{float(threshold):g}"
    by_seed: dict[int, dict[int, int]] = {}
    for r in rows:
        if r["residual"] == residual and r["depth"] in depths:
            by_seed.setdefault(r["seed"], {})[r["depth"]] = r["steps_to"][key]
    seed_slopes = [float(np.polyfit(depths, np.log([st[d] for d in depths]), 1)[0])
                   for _, st in sorted(by_seed.items()) if all(st.get(d) is not None for d in depths)]
    return {"slope": float(b), "intercept": float(a), "doubling": float(np.log(2) / b) if b > 0 else float("inf"),
            "r2": r2_exp, "r2_power": r2_pow, "depths": depths, "seed_slopes": seed_slopes}


def lr_row(depth: int, residual: bool, lr: float, seed: int = 0, model: ModelConfig = DEGRADATION_MODEL,
           train: TrainConfig = DEFAULT_TRAIN) -> dict:
    """One point of the learning-rate sweep: the chapter's budget at peak learning rate ``lr``
    (:func:`degradation_row` plus ``lr`` and the last epoch's mean training-batch loss)."""
    run = train_one(depth, residual, seed, model, train.with_(lr=float(lr)))
    row = degradation_row(run)
    return {**row, "lr": float(lr), "last_loss": row["epoch_loss"][-1] if row["epoch_loss"] else None}


# -- an intervention on "explosion, then paralysis" ------------------------------------------------------
INTERVENTIONS = ("sgd", "project", "lars", "equalize")
CONTROLS = ("lars_matched",)               # the relative-step control, stored in its own sweep
LARS_TRUST = 0.1
SMALL_LRS = (0.003, 0.01, 0.03)            # SGD's smaller peak learning rates: imbalanced steps, all of them smaller


def intervention_run(mode: str, depth: int = 56, residual: bool = False, seed: int = 0, epochs: int = 10,
                     trust: float = LARS_TRUST, model: ModelConfig = DEGRADATION_MODEL,
                     train: TrainConfig = DEFAULT_TRAIN) -> dict:
    """Train one CNN with the chapter's SGD and one change to its weight layers that are followed by BatchNorm
    (the stem and every conv; not the head), and return a plain record.

    * ``"sgd"``: no change (the baseline).
    * ``"project"``: after every step each of those weights is rescaled to its initial norm. Behind BatchNorm this
      leaves the function unchanged, and it removes the mechanism of "paralysis": a scale-invariant weight's
      gradient is orthogonal to it, so under SGD its norm can only grow (``|W_{t+1}|^2 = |W_t|^2 + lr^2 |g_t|^2``
      before weight decay), and its effective step shrinks like ``1 / |W|^2``.
    * ``"lars"``: each of those gradients is rescaled to ``trust * |W|`` before the update (a relative step of
      ``lr * trust`` per layer, whatever the layer's gradient: LARS-like, You et al. 2017). The norms are left
      free (no projection), but a relative step orthogonal to ``W`` hardly grows it.
    * ``"equalize"``: each of those gradients is multiplied, at every step, by a factor fixed at the FIRST step:
      the top conv layer's gradient norm over the layer's own. This removes only the explosion at initialization
      (every layer starts with the top layer's gradient size) and leaves everything else to SGD: the weights grow
      freely and the gradients evolve as they do.
    * ``"lars_matched"`` (a control for ``"lars"``): each of those gradients points where SGD's does, with a
      norm proportional to ``|W|`` as in ``"lars"``, but the total norm over those layers is SGD's own, that of the
      previous step's raw gradients (the first step is plain SGD). Every layer then takes the same relative step,
      the aggregate ``|g_total| / |W_total|``; in plain-56 that total is dominated by the exploding lowest layers,
      so this raises the relative step of every layer whose own is below that aggregate (and in the stored runs the
      lowest layers' weights grow more than under SGD too): it changes the step sizes as well as the balance. The other missing cell, imbalanced but smaller steps, is ``"sgd"`` at a smaller
      ``train.lr`` (:data:`SMALL_LRS`).

    Recorded: final eval-mode training loss and accuracy, the RAW (before any rescaling) first/last layer gradient
    ratio at the first step and its geometric mean over the last 10 steps, and ``|W_end| / |W_init|`` of the first
    layer and the median over the first 18 blocks' layers.
    """
    if mode not in INTERVENTIONS + CONTROLS:
        raise ValueError(f"mode must be one of {', '.join(INTERVENTIONS + CONTROLS)}; got {mode!r}")
    cfg = model.with_(depth=depth, residual=residual)
    net = cfg.build(seed)
    layers = [w for _, w in net.main_layers()]
    scaled = layers[:-1]                                   # every weight followed by a BatchNorm (not the head)
    init = [w.weight.detach().norm().item() for w in layers]
    raw: dict[str, float] = {}
    factor: dict[str, float] = {}                          # "equalize": fixed at the first step
    top = f"w{len(scaled) - 1}"
    w_total = [None]                                       # "lars_matched": SGD's total norm / sum of |W|^2, lagged

    def hook(name: str, p: torch.Tensor):
        def f(g: torch.Tensor) -> torch.Tensor | None:
            raw[name] = g.norm().item()
            if mode == "lars" and name != "head":
                return g * (trust * p.detach().norm() / (g.norm() + 1e-12))
            if mode == "lars_matched" and name != "head" and w_total[0] is not None:
                return g * (w_total[0] * p.detach().norm() / (g.norm() + 1e-12))
            if mode == "equalize" and name != "head":      # backward reaches the top conv before the lower ones
                if name not in factor:
                    factor[name] = raw[top] / (raw[name] + 1e-30)
                return g * factor[name]
            return None
        return f

    handles = [layers[0].weight.register_hook(hook("first", layers[0].weight)),
               layers[-1].weight.register_hook(hook("head", layers[-1].weight))]
    if mode in ("lars", "equalize", "lars_matched"):
        handles += [w.weight.register_hook(hook(f"w{i}", w.weight)) for i, w in enumerate(scaled[1:], 1)]
    trainer = Trainer(net, load_digits(), train.with_(epochs=epochs, seed=seed))
    ratios, t0 = [], time.process_time()
    while not trainer.done:
        trainer.step()
        if mode == "lars_matched" and "first" in raw:
            names = ["first"] + [f"w{i}" for i in range(1, len(scaled))]
            g_tot = float(np.sqrt(sum(raw[n] ** 2 for n in names)))
            w_tot = float(np.sqrt(sum(w.weight.detach().norm().item() ** 2 for w in scaled)))
            w_total[0] = g_tot / w_tot
        if "first" in raw:
            ratios.append(raw.pop("first") / raw.pop("head"))
        if mode == "project":
            with torch.no_grad():
                for w, n0 in zip(scaled, init):
                    w.weight.mul_(n0 / w.weight.norm())
    for h in handles:
        h.remove()
    hist = trainer.history
    growth = [w.weight.detach().norm().item() / n0 for w, n0 in zip(layers, init)]
    per_epoch = max(1, len(trainer.X) // train.batch_size)
    return {"mode": mode, "depth": cfg.depth, "residual": residual, "seed": seed, "epochs": epochs, "lr": train.lr,
            "status": hist.status, "train_loss": hist.final.get("train_loss"),
            "train_acc": hist.final.get("train_acc"), "test_acc": hist.final.get("test_acc"),
            "epoch_loss": [round(v, 5) for v in epoch_means(hist.loss, per_epoch)],
            "ratio_first_step": ratios[0] if ratios else None,
            "ratio_last10": float(np.exp(np.mean(np.log(ratios[-10:])))) if ratios else None,
            "growth_first": growth[0], "growth_low_median": float(np.median(growth[1:19])),
            "cpu_seconds": round(time.process_time() - t0, 1)}
