"""Train several networks of ONE architecture (e.g. several seeds) in one vectorized pass.

The parameters of K networks are stacked along a new leading axis and a single forward of the
shared architecture is mapped over that axis with ``torch.func.vmap`` and
``torch.func.functional_call``. Each network still sees its own shuffle of the data (its seed's
``torch.Generator``), its own BatchNorm statistics (the stacked buffers are updated in place by the
batched forward) and its own optimizer state: SGD and AdamW act element by element, so one
optimizer over the stacked tensors equals K separate ones. The result equals K separate
:class:`~skipnet.train.Trainer` runs ``Trainer(model_k, data, cfg.with_(seed=seeds[k]))`` up to
floating-point rounding (``tests/test_vectorized.py``).

Where it serves (measured in ``bench/``): on one CPU thread a stack of 4 MLPs (depth 10-30, width
32-64) trains about 1.4-1.6x faster than the same 4 one after another; convolutional nets do NOT
gain (the batched convolution becomes a grouped convolution, no faster than 4 separate ones: about
0.8-0.95x), so the CNN chapters keep the plain loop. On a GPU, where small trainings are bound by
per-step launch overhead, the stack is the lever.

Plain and residual nets cannot share one pass (their forward code differs); stack seeds of each.
Networks that draw random numbers in their forward (stochastic depth, dropout shortcuts) are
refused. It lives with the benchmarks (``train_speed.py`` measures it); ``tests/test_vectorized.py`` holds it
to :class:`~skipnet.train.Trainer`, network by network, to rounding in float64.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from skipnet.data import Dataset
from skipnet.history import History
from skipnet.runtime import device as default_device, generator
from skipnet.train import Progress, Task, TrainConfig, make_optimizer

__all__ = ["VectorizedTrainer", "fit_many"]


def _check_models(models: Sequence[nn.Module]) -> None:
    if len(models) < 1:
        raise ValueError("models must hold at least one network")
    first = models[0]
    cfg = getattr(first, "cfg", None)
    shapes = [(n, p.shape) for n, p in first.named_parameters()]
    for m in models[1:]:
        if type(m) is not type(first) or getattr(m, "cfg", None) != cfg:
            raise ValueError("models must share one architecture (equal ModelConfig); stack plain and "
                             "residual networks separately")
        if [(n, p.shape) for n, p in m.named_parameters()] != shapes:
            raise ValueError("models must have the same parameters (names and shapes)")
    if cfg is not None:
        if getattr(cfg, "drop_prob", 0.0) > 0 or getattr(cfg, "shortcut", "") == "dropout":
            raise ValueError("models with a random forward (drop_prob > 0 or shortcut='dropout') cannot be "
                             "vectorized; train them with skipnet.train.Trainer")


class VectorizedTrainer:
    """K networks of one architecture trained in one pass; ``histories[k]`` is network k's :class:`History`.

    ``seeds[k]`` plays the part of ``cfg.seed`` for network k (its data order and its stream
    batches); by default every network uses ``cfg.seed``. ``step()`` / ``run()`` / ``stop()`` work as
    in :class:`~skipnet.train.Trainer`; a network that diverges stops recording (``"diverged at
    step k"``) and keeps the weights it had before that step while the others go on.
    ``progress(fraction, text, histories)`` runs after each step; returning ``False`` stops all networks.
    The trained weights are written back into ``models`` by :meth:`sync_models` (called at the end).
    """

    def __init__(self, models: Sequence[nn.Module], data: Dataset | Task, cfg: TrainConfig = TrainConfig(),
                 seeds: Sequence[int] | None = None,
                 progress: Progress | None = None,
                 device: torch.device | str | None = None):
        models = list(models)
        _check_models(models)
        self.K = len(models)
        self.seeds = [cfg.seed] * self.K if seeds is None else [int(s) for s in seeds]
        if len(self.seeds) != self.K:
            raise ValueError(f"seeds must give one seed per model ({self.K}), got {len(self.seeds)}")
        self.cfg, self.progress = cfg, progress
        self.device = torch.device(device) if device is not None else default_device()
        self.models = [m.to(self.device).train() for m in models]
        self.params, self.buffers = stack_module_state(self.models)     # each (K, ...); params are leaves
        self._base = copy.deepcopy(self.models[0]).to("meta")             # the shared architecture, no storage
        self.gens = [generator(s) for s in self.seeds]
        self.stream = None if isinstance(data, Dataset) else data
        if self.stream is None:
            self.data = data.to(self.device)
            self.X, self.y = self.data.X_train, self.data.y_train
            n = len(self.X)
        else:
            n = cfg.batch_size
        self.per_epoch = max(1, n // cfg.batch_size)
        self.total = cfg.total_steps(n)
        self._names = [name for name, p in self.params.items() if p.requires_grad]
        self.opt = make_optimizer(cfg, [self.params[name] for name in self._names])
        layers = list(self.models[0].main_layers()) if hasattr(self.models[0], "main_layers") else []
        module_name = {id(mod): name for name, mod in self.models[0].named_modules()}
        self._grad_params = [f"{module_name[id(w)]}.weight" for _, w in layers]
        self.histories = [History(total_steps=self.total, layer_names=[name for name, _ in layers])
                          for _ in range(self.K)]
        self._orders: torch.Tensor | None = None
        self._frozen: dict[int, tuple[dict, dict]] = {}
        self._forward = vmap(self._one, in_dims=(0, 0, 0))

    def _one(self, params: dict, buffers: dict, X: torch.Tensor) -> torch.Tensor:
        return functional_call(self._base, (params, buffers), (X,))

    # -- state -------------------------------------------------------------------------------------
    def _active(self) -> list[bool]:
        return [h.diverged_at is None and h.stopped_at is None and h.steps_done < self.total
                for h in self.histories]

    @property
    def done(self) -> bool:
        return not any(self._active())

    def stop(self) -> None:
        """Stop every network before its next step (records ``stopped at step k``)."""
        for h, active in zip(self.histories, self._active()):
            if active:
                h.stopped_at = h.steps_done

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Network k's batch at ``step``, as ONE stacked (K, B, ...) tensor and (K, B, ...) labels."""
        B = self.cfg.batch_size
        if self.stream is not None:
            pairs = [self.stream.sample(B, g) for g in self.gens]
            return (torch.stack([X for X, _ in pairs]).to(self.device),
                    torch.stack([y for _, y in pairs]).to(self.device))
        k = step % self.per_epoch
        if k == 0:
            self._orders = torch.stack([torch.randperm(len(self.X), generator=g) for g in self.gens]).to(self.device)
        idx = self._orders[:, k * B:(k + 1) * B]                             # (K, B)
        return self.X[idx], self.y[idx]                                     # (K, B, ...), (K, B)

    # -- one step ----------------------------------------------------------------------------------
    def step(self) -> bool:
        """One optimizer step of every still-active network; return whether any steps remain."""
        active = self._active()
        if not any(active):
            return False
        c, K = self.cfg, self.K
        k = next(h.steps_done for h, a in zip(self.histories, active) if a)
        t0 = time.perf_counter()
        lr = c.lr_at(k, self.total)
        for group in self.opt.param_groups:
            group["lr"] = lr
        X, y = self._batch(k)
        logits = self._forward(self.params, self.buffers, X)               # (K, B, ..., C)
        flat = logits.reshape(K, -1, logits.shape[-1])                      # (K, M, C)
        target = y.reshape(K, -1)                                           # (K, M)
        losses = F.cross_entropy(flat.transpose(1, 2), target, reduction="none").mean(1)      # (K,)
        accs = (flat.argmax(-1) == target).float().mean(1)                  # (K,)
        loss_values, acc_values = torch.stack([losses.detach(), accs]).tolist()    # one host sync for all K
        for i, h in enumerate(self.histories):
            if active[i] and not math.isfinite(loss_values[i]):
                h.diverged_at = k + 1
                active[i] = False
                self._freeze(i)
        if not any(active):
            return False
        mask = torch.tensor(active, device=self.device)
        self.opt.zero_grad(set_to_none=True)
        torch.where(mask, losses, torch.zeros_like(losses)).sum().backward()
        grads = {name: self.params[name].grad for name in self._names}
        if c.grad_clip is not None:
            self._clip(grads, c.grad_clip)
        if c.record_grads_every and k % c.record_grads_every == 0 and self._grad_params:
            rows = torch.stack([grads[p].flatten(1).norm(dim=1) for p in self._grad_params]).T.tolist()  # (K, L)
            for i, h in enumerate(self.histories):
                if not active[i]:
                    continue
                if not all(math.isfinite(v) for v in rows[i]):
                    h.diverged_at = k + 1
                    active[i] = False
                    self._freeze(i)
                    continue
                h.grad_steps.append(k)
                h.grad_norms.append(rows[i])
        self.opt.step()
        dt = time.perf_counter() - t0
        for i, h in enumerate(self.histories):
            if active[i]:
                h.loss.append(loss_values[i])
                h.acc.append(acc_values[i])
                h.lr.append(lr)
                h.step_time.append(dt)
        if (c.eval_every and (k + 1) % c.eval_every == 0) or k + 1 == self.total:
            self._evaluate(k + 1, active)
        if self.progress is not None and self.progress((k + 1) / self.total, f"step {k + 1}/{self.total}",
                                                       self.histories) is False:
            self.stop()
        return not self.done

    @torch.no_grad()
    def _freeze(self, i: int) -> None:
        """Keep network ``i``'s weights as they were when it diverged (its slice goes on changing, unused)."""
        self._frozen[i] = ({n: t[i].clone() for n, t in self.params.items()},
                           {n: t[i].clone() for n, t in self.buffers.items()})

    def _clip(self, grads: dict[str, torch.Tensor], max_norm: float) -> None:
        """Clip each network's gradient to ``max_norm`` (as ``clip_grad_norm_`` on each network alone)."""
        present = [g for g in grads.values() if g is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in present])    # (P, K)
        total = norms.norm(dim=0)                                           # (K,)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in present:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    # -- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def _eval_sets(self, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[list, list]:
        """Mean cross-entropy and accuracy of each network (eval mode) on (K, N, ...) inputs."""
        self._base.eval()
        try:
            loss_sum = torch.zeros(self.K, dtype=torch.float64, device=self.device)
            correct = torch.zeros(self.K, dtype=torch.float64, device=self.device)
            n = 0
            for i in range(0, X.shape[1], batch_size):
                logits = self._forward(self.params, self.buffers, X[:, i:i + batch_size])
                flat = logits.reshape(self.K, -1, logits.shape[-1])
                target = y[:, i:i + batch_size].reshape(self.K, -1)
                loss_sum += F.cross_entropy(flat.transpose(1, 2), target, reduction="none").sum(1).double()
                correct += (flat.argmax(-1) == target).sum(1).double()
                n += target.shape[1]
        finally:
            self._base.train()
        return (loss_sum / n).tolist(), (correct / n).tolist()

    def _evaluate(self, step: int, active: list[bool]) -> None:
        K = self.K
        if self.stream is not None:
            pairs = [self.stream.sample(max(self.cfg.batch_size, 256), generator(10_000 + s)) for s in self.seeds]
            X = torch.stack([X for X, _ in pairs]).to(self.device)
            y = torch.stack([y for _, y in pairs]).to(self.device)
            tr_loss, tr_acc = self._eval_sets(X, y)
            te_loss, te_acc = tr_loss, tr_acc
        else:
            expand = lambda t: t.unsqueeze(0).expand(K, *t.shape)          # (K, N, ...) views, no copies
            tr_loss, tr_acc = self._eval_sets(expand(self.X), expand(self.y))
            te_loss, te_acc = self._eval_sets(expand(self.data.X_test), expand(self.data.y_test))
        for i, h in enumerate(self.histories):
            if not active[i]:
                continue
            if not math.isfinite(tr_loss[i]):
                h.diverged_at = step
                continue
            h.evals.append({"step": step, "train_loss": tr_loss[i], "train_acc": tr_acc[i],
                            "test_loss": te_loss[i], "test_acc": te_acc[i]})

    # -- results -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sync_models(self) -> list[nn.Module]:
        """Copy each network's trained parameters and buffers back into ``models`` and return them."""
        for i, m in enumerate(self.models):
            params, buffers = self._frozen.get(i, ({n: t[i] for n, t in self.params.items()},
                                                   {n: t[i] for n, t in self.buffers.items()}))
            for name, t in m.named_parameters():
                t.copy_(params[name])
            for name, t in m.named_buffers():
                t.copy_(buffers[name])
        return self.models

    def run(self) -> list[History]:
        while self.step():
            pass
        self.sync_models()
        return self.histories


def fit_many(models: Sequence[nn.Module], data: Dataset | Task, cfg: TrainConfig = TrainConfig(),
             seeds: Sequence[int] | None = None, device: torch.device | str | None = None) -> list[History]:
    """Train ``models`` (one architecture) together; return one :class:`History` per model."""
    return VectorizedTrainer(models, data, cfg, seeds, device=device).run()
