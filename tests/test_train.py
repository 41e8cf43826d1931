"""The training loop: reproducibility, schedule, divergence as a result, stopping, streams."""
import math

import numpy as np
import pytest
import torch

import torch.nn.functional as F

from skipnet.data import load_digits
from skipnet.models import build_model
from skipnet.probes.gradients import layer_grad_norms
from skipnet.race import race
from skipnet.runtime import generator
from skipnet.train import TrainConfig, Trainer, fit, evaluate, sub_progress

SMALL = dict(arch="cnn", depth=8, width=4)
QUICK = TrainConfig(epochs=2, batch_size=64)


def test_same_seed_gives_bit_identical_history(digits):
    runs = [fit(build_model(**SMALL, seed=5), digits, QUICK.with_(seed=5)) for _ in range(2)]
    assert runs[0].loss == runs[1].loss and runs[0].evals == runs[1].evals
    other = fit(build_model(**SMALL, seed=6), digits, QUICK.with_(seed=6))
    assert other.loss != runs[0].loss


def test_history_shapes_and_status(digits):
    h = fit(build_model(**SMALL, seed=0), digits, QUICK.with_(eval_every=11))
    steps = QUICK.total_steps(len(digits.X_train))
    assert h.total_steps == steps == 2 * (len(digits.X_train) // 64)
    assert len(h.loss) == len(h.acc) == len(h.lr) == len(h.step_time) == steps
    assert h.status == "finished" and not h.diverged
    assert [e["step"] for e in h.evals] == [s for s in range(11, steps + 1, 11)] + ([steps] if steps % 11 else [])
    assert all(0 <= e["test_acc"] <= 1 for e in h.evals)


def test_training_reduces_the_loss(digits):
    h = fit(build_model(**SMALL, seed=0), digits, TrainConfig(epochs=3))
    assert h.final["train_loss"] < 0.5 * math.log(10)
    assert h.final["test_acc"] > 0.8


def test_warmup_then_cosine_schedule():
    cfg = TrainConfig(lr=0.1, warmup_steps=10)
    assert cfg.lr_at(0, 110) == pytest.approx(0.01)
    assert cfg.lr_at(9, 110) == pytest.approx(0.1)
    assert cfg.lr_at(60, 110) == pytest.approx(0.05)          # half-way through the cosine
    assert cfg.lr_at(109, 110) < 0.001
    assert TrainConfig(lr=0.1, warmup_steps=0, schedule="constant").lr_at(50, 100) == 0.1


def _three_part_schedule(lr, warmup, total, schedule):
    """Written out independently of TrainConfig.lr_at: the lr of every step 0..total-1, as one array: a linear
    warm-up (warmup steps ending AT lr), then a half cosine from lr (its first step) toward 0, or a constant."""
    ramp = lr * np.arange(1, warmup + 1) / warmup if warmup else np.zeros(0)
    n = max(total - warmup, 0)
    tail = (np.full(n, lr) if schedule == "constant"
            else lr / 2 * (1 + np.cos(np.pi * np.arange(n) / max(1, total - warmup))))
    return np.concatenate([ramp, tail])[:total]


@pytest.mark.parametrize("warmup,total,schedule", [(10, 110, "cosine"), (0, 50, "cosine"), (1, 7, "cosine"),
                                                   (12, 12, "cosine"), (12, 100, "constant"), (0, 9, "constant")])
def test_schedule_equals_an_independent_three_part_schedule_at_every_step(warmup, total, schedule):
    cfg = TrainConfig(lr=0.1, warmup_steps=warmup, schedule=schedule)
    lrs = np.array([cfg.lr_at(k, total) for k in range(total)])
    assert np.allclose(lrs, _three_part_schedule(0.1, warmup, total, schedule), rtol=1e-12, atol=0)
    assert lrs.max() == pytest.approx(0.1, rel=1e-12) and np.all(lrs > 0)      # never above lr, never 0 in the run


def test_the_warmup_boundary_is_pinned():
    cfg, total = TrainConfig(lr=0.1, warmup_steps=10), 110
    assert cfg.lr_at(9, total) == pytest.approx(0.1, rel=1e-12)           # the last warm-up step reaches lr ...
    assert cfg.lr_at(10, total) == pytest.approx(0.1, rel=1e-12)          # ... the first cosine step starts there
    assert cfg.lr_at(11, total) == pytest.approx(0.05 * (1 + math.cos(math.pi / 100)), rel=1e-12)
    assert cfg.lr_at(11, total) < cfg.lr_at(10, total)
    no_warmup = TrainConfig(lr=0.1, warmup_steps=0)                        # legal: the cosine from step 0
    assert no_warmup.lr_at(0, total) == pytest.approx(0.1, rel=1e-12)
    assert no_warmup.lr_at(1, total) == pytest.approx(0.05 * (1 + math.cos(math.pi / 110)), rel=1e-12)
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)


