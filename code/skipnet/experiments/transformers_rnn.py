"""The RNN question: a skip connection through time (the LSTM's additive cell state) against a
multiplicative recurrence (the tanh RNN) and a gated skip (the LSTM's forget gate, with independent forget and
input gates), and causal linear attention, whose state is additive too (:mod:`skipnet.linear_attention`).

:func:`solve_recall` trains until the task is solved or a budget of ten times the chapter's 200 steps is spent,
so that the stored sweep separates "slow" (solved late) from "cannot" (not solved within the budget).

Chapter: *Residual connections in Transformers (and the RNN question)*. Pure functions of
(config, seed) returning plain data; no plotting, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from skipnet.config import Config
from skipnet.history import Run
from skipnet.linear_attention import LinearAttentionConfig
from skipnet.models import n_params
from skipnet.probes.through_time import grad_through_time
from skipnet.recurrent import RecallTask, RecurrentConfig
from skipnet.runtime import generator
from skipnet.train import Progress, TrainConfig, evaluate, train_run

__all__ = ["RNN_CELLS", "RNN_TRAIN", "RECALL_NETS", "RECALL_BUDGET", "SOLVED_ACC", "STOP_ACC", "SOLVE_WINDOW",
           "TimeGradients", "gradient_through_time", "forget_gate_product", "solve_recall", "solve_row",
           "steps_to_solve", "recall_summary", "FAIR_RACE_NETS", "FAIR_RACE_LENS", "FAIR_RACE_LR"]

# tanh RNN: no skip through time; LSTM without forget gate: a pure additive skip (c_t = c_{t-1} + ...);
# LSTM with forget gate (bias 1, the common default): a gated skip, open only as far as sigmoid(f_t).
RNN_CELLS = {
    "tanh RNN": RecurrentConfig(cell="tanh"),
    "LSTM, no forget gate": RecurrentConfig(cell="lstm", forget_gate=False),
    "LSTM (forget gate)": RecurrentConfig(cell="lstm", forget_gate=True, forget_bias=1.0),
}
RNN_TRAIN = TrainConfig(lr=3e-3, optimizer="adamw", betas=(0.9, 0.98), weight_decay=0.0, batch_size=64,
                        steps=200, warmup_steps=10, schedule="cosine", grad_clip=1.0)

# The recall race: the three recurrent nets, a tanh RNN as wide as it must be to have as many parameters as the
# LSTM (width 128: 34,952 parameters against 34,056), and causal linear attention with and without decay.
RECALL_NETS: dict[str, Config] = {
    **RNN_CELLS,
    "tanh RNN, width 128": RecurrentConfig(cell="tanh", width=128),
    "linear attention": LinearAttentionConfig(decay="none"),
    "linear attention, gated decay": LinearAttentionConfig(decay="gate", gate_bias=1.0),
    "linear attention, decay 0.9": LinearAttentionConfig(decay="fixed", decay_value=0.9),
}
RECALL_BUDGET = 10 * RNN_TRAIN.steps       # ten times the chapter's live budget

# The fair race (a second sweep beside the first): every net at the same lengths up to T = 100, at lr 3e-3. The
# LSTM without forget gate was not run at T = 100 in the first race; the forget gate is also tried open wide
# (bias 3, sigmoid(3) = 0.95); the GRU the thread names; a gate-free additive RNN, h + tanh(W h + U x), which cannot
# close an input gate against distractors; and linear attention WITHOUT position embeddings, the recurrences' footing.
FAIR_RACE_NETS: dict[str, Config] = {
    "LSTM, no forget gate": RecurrentConfig(cell="lstm", forget_gate=False),
    "LSTM, forget bias 3": RecurrentConfig(cell="lstm", forget_gate=True, forget_bias=3.0),
    "GRU": RecurrentConfig(cell="gru"),
    "additive RNN": RecurrentConfig(cell="additive"),
    "linear attention, no positions": LinearAttentionConfig(decay="none", positions=False),
}
FAIR_RACE_LENS, FAIR_RACE_LR = (10, 20, 40, 100), 3e-3
SOLVED_ACC, STOP_ACC, SOLVE_WINDOW = 0.95, 0.99, 20   # solved: 20-step mean batch accuracy >= 0.95; stop at 0.99


@dataclass
class TimeGradients:
    """``||dL/ds_t||`` at every step t of a freshly initialized net, one row a seed."""

    model: RecurrentConfig
    norms: np.ndarray                  # (seeds, seq_len)

    @property
    def first_over_last(self) -> np.ndarray:
        """Per seed: gradient reaching the first step over the gradient at the last step."""
        return self.norms[:, 0] / self.norms[:, -1]


def gradient_through_time(model: RecurrentConfig, seq_len: int = 100, seeds: Iterable[int] = (0, 1, 2),
                          batch_size: int = 64) -> TimeGradients:
    """How much of the loss gradient at the last step reaches each earlier step, at initialization."""
    task = RecallTask(seq_len=seq_len, vocab=model.vocab)
    rows = []
    for s in seeds:
        net = model.build(seed=s)
        X, y = task.sample(batch_size, generator(40_000 + s))
        rows.append(grad_through_time(net, X, y))
    return TimeGradients(model, np.array(rows))


@torch.no_grad()
def forget_gate_product(model: RecurrentConfig, seq_len: int = 100, seeds: Iterable[int] = (0, 1, 2),
                        batch_size: int = 64) -> dict:
    """What the LSTM's forget gates do to the carousel alone, at initialization, on the inputs of
    :func:`gradient_through_time`: ``gate``, the geometric mean of the forget gate f_t over seeds, sequences, units
    and steps (the measured per-step factor; near ``sigmoid(forget_bias)``); ``product``, the geometric mean of
    ``prod_{t=2..T} f_t`` per unit, the factor by which the cell-state path alone carries c_1 to c_T (the gradient
    through the carousel only, without the paths through the gates and the hidden state)."""
    if model.cell != "lstm" or not model.forget_gate:
        raise ValueError("forget_gate_product needs an LSTM with a forget gate")
    task = RecallTask(seq_len=seq_len, vocab=model.vocab)
    logs = []
    for s in seeds:
        net = model.build(seed=s)
        X, _ = task.sample(batch_size, generator(40_000 + s))
        xs = net.U(net.embed(X))                                              # (B, T, 4H): as in RecurrentNet.run
        h = xs.new_zeros(X.shape[0], model.width)
        c = torch.zeros_like(h)
        log_f = []
        for t in range(seq_len):
            i, f, g, o = (xs[:, t] + net.W(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            log_f.append(F.logsigmoid(f).double())
        logs.append(torch.stack(log_f, dim=1))                                 # (B, T, H)
    lf = torch.cat(logs)
    return {"gate": float(lf.mean().exp()), "product": float(lf[:, 1:].sum(1).mean().exp()),
            "steps": seq_len - 1, "bias": model.forget_bias}


def steps_to_solve(acc: list[float], threshold: float = SOLVED_ACC, window: int = SOLVE_WINDOW) -> int | None:
    """The first step (counted from 1) at which the mean batch accuracy of the last ``window`` steps reaches
    ``threshold``; ``None`` if it never does."""
    a = np.asarray(acc, dtype=float)
    if len(a) < window:
        return None
    means = np.convolve(a, np.ones(window) / window, mode="valid")          # means[i]: steps i+1 .. i+window
    hit = np.flatnonzero(means >= threshold)
    return int(hit[0]) + window if len(hit) else None


def solve_recall(model: Config, seq_len: int, seed: int = 0, lr: float = RNN_TRAIN.lr, budget: int = RECALL_BUDGET,
                 label: str = "", progress: Progress | None = None) -> Run:
    """Train ``model`` (a recurrent net or linear attention) on recall of the first of ``seq_len`` tokens with
    :data:`RNN_TRAIN` at ``lr`` and a cosine schedule over ``budget`` steps, stopping once the 20-step mean batch
    accuracy reaches :data:`STOP_ACC`. ``run.extra``: seq_len, lr, budget, steps_to_solve (None: not solved within
    the budget), eval_acc (accuracy on 1024 fresh sequences at the end)."""
    task = RecallTask(seq_len=seq_len, vocab=model.vocab)

    def stop_when_solved(fraction, text, history):
        if progress is not None and progress(fraction, text, history) is False:
            return False
        a = history.acc
        return not (len(a) >= SOLVE_WINDOW and sum(a[-SOLVE_WINDOW:]) / SOLVE_WINDOW >= STOP_ACC)

    run = train_run(model, task, RNN_TRAIN.with_(lr=lr, steps=budget), seed, label, stop_when_solved)
    X, y = task.sample(1024, generator(10_000 + seed))
    _, acc = evaluate(run.net, X, y)
    run.extra.update(seq_len=seq_len, lr=lr, budget=budget, steps_to_solve=steps_to_solve(run.history.acc),
                     eval_acc=acc)
    return run


def solve_row(run: Run, curve_every: int = 10) -> dict:
    """The stored record of one :func:`solve_recall` run (the batch accuracy every ``curve_every`` steps)."""
    return {"label": run.label, **{k: run.extra[k] for k in ("seq_len", "lr", "budget", "steps_to_solve", "eval_acc")},
            "solved": run.extra["steps_to_solve"] is not None, "seed": run.seed, "status": run.status,
            "steps_run": run.history.steps_done, "n_params": n_params(run.net),
            "seconds": round(run.seconds, 2), "acc_curve": [round(v, 3) for v in run.history.acc[::curve_every]],
            "curve_every": curve_every}


def recall_summary(rows: list[dict], budget: int = RECALL_BUDGET) -> list[dict]:
    """For each (net, T) of a stored race: the lr that solved the most seeds (ties: the fewer median steps), its
    steps to solve per seed (None: not solved within ``budget``), and how many seeds solved. Unsolved seeds count as
    more than the budget in the median."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        for T in sorted({r["seq_len"] for r in rows if r["label"] == label}):
            cands = []
            for lr in sorted({r["lr"] for r in rows if r["label"] == label and r["seq_len"] == T}):
                sub = sorted((r for r in rows if (r["label"], r["seq_len"], r["lr"]) == (label, T, lr)),
                             key=lambda r: r["seed"])
                steps = [r["steps_to_solve"] for r in sub]
                med = float(np.median([s if s is not None else 2 * budget for s in steps]))
                cands.append((-sum(s is not None for s in steps), med, lr, steps, sub[0]["n_params"]))
            n_solved, med, lr, steps, params = min(cands)
            out.append({"label": label, "seq_len": T, "lr": lr, "steps": steps, "solved": -n_solved,
                        "seeds": len(steps), "median_steps": med if -n_solved * 2 > len(steps) else None,
                        "n_params": params, "lrs_tried": len(cands)})
    return out
