"""Why does post-LN need warm-up? A triage of the three explanations, by experiment.

Chapter: *Residual connections in Transformers (and the RNN question)*, section on post-LN, pre-LN and warm-up.

The three explanations the chapter weighs:

* Xiong et al. (2020): at init, post-LN's gradients near the output are large (pre-LN's shrink like 1/sqrt(L) with
  the total depth L). Tested by :func:`init_depth_sweep` (gradients and stream norm against L, no training) and by
  training with SGD, whose step DOES scale with the gradient.
* Liu L. et al. (2020, RAdam): early on, Adam's second-moment estimate rests on few gradients, so its variance is
  large; warm-up reduces that variance. Tested by ``torch.optim.RAdam`` (which rectifies it) and by Adam whose second
  moment is estimated over 100 batches before the first step (:class:`PreEstimatedAdam`, the RAdam paper's own
  control), which removes the variance without shrinking the first steps.
* Liu et al. (2020, Admin): post-LN's output depends heavily on its residual branches, which amplifies small
  parameter changes. Tested by :func:`amplification` (the change of the head input after one step or a small random
  perturbation) and by training with Admin's shortcut weights (``TransformerConfig(init="admin")``).

:data:`TRIAGE` lists the training conditions (post-LN, 8 blocks, lr 1e-2, no warm-up unless named); :func:`train_triage`
trains one and :func:`triage_row` records it with the stream's collapse at the end (the token residual ratio after
the last block). Pure functions of (condition, seed) returning plain data.
"""
from __future__ import annotations

import math
import time
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from skipnet.experiments.transformers import (SORT_MODEL, DEFAULT_TRAIN, SORT, WARMUP_BLOCKS, WARMUP_LR,
                                              WARMUP_STEPS, final_collapse, stuck)
from skipnet.history import Run
from skipnet.probes.gradients import layer_grad_norms
from skipnet.runtime import eval_mode, generator
from skipnet.train import Trainer
from skipnet.transformer import SortTask, TransformerConfig

__all__ = ["TRIAGE", "PRE_ADAM_BATCHES", "PreEstimatedAdam", "train_triage", "triage_row", "CONTROLS",
           "ADAM2K_BATCHES", "first_step_norms", "train_control", "control_summary",
           "steps_below", "amplification", "AMPLIFICATION_EPS", "init_depth_sweep", "radam_rectifier", "triage_summary",
           "loglog_slope"]

POST8 = SORT_MODEL.with_(n_blocks=WARMUP_BLOCKS, placement="post")
COLD = DEFAULT_TRAIN.with_(lr=WARMUP_LR, warmup_steps=0)
PRE_ADAM_BATCHES = 100

# name -> (model, training, pre-estimate Adam's second moment). All: post-LN, 8 blocks, no warm-up unless named.
TRIAGE: dict[str, tuple[TransformerConfig, object, bool]] = {
    "AdamW": (POST8, COLD, False),
    "RAdam": (POST8, COLD.with_(optimizer="radam"), False),
    "Adam, second moment pre-estimated": (POST8, COLD, True),
    "SGD, lr 0.01": (POST8, COLD.with_(optimizer="sgd", momentum=0.9, weight_decay=0.0), False),
    "SGD, lr 0.1": (POST8, COLD.with_(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0), False),
    "AdamW, standard init": (POST8.with_(init="standard"), COLD, False),
    "AdamW, standard init, warm-up": (POST8.with_(init="standard"), COLD.with_(warmup_steps=WARMUP_STEPS), False),
    "AdamW, standard init, lr 0.003": (POST8.with_(init="standard"), COLD.with_(lr=3e-3), False),
    "Admin (standard init)": (POST8.with_(init="admin"), COLD, False),
    "pre-LN, AdamW, standard init": (POST8.with_(init="standard", placement="pre"), COLD, False),
}