def test_divergence_is_a_result_not_a_crash(digits_flat):
    net = build_model(arch="mlp", n_blocks=30, width=64, in_shape=(64,), norm="none", seed=0)
    h = fit(net, digits_flat, TrainConfig(lr=5.0, warmup_steps=0, epochs=3, momentum=0.9))
    assert h.diverged and h.status == f"diverged at step {h.diverged_at}"
    assert 1 <= h.diverged_at <= h.total_steps
    assert all(math.isfinite(v) for v in h.loss)              # nothing non-finite is recorded
    assert len(h.loss) == h.diverged_at - 1


def test_progress_reports_fraction_text_and_history_and_can_stop_a_run(digits):
    seen = []

    def progress(fraction, text, history):
        seen.append((history.steps_done, fraction, text))
        return history.steps_done < 5

    h = fit(build_model(**SMALL, seed=0), digits, QUICK, progress=progress)
    assert h.status == "stopped at step 5" and [s[0] for s in seen] == [1, 2, 3, 4, 5] and len(h.loss) == 5
    assert seen[1][1] == pytest.approx(2 / h.total_steps) and seen[1][2].startswith(f"step 2/{h.total_steps}, loss")


def test_sub_progress_maps_a_part_of_a_job():
    calls = []
    part = sub_progress(lambda f, t, p: calls.append((f, t, p)), 0.5, 1.0, "second net: ")
    part(0.5, "step 3", "partial")
    assert calls == [(0.75, "second net: step 3", "partial")] and sub_progress(None, 0, 1) is None


def test_race_steps_each_trainer_in_turn_and_equals_training_alone(digits):
    trainers = {k: Trainer(build_model(**SMALL, residual=r, seed=1), digits, QUICK.with_(seed=1))
                for k, r in (("plain", False), ("residual", True))}
    race(trainers)
    alone = fit(build_model(**SMALL, residual=True, seed=1), digits, QUICK.with_(seed=1))
    assert trainers["residual"].history.loss == alone.loss and trainers["plain"].history.loss != alone.loss


def test_step_by_step_equals_fit(digits):
    t = Trainer(build_model(**SMALL, seed=1), digits, QUICK.with_(seed=1))
    while t.step():
        pass
    assert t.history.loss == fit(build_model(**SMALL, seed=1), digits, QUICK.with_(seed=1)).loss


def test_records_layer_gradient_norms(digits):
    net = build_model(**SMALL, seed=0)
    first = net.to(memory_format=torch.channels_last)
    idx = torch.randperm(len(digits.X_train), generator=generator(0))[:QUICK.batch_size]
    expected = layer_grad_norms(first, digits.X_train[idx].contiguous(memory_format=torch.channels_last),
                                digits.y_train[idx])                   # the first batch, before any step
    h = fit(net, digits, QUICK.with_(record_grads_every=4))
    assert h.grad_steps == list(range(0, h.total_steps, 4))
    assert len(h.grad_norms[0]) == len(h.layer_names) == 8 and h.layer_names[0] == "stem"
    assert h.grad_norms[0] == pytest.approx(list(expected), rel=1e-5)
    assert all(v > 0 for row in h.grad_norms for v in row)


class Parity:
    """A stream task: the label is the parity of the number of positive inputs."""

    def sample(self, batch_size, gen):
        X = torch.randn(batch_size, 8, generator=gen)
        return X, ((X > 0).sum(1) % 2)


def test_streams_train_with_adamw():
    net = build_model(arch="mlp", n_blocks=2, width=32, in_shape=(8,), n_classes=2, seed=0)
    h = fit(net, Parity(), TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.0, steps=60,
                                       batch_size=64, warmup_steps=3, grad_clip=1.0))
    assert h.steps_done == 60 and h.status == "finished" and h.evals
    assert sum(h.loss[-10:]) < sum(h.loss[:10])


