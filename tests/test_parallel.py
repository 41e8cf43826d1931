"""Trainings side by side in forked workers give the numbers of the same trainings in this process."""
import pytest
import torch

from skipnet import parallel
from skipnet import race as racing
from skipnet.data import load_digits
from skipnet.models import ModelConfig
from skipnet.race import race_runs
from skipnet.train import TrainConfig

MODELS = {"plain": ModelConfig(arch="mlp", n_blocks=6, width=32, in_shape=(64,), residual=False),
          "residual": ModelConfig(arch="mlp", n_blocks=6, width=32, in_shape=(64,))}
TRAIN = TrainConfig(steps=30, batch_size=64, eval_every=10)


@pytest.fixture(scope="module")
def data():
    return load_digits(flatten=True)


def _fingerprint(runs):
    return {k: (r.history.loss, r.history.evals, [p.detach().clone() for p in r.net.parameters()],
                [b.clone() for b in r.net.buffers()]) for k, r in runs.items()}


def _same(a, b):
    for k in a:
        assert a[k][0] == b[k][0] and a[k][1] == b[k][1], k
        for x, y in zip(a[k][2] + a[k][3], b[k][2] + b[k][3]):
            assert torch.equal(x, y), k


def test_workers_give_the_numbers_of_one_process(data, monkeypatch):
    monkeypatch.setenv("SKIPNET_WORKERS", "1")
    here = _fingerprint(race_runs(MODELS, data, TRAIN, seed=3))
    monkeypatch.setenv("SKIPNET_WORKERS", "2")
    assert parallel.workers(2) == 2
    calls = []
    apart = race_runs(MODELS, data, TRAIN, seed=3, progress=lambda f, t, p: calls.append((f, set(p))))
    _same(here, _fingerprint(apart))
    assert calls and calls[-1][0] == 1.0 and calls[-1][1] == set(MODELS)     # progress came back, to the end
    assert all(0 <= f <= 1 for f, _ in calls)


@pytest.mark.parametrize("n_workers", ["1", "2"])
def test_a_stop_stops_every_training(data, monkeypatch, n_workers):
    monkeypatch.setenv("SKIPNET_WORKERS", n_workers)
    long = TrainConfig(steps=3000, batch_size=64)
    seen = []

    def progress(fraction, text, partial):
        seen.append(fraction)
        return fraction < 0.01

    runs = race_runs(MODELS, data, long, seed=0, progress=progress)
    for r in runs.values():
        assert r.history.status.startswith("stopped at step"), r.history.status
        assert r.history.steps_done < long.steps


def test_an_error_in_a_worker_is_raised_with_its_traceback(monkeypatch):
    monkeypatch.setenv("SKIPNET_WORKERS", "2")

    def bad(report):
        raise ValueError("lr must be positive")

    tasks = {"a": lambda report: 1, "b": bad}
    if parallel.workers(2) == 2:
        with pytest.raises(RuntimeError, match="lr must be positive"):
            parallel.side_by_side(tasks)
    monkeypatch.setenv("SKIPNET_WORKERS", "1")
    with pytest.raises(ValueError, match="lr must be positive"):
        parallel.side_by_side(tasks)


def test_one_worker_where_forking_is_not_wise(monkeypatch):
    monkeypatch.setenv("SKIPNET_WORKERS", "1")
    assert parallel.workers(5) == 1
    monkeypatch.delenv("SKIPNET_WORKERS")
    assert parallel.workers(1) == 1
    monkeypatch.setattr(parallel, "_IN_WORKER", True)
    assert parallel.workers(5) == 1


def test_stochastic_models_race_in_this_process(data, monkeypatch):
    monkeypatch.setenv("SKIPNET_WORKERS", "2")

    def refuse(*args, **kwargs):
        raise AssertionError("a model that draws from the global generator must not run in a worker")

    monkeypatch.setattr(racing, "side_by_side", refuse)
    sd = {"a": MODELS["residual"].with_(drop_prob=0.5), "b": MODELS["residual"]}
    runs = race_runs(sd, data, TrainConfig(steps=5, batch_size=64), seed=0)
    assert all(r.history.steps_done == 5 for r in runs.values())


def test_a_race_continues_where_the_workers_ended(data, monkeypatch):
    """Two races of 15 steps in workers, then 15 more, match one process doing the same (momentum, order kept)."""
    from skipnet.race import race
    from skipnet.train import Trainer

    def two_legs(n_workers):
        monkeypatch.setenv("SKIPNET_WORKERS", n_workers)
        trainers = {k: Trainer(m.build(0), data, TRAIN.with_(seed=0)) for k, m in MODELS.items()}
        for t in trainers.values():
            t.total = 15
        race(trainers)
        for t in trainers.values():
            t.total = 30
        race(trainers)
        return {k: (t.history.loss, [p.detach().clone() for p in t.model.parameters()]) for k, t in trainers.items()}

    a, b = two_legs("1"), two_legs("2")
    for k in a:
        assert a[k][0] == b[k][0]
        assert all(torch.equal(x, y) for x, y in zip(a[k][1], b[k][1]))


def test_in_worker_trains_the_same_net_and_passes_progress_on(data, monkeypatch):
    """One training in a worker (a lab drawing meanwhile): the same history and weights, progress throttled."""
    from skipnet.train import train_run

    def task(progress):
        return train_run(MODELS["residual"], data, TRAIN, seed=1, progress=progress)

    monkeypatch.setenv("SKIPNET_WORKERS", "1")
    here = task(None)
    monkeypatch.setenv("SKIPNET_WORKERS", "2")
    seen = []
    apart = parallel.in_worker(task, lambda f, t, h: seen.append((f, h.steps_done)), every_s=0.0)
    assert apart.history.loss == here.history.loss
    assert all(torch.equal(a, b) for a, b in zip(apart.net.parameters(), here.net.parameters()))
    assert seen and seen[-1] == (1.0, TRAIN.steps) and [s for _, s in seen] == sorted(s for _, s in seen)
    stopped = parallel.in_worker(lambda p: train_run(MODELS["residual"], data, TrainConfig(steps=5000), seed=1,
                                                     progress=p), lambda f, t, h: f < 0.001, every_s=0.0)
    assert stopped.history.status.startswith("stopped at step")