class PreEstimatedAdam(torch.optim.Optimizer):
    """Adam whose second moment ``v`` starts from an estimate over many batches (no bias correction on ``v``),
    while the first moment starts at zero with the usual bias correction: the control of Liu L. et al. (2020) that
    removes the early variance of ``v`` without shrinking the first steps. Set ``v`` with :meth:`set_second_moment`."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    def set_second_moment(self, estimates: list[torch.Tensor], t: int = 0) -> None:
        """``t``: the step counter to start from. 0 gives the first moment its full bias correction; the number of
        pre-estimation iterations continues the counter through them (the RAdam paper's Adam-2k), so that
        ``1 - beta1^t`` is already about 1 and the first momentum steps are about ``1 - beta1`` of Adam's."""
        params = [p for g in self.param_groups for p in g["params"]]
        for p, v in zip(params, estimates, strict=True):
            self.state[p] = {"t": t, "m": torch.zeros_like(p), "v": v.clone()}

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            b1, b2 = g["betas"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                st["t"] += 1
                st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                p.addcdiv_(st["m"] / (1 - b1 ** st["t"]), st["v"].sqrt().add_(g["eps"]), value=-g["lr"])


def _pre_estimated_adam(trainer: Trainer, task: SortTask, batches: int = PRE_ADAM_BATCHES, ema: bool = False,
                        count_steps: bool = False) -> PreEstimatedAdam:
    """The mean squared (clipped) gradient over ``batches`` batches at the initial weights, as Adam's ``v`` (or, with
    ``ema``, Adam's own running average over them, whose bias ``beta2^batches`` is negligible); ``count_steps``
    continues the step counter through the pre-estimation (see :meth:`PreEstimatedAdam.set_second_moment`)."""
    cfg, net = trainer.cfg, trainer.model
    params = trainer._params
    sums = [torch.zeros_like(p) for p in params]
    gen = generator(123_456 + cfg.seed)
    for _ in range(batches):
        X, y = task.sample(cfg.batch_size, gen)
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(X).reshape(-1, task.vocab), y.reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or 1e9)
        for s, p in zip(sums, params):
            if ema:
                s.mul_(cfg.betas[1]).addcmul_(p.grad, p.grad, value=1 - cfg.betas[1])
            else:
                s.add_(p.grad ** 2 / batches)
    net.zero_grad(set_to_none=True)
    opt = PreEstimatedAdam(params, lr=cfg.lr, betas=cfg.betas)
    opt.set_second_moment(sums, t=batches if count_steps else 0)
    return opt


def train_triage(name: str, seed: int = 0, task: SortTask = SORT) -> Run:
    """Train one condition of :data:`TRIAGE` on the sorting task; return the :class:`~skipnet.history.Run`."""
    if name not in TRIAGE:
        raise ValueError(f"condition must be one of {', '.join(map(repr, TRIAGE))}; got {name!r}")
    model, train, pre_adam = TRIAGE[name]
    net = model.build(seed)
    train = train.with_(seed=seed)
    t0 = time.perf_counter()
    trainer = Trainer(net, task, train)
    if pre_adam:
        trainer.opt = _pre_estimated_adam(trainer, task)
    history = trainer.run()
    return Run(model, train, history, time.perf_counter() - t0, net.eval(), name)


# -- Controls that test what the triage names (the review of the triage) -------------------------------------------
ADAM2K_BATCHES = 2000           # the RAdam paper's Adam-2k: 2,000 iterations that update only the second moment
SGD_COLD = COLD.with_(optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=0.0, grad_clip=None)

# name -> (model, training, pre-estimation (batches, ema, count_steps) or None, SGD lr matched to AdamW's first step)
CONTROLS: dict[str, tuple[TransformerConfig, object, tuple | None, bool]] = {
    "SGD, no clipping, lr 0.1": (POST8, SGD_COLD.with_(lr=0.1), None, False),
    "SGD, no clipping, first step as large as AdamW's": (POST8, SGD_COLD, None, True),
    "SGD, no clipping, first step as large as AdamW's, warm-up": (POST8, SGD_COLD.with_(warmup_steps=WARMUP_STEPS),
                                                                   None, True),
    "Adam, second moment over 2000 batches": (POST8, COLD, (ADAM2K_BATCHES, False, False), False),
    "Adam-2k (second moment over 2000 iterations, step counter running)": (POST8, COLD,
                                                                            (ADAM2K_BATCHES, True, True), False),
}


def first_step_norms(net, task: SortTask = SORT, seed: int = 0, lr: float = WARMUP_LR) -> dict:
    """At the initial weights, on one batch: the gradient norm (unclipped), the number of parameters with a nonzero
    gradient, and the norm of AdamW's first step at ``lr`` (each such coordinate moves by lr: m/sqrt(v) = sign g),
    ``lr * sqrt(n)``. SGD's first step (momentum, no Nesterov) is ``lr_sgd * |g|``."""
    X, y = task.sample(DEFAULT_TRAIN.batch_size, generator(777 + seed))
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(X).reshape(-1, task.vocab), y.reshape(-1)).backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    g = torch.sqrt(sum((q ** 2).sum() for q in grads)).item()
    n = int(sum((q != 0).sum() for q in grads).item())
    net.zero_grad(set_to_none=True)
    return {"grad_norm": g, "n_moving": n, "adam_step": lr * math.sqrt(n), "sgd_matched_lr": lr * math.sqrt(n) / g}