@pytest.mark.parametrize("clip", [1e-3, None])
def test_gradient_clipping_bounds_the_update(clip):
    """Plain SGD (no momentum, no decay, lr 1): the update IS minus the gradient, so its norm is the clipped
    gradient's norm. A trainer that ignored ``grad_clip`` would move the weights by the full gradient."""
    net = build_model(arch="mlp", n_blocks=2, width=32, in_shape=(8,), n_classes=2, seed=0)
    before = [p.detach().clone() for p in net.parameters()]
    t = Trainer(net, Parity(), TrainConfig(lr=1.0, momentum=0.0, weight_decay=0.0, warmup_steps=0, steps=1,
                                           schedule="constant", batch_size=32, grad_clip=clip))
    t.step()
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(net.parameters(), before))).item()
    if clip is None:
        assert step > 100 * 1e-3                                  # the raw gradient is far larger than the clip
    else:
        assert step == pytest.approx(clip, rel=1e-3)


def test_evaluate_matches_a_plain_computation_and_restores_the_mode(digits):
    net = build_model(**SMALL, seed=0).train()
    loss, acc = evaluate(net, digits.X_test, digits.y_test, batch_size=100)        # several batches
    assert net.training
    net.eval()
    with torch.no_grad():
        logits = net(digits.X_test)
    assert loss == pytest.approx(F.cross_entropy(logits, digits.y_test).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(-1) == digits.y_test).float().mean().item(), abs=1e-6)


@pytest.mark.parametrize("fields,name", [
    (dict(lr=0), "lr must be"), (dict(optimizer="rmsprop"), "optimizer must be"),
    (dict(batch_size=1), "batch_size must be"), (dict(epochs=0), "epochs must be"),
    (dict(steps=0), "steps must be"), (dict(schedule="step"), "schedule must be"),
    (dict(momentum=1.0), "momentum must be"), (dict(grad_clip=0.0), "grad_clip must be"),
    (dict(epochs=2.5), "epochs must be an integer"), (dict(steps=10.5), "steps must be an integer"),
    (dict(batch_size=100.0), "batch_size must be an integer"), (dict(warmup_steps=-1), "warmup_steps must be"),
    (dict(eval_every=1.5), "eval_every must be an integer"), (dict(lr=float("nan")), "lr must be"),
])
def test_invalid_training_settings_are_named(fields, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**fields)


def test_stochastic_depth_drops_some_branches_each_step_and_still_trains(digits):
    """With momentum and decay off, a branch dropped in a step gets a zero gradient and does not move; with
    drop_prob 0.5 over 6 blocks some blocks move and some do not, and the run stays reproducible."""
    cfg = dict(arch="cnn", depth=14, width=4, drop_prob=0.5)
    net = build_model(**cfg, seed=0)
    before = [b.branch.inner.weights[0].weight.detach().clone() for b in net.blocks]
    t = Trainer(net, digits, TrainConfig(momentum=0.0, weight_decay=0.0, warmup_steps=0, steps=1, lr=0.1,
                                         batch_size=64))
    t.step()
    moved = [not torch.equal(b.branch.inner.weights[0].weight, w) for b, w in zip(net.blocks, before)]
    assert 0 < sum(moved) < len(moved), moved
    h = fit(build_model(**cfg, seed=0), digits, QUICK)
    assert h.status == "finished" and all(math.isfinite(v) for v in h.loss)
    assert fit(build_model(**cfg, seed=0), digits, QUICK).loss == h.loss                      # seeded
    assert fit(build_model(**dict(cfg, drop_prob=0.0), seed=0), digits, QUICK).loss != h.loss


def test_evaluations_along_the_way_do_not_change_the_training():
    """eval_every only adds measurements: same losses and trained weights with or without them (the labs skip them)."""
    from skipnet.models import ModelConfig
    data = load_digits(flatten=True)
    cfg = ModelConfig(arch="mlp", n_blocks=4, width=32, in_shape=(64,))

    def run(every):
        net = cfg.build(0)
        h = Trainer(net, data, TrainConfig(steps=20, batch_size=64, eval_every=every, seed=0)).run()
        return h, [p.detach().clone() for p in net.parameters()] + [b.clone() for b in net.buffers()]

    (h0, w0), (h5, w5) = run(0), run(5)
    assert h0.loss == h5.loss and len(h5.evals) == 4 and len(h0.evals) == 1
    assert h0.evals[-1] == h5.evals[-1]
    assert all(torch.equal(a, b) for a, b in zip(w0, w5))
