"""The training loop: reproducibility, schedule, divergence as a result, stopping, streams."""
import math

import pytest
import torch

from skipnet.models import build_model
from skipnet.train import TrainConfig, Trainer, fit, evaluate

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


def test_divergence_is_a_result_not_a_crash(digits_flat):
    net = build_model(arch="mlp", depth=30, width=64, in_shape=(64,), norm="none", seed=0)
    h = fit(net, digits_flat, TrainConfig(lr=5.0, warmup_steps=0, epochs=3, momentum=0.9))
    assert h.diverged and h.status == f"diverged at step {h.diverged_at}"
    assert 1 <= h.diverged_at <= h.total_steps
    assert all(math.isfinite(v) for v in h.loss)              # nothing non-finite is recorded
    assert len(h.loss) == h.diverged_at - 1


def test_callback_can_stop_a_run(digits):
    seen = []

    def cb(trainer):
        seen.append(trainer.history.steps_done)
        return trainer.history.steps_done < 5

    h = fit(build_model(**SMALL, seed=0), digits, QUICK, callback=cb)
    assert h.status == "stopped at step 5" and seen == [1, 2, 3, 4, 5] and len(h.loss) == 5


def test_step_by_step_equals_fit(digits):
    t = Trainer(build_model(**SMALL, seed=1), digits, QUICK.with_(seed=1))
    while t.step():
        pass
    assert t.history.loss == fit(build_model(**SMALL, seed=1), digits, QUICK.with_(seed=1)).loss


def test_records_layer_gradient_norms(digits):
    h = fit(build_model(**SMALL, seed=0), digits, QUICK.with_(record_grads_every=4))
    assert h.grad_steps == list(range(0, h.total_steps, 4))
    assert len(h.grad_norms[0]) == len(h.layer_names) == 8 and h.layer_names[0] == "stem"
    assert all(v > 0 for row in h.grad_norms for v in row)


class Parity:
    """A stream task: the label is the parity of the number of positive inputs."""

    def sample(self, batch_size, gen):
        X = torch.randn(batch_size, 8, generator=gen)
        return X, ((X > 0).sum(1) % 2)


def test_streams_train_with_adamw_and_clipping():
    net = build_model(arch="mlp", depth=2, width=32, in_shape=(8,), n_classes=2, seed=0)
    h = fit(net, Parity(), TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.0, steps=30,
                                       batch_size=32, warmup_steps=3, grad_clip=1.0))
    assert h.steps_done == 30 and h.status == "finished" and h.evals


def test_evaluate_restores_the_mode(digits):
    net = build_model(**SMALL, seed=0).train()
    loss, acc = evaluate(net, digits.X_test, digits.y_test)
    assert net.training and loss > 0 and 0 <= acc <= 1


@pytest.mark.parametrize("fields,name", [
    (dict(lr=0), "lr must be"), (dict(optimizer="rmsprop"), "optimizer must be"),
    (dict(batch_size=1), "batch_size must be"), (dict(epochs=0), "epochs must be"),
    (dict(steps=0), "steps must be"), (dict(schedule="step"), "schedule must be"),
    (dict(momentum=1.0), "momentum must be"), (dict(grad_clip=0.0), "grad_clip must be"),
])
def test_invalid_training_settings_are_named(fields, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**fields)


def test_stochastic_depth_trains_when_branches_get_no_gradient(digits):
    # a skipped branch has no gradient on that step; the fused SGD step must still run
    net = build_model(arch="cnn", depth=14, width=4, drop_prob=0.5, seed=0)
    h = fit(net, digits, QUICK)
    assert h.status == "finished" and all(math.isfinite(v) for v in h.loss)