def train_control(name: str, seed: int = 0, task: SortTask = SORT) -> Run:
    """Train one condition of :data:`CONTROLS` (post-LN, 8 blocks, lr 1e-2 for Adam, no warm-up unless named)."""
    if name not in CONTROLS:
        raise ValueError(f"condition must be one of {', '.join(map(repr, CONTROLS))}; got {name!r}")
    model, train, pre, matched = CONTROLS[name]
    net = model.build(seed)
    if matched:
        train = train.with_(lr=first_step_norms(net, task, seed)["sgd_matched_lr"])
    train = train.with_(seed=seed)
    t0 = time.perf_counter()
    trainer = Trainer(net, task, train)
    if pre is not None:
        batches, ema, count = pre
        trainer.opt = _pre_estimated_adam(trainer, task, batches, ema=ema, count_steps=count)
    history = trainer.run()
    return Run(model, train, history, time.perf_counter() - t0, net.eval(), name)


def steps_below(loss: list[float], threshold: float, window: int = 10) -> int | None:
    """First step (from 1) at which the mean batch loss of the last ``window`` steps is below ``threshold``."""
    a = np.asarray(loss, dtype=float)
    if len(a) < window:
        return None
    hit = np.flatnonzero(np.convolve(a, np.ones(window) / window, mode="valid") < threshold)
    return int(hit[0]) + window if len(hit) else None


def triage_row(run: Run, curve_every: int = 5, task: SortTask = SORT) -> dict:
    """The stored record of one triage run: condition, the model's placement / init, optimizer, lr, warm-up, seed,
    status, final loss and accuracy, stuck, the step the loss first fell below half the position-only loss, the
    largest batch loss in the first 20 steps, the collapse measures of :func:`final_collapse`, and the loss curve."""
    m, t, h = run.model, run.train, run.history
    return {"condition": run.label, "placement": m.placement, "init": m.init, "optimizer": t.optimizer, "lr": t.lr,
            "warmup_steps": t.warmup_steps, "seed": run.seed, "status": run.status, "train_loss": run.train_loss,
            "train_acc": run.train_acc, "stuck": h.diverged or stuck(run.train_loss, task),
            "steps_to_half_position_only": steps_below(h.loss, 0.5 * task.position_only_loss()),
            "max_early_loss": max(h.loss[:20]) if h.loss else None, **final_collapse(run.net, task),
            "seconds": round(run.seconds, 2), "loss_curve": [round(v, 4) for v in h.loss[::curve_every]],
            "curve_every": curve_every}


# -- Liu et al.'s amplification, at init --------------------------------------------------------------------------
AMPLIFICATION_EPS = 1e-3


def _head_input(net, X: torch.Tensor) -> torch.Tensor:
    return net.ln_f(net.blocks_forward(net.embed(X))[-1])                 # what the head reads, (B, T, C)


def amplification(model: TransformerConfig, seed: int = 0, mode: str = "random", lr: float = WARMUP_LR,
                  eps: float = AMPLIFICATION_EPS, task: SortTask = SORT) -> float:
    """``||F(theta + dtheta) - F(theta)|| / ||F(theta)||`` for the head input F (mean over tokens of 256 fresh
    sequences), where only the blocks' parameters move: ``mode="random"``, every block weight matrix moves by
    +-``eps`` (random signs); ``mode="adamw"``, one AdamW step at ``lr`` on one clipped batch (what the first
    step of training without warm-up does)."""
    if mode not in ("random", "adamw"):
        raise ValueError(f"mode must be 'random' or 'adamw', got {mode!r}")
    net = model.build(seed)
    X, _ = task.sample(256, generator(5))
    block_params = list(net.blocks.parameters())
    with torch.no_grad(), eval_mode(net):
        before = _head_input(net, X)
    if mode == "adamw":
        Xb, yb = task.sample(DEFAULT_TRAIN.batch_size, generator(seed))
        F.cross_entropy(net(Xb).reshape(-1, task.vocab), yb.reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), DEFAULT_TRAIN.grad_clip)
        torch.optim.AdamW(block_params, lr=lr, betas=DEFAULT_TRAIN.betas, weight_decay=0.0).step()
    else:
        g = generator(99 + seed)
        with torch.no_grad():
            for p in block_params:
                if p.dim() == 2:
                    p.add_(eps * (2 * torch.randint(0, 2, p.shape, generator=g) - 1))
    with torch.no_grad(), eval_mode(net):
        after = _head_input(net, X)
    return ((after - before).norm(dim=-1) / before.norm(dim=-1)).mean().item()


