"""Several networks in one vectorized pass equal the same networks trained one by one.

In float64 the two agree to rounding (1e-9), which checks the algorithm: data order, schedule,
optimizer, BatchNorm statistics, clipping, evaluation, divergence. In float32 they agree within
the tolerance that summation order allows over a few steps.
"""
import copy
import math

import pytest
import torch

from skipnet.data import Dataset
from skipnet.models import build_model
from skipnet.train import TrainConfig, fit
from vectorized_loader import VectorizedTrainer, fit_many

CNN = dict(arch="cnn", depth=8, width=4)
MLP = dict(arch="mlp", n_blocks=4, width=16, in_shape=(64,))


def double(ds: Dataset, n_train: int | None = None, n_test: int | None = None) -> Dataset:
    """The data in float64 (optionally only the first images, to keep the tests fast)."""
    return Dataset(ds.X_train[:n_train].double(), ds.y_train[:n_train], ds.X_test[:n_test].double(),
                   ds.y_test[:n_test], ds.n_classes)


def both(fields, data, cfg, seeds, dtype=torch.float64):
    nets = [build_model(**fields, seed=s).to(dtype) for s in seeds]
    vec = VectorizedTrainer([copy.deepcopy(n) for n in nets], data, cfg, seeds=seeds)
    hv = vec.run()
    seq_nets = [copy.deepcopy(n) for n in nets]
    hs = [fit(n, data, cfg.with_(seed=s)) for n, s in zip(seq_nets, seeds)]
    return hv, hs, vec.models, seq_nets


def assert_close_histories(hv, hs, tol):
    for a, b in zip(hv, hs):
        assert a.status == b.status and len(a.loss) == len(b.loss) and a.diverged_at == b.diverged_at
        assert a.loss == pytest.approx(b.loss, rel=tol, abs=tol)
        assert a.acc == pytest.approx(b.acc, abs=tol)
        assert [e["step"] for e in a.evals] == [e["step"] for e in b.evals]
        for ea, eb in zip(a.evals, b.evals):
            for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
                assert ea[key] == pytest.approx(eb[key], rel=tol, abs=tol)
        assert a.grad_steps == b.grad_steps
        for ra, rb in zip(a.grad_norms, b.grad_norms):
            assert ra == pytest.approx(rb, rel=tol)


def assert_close_weights(models_a, models_b, tol):
    for ma, mb in zip(models_a, models_b):
        sa, sb = ma.state_dict(), mb.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.allclose(sa[k].double(), sb[k].double(), rtol=tol, atol=tol), k


@pytest.mark.parametrize("fields", [CNN, dict(CNN, residual=False), MLP, dict(MLP, norm="layer")],
                         ids=["cnn-residual", "cnn-plain", "mlp-batchnorm", "mlp-layernorm"])
def test_float64_equals_sequential_training(fields, digits, digits_flat):
    data = double(digits_flat if fields["arch"] == "mlp" else digits, n_train=256, n_test=128)
    cfg = TrainConfig(batch_size=128, steps=5, eval_every=2, record_grads_every=2)      # epochs of 2 steps
    hv, hs, mv, ms = both(fields, data, cfg, seeds=[0, 1, 2])
    assert_close_histories(hv, hs, 1e-9)
    assert_close_weights(mv, ms, 1e-9)                   # BatchNorm running statistics included
    assert hv[0].loss != hv[1].loss                      # each network saw its own seed


def test_float32_agrees_within_rounding(digits):
    cfg = TrainConfig(batch_size=128, steps=4)
    hv, hs, mv, ms = both(CNN, digits, cfg, seeds=[3, 4], dtype=torch.float32)
    assert_close_histories(hv, hs, 1e-4)
    assert_close_weights(mv, ms, 1e-3)


class Parity:
    """A stream task: the label is the parity of the number of positive inputs."""

    def sample(self, batch_size, gen):
        X = torch.randn(batch_size, 8, generator=gen, dtype=torch.float64)
        return X, (X > 0).sum(1) % 2


def test_streams_adamw_and_clipping_equal_sequential():
    fields = dict(arch="mlp", n_blocks=2, width=16, in_shape=(8,), n_classes=2)
    cfg = TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.01, steps=10, batch_size=32, warmup_steps=3,
                      grad_clip=0.05)                    # small enough that clipping acts
    hv, hs, mv, ms = both(fields, Parity(), cfg, seeds=[0, 5])
    assert_close_histories(hv, hs, 1e-9)
    assert_close_weights(mv, ms, 1e-9)


def test_a_diverging_network_stops_alone_and_keeps_its_last_weights(digits_flat):
    fields = dict(arch="mlp", n_blocks=6, width=32, in_shape=(64,), norm="none")
    nets = [build_model(**fields, seed=s).double() for s in (0, 1, 2)]
    with torch.no_grad():                                # network 1 starts far too large: it blows up
        for p in nets[1].parameters():
            p.mul_(4.0)
    data, cfg = double(digits_flat), TrainConfig(lr=0.02, batch_size=128, steps=8, warmup_steps=0)
    vec = VectorizedTrainer([copy.deepcopy(n) for n in nets], data, cfg, seeds=[0, 1, 2])
    hv = vec.run()
    seq = [copy.deepcopy(n) for n in nets]
    hs = [fit(n, data, cfg.with_(seed=s)) for n, s in zip(seq, (0, 1, 2))]
    assert hs[1].diverged and not hs[0].diverged and not hs[2].diverged      # the premise
    assert hv[1].status == hs[1].status and hv[0].status == hv[2].status == "finished"
    assert all(math.isfinite(v) for h in hv for v in h.loss)
    assert_close_histories(hv, hs, 1e-9)
    assert_close_weights(vec.models, seq, 1e-9)


def test_progress_stops_every_network(digits):
    seen = []

    def progress(fraction, text, histories):
        seen.append(histories[0].steps_done)
        return len(seen) < 3

    nets = [build_model(**CNN, seed=s) for s in (0, 1)]
    hv = VectorizedTrainer(nets, digits, TrainConfig(steps=10), progress=progress).run()
    assert seen == [1, 2, 3] and [h.status for h in hv] == ["stopped at step 3"] * 2


def test_fit_many_defaults_to_one_seed_for_all(digits):
    nets = [build_model(**CNN, seed=0) for _ in range(2)]
    h = fit_many(nets, digits, TrainConfig(batch_size=64, steps=3))
    assert h[0].loss == h[1].loss                        # same weights, same seed: same data order


@pytest.mark.parametrize("nets,match", [
    (lambda: [build_model(**CNN, seed=0), build_model(**CNN, residual=False, seed=0)], "one architecture"),
    (lambda: [build_model(**CNN, drop_prob=0.2, seed=0)] * 2, "random forward"),
    (lambda: [], "at least one"),
])
def test_invalid_stacks_are_refused(nets, match, digits):
    with pytest.raises(ValueError, match=match):
        VectorizedTrainer(nets(), digits, TrainConfig(steps=2))


def test_seed_count_must_match(digits):
    with pytest.raises(ValueError, match="one seed per model"):
        VectorizedTrainer([build_model(**CNN, seed=0)] * 2, digits, TrainConfig(steps=2), seeds=[0])