# -- Xiong et al.'s 1/sqrt(L): gradient and stream norm against the total depth, at init -----------------------------
def init_depth_sweep(n_blocks: Iterable[int] = (2, 4, 8, 16, 32, 64), seeds: Iterable[int] = range(5),
                     base: TransformerConfig = SORT_MODEL, task: SortTask = SORT) -> list[dict]:
    """For pre-/post-LN and depth-aware / standard init at every total depth L: the gradient norm of the LAST block's
    fc2 weight and the norm of the final stream per token (before the final norm), one row per (setting, L, seed)."""
    rows = []
    for init in ("depth", "standard"):
        for placement in ("pre", "post"):
            for L in n_blocks:
                model = base.with_(n_blocks=L, placement=placement, init=init)
                for s in seeds:
                    net = model.build(seed=s)
                    X, y = task.sample(DEFAULT_TRAIN.batch_size, generator(20_000 + s))
                    names = [n for n, _ in net.main_layers()]
                    norms = layer_grad_norms(net, X, y)
                    with torch.no_grad(), eval_mode(net):
                        stream = net.blocks_forward(net.embed(X))[-1]
                    rows.append({"placement": placement, "init": init, "n_blocks": L, "seed": s,
                                 "last_fc2_grad": float(norms[names.index(f"block{L - 1}.fc2")]),
                                 "stream_norm": stream.norm(dim=-1).mean().item()})
    return rows


def radam_rectifier(step: int, beta2: float = DEFAULT_TRAIN.betas[1]) -> float:
    """RAdam's variance rectification term r_t at ``step`` (from 1); 0 where RAdam takes an un-adapted momentum step
    (rho_t <= 5 in torch's RAdam), so the adaptive step is scaled by r_t, a built-in warm-up."""
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2 ** step / (1 - beta2 ** step)
    if rho_t <= 5:
        return 0.0
    return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))


def triage_summary(rows: list[dict]) -> list[dict]:
    """Per condition of a stored triage sweep: seeds, seeds trained (not stuck), median final loss, the largest and
    smallest final-stream r, and the median step at which the loss first fell below half the position-only loss."""
    out = []
    for name in dict.fromkeys(r["condition"] for r in rows):
        sub = [r for r in rows if r["condition"] == name]
        reached = [r["steps_to_half_position_only"] for r in sub if r["steps_to_half_position_only"] is not None]
        out.append({"condition": name, "seeds": len(sub), "trained": sum(not r["stuck"] for r in sub),
                    "median_loss": float(np.median([r["train_loss"] for r in sub])),
                    "r_max": max(r["r_final"] for r in sub), "r_min": min(r["r_final"] for r in sub),
                    "median_steps_to_half": float(np.median(reached)) if reached else None})
    return out


def loglog_slope(rows: list[dict], key: str, **match) -> float:
    """Slope of log(geometric mean over seeds of ``key``) against log(n_blocks), over the rows matching ``match``."""
    sub = [r for r in rows if all(r[k] == v for k, v in match.items())]
    Ls = sorted({r["n_blocks"] for r in sub})
    y = [np.mean([np.log(r[key]) for r in sub if r["n_blocks"] == L]) for L in Ls]
    return float(np.polyfit(np.log(Ls), y, 1)[0])


def control_summary(rows: list[dict]) -> list[dict]:
    """Per condition of the stored controls: seeds, seeds trained (not stuck), seeds diverged, the learning rate
    (the median over seeds where it was matched seed by seed) and the median final loss of the runs that finished."""
    out = []
    for name in dict.fromkeys(r["condition"] for r in rows):
        sub = [r for r in rows if r["condition"] == name]
        done = [r["train_loss"] for r in sub if r["train_loss"] is not None]
        lrs = sorted({r["lr"] for r in sub})
        out.append({"condition": name, "seeds": len(sub), "trained": sum(not r["stuck"] for r in sub),
                    "diverged": sum(r["status"].startswith("diverged") for r in sub),
                    "lr": f"{lrs[0]:g}" if len(lrs) == 1 else f"{float(np.median(lrs)):.2f} (matched per seed)",
                    "median_loss": float(np.median(done)) if done else None})
    return out
