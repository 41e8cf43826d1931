import numpy as np
import pytest
import torch

import random

from skipnet import runtime
from skipnet.data import load_digits, input_sweep
from skipnet.models import build_model
from skipnet.train import TrainConfig


def test_one_thread_by_default():
    assert torch.get_num_threads() == 1


def test_device_is_chosen_in_one_place(monkeypatch):
    monkeypatch.setenv("SKIPNET_DEVICE", "cpu")
    assert runtime.device() == torch.device("cpu")
    monkeypatch.delenv("SKIPNET_DEVICE")
    assert runtime.device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def _draws():
    return torch.rand(5), np.random.rand(3), [random.random() for _ in range(3)]


def test_seed_everything_repeats_draws_and_different_seeds_differ():
    """torch, NumPy and Python's random all follow the seed: the same seed repeats every draw, another seed
    changes every one (a seed_everything that always seeded 0, or forgot a generator, fails)."""
    runtime.seed_everything(3)
    a = _draws()
    runtime.seed_everything(3)
    b = _draws()
    runtime.seed_everything(4)
    c = _draws()
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not torch.equal(a[0], c[0]) and not np.array_equal(a[1], c[1]) and a[2] != c[2]
    nets = [build_model(arch="mlp", n_blocks=2, width=4, in_shape=(3,), seed=s) for s in (0, 0, 1)]
    w = [n.stem.weight for n in nets]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


@pytest.mark.parametrize("bad", [-1, 2**32, 10**20, 1.5, True, "3"])
def test_every_seed_follows_one_rule(bad):
    """One rule everywhere: an integer between 0 and 2^32 - 1, and a message that names the seed."""
    for call in (lambda: runtime.seed_everything(bad), lambda: build_model(arch="cnn", depth=8, seed=bad),
                 lambda: TrainConfig(seed=bad)):
        with pytest.raises(ValueError, match="seed must be an integer between 0 and 4,294,967,295"):
            call()


def test_digits_split_is_fixed_disjoint_stratified_and_standardized(digits):
    assert digits.X_train.shape[1:] == (1, 8, 8) and digits.n_classes == 10
    assert len(digits.X_train) + len(digits.X_test) == 1797
    assert 350 <= len(digits.X_test) <= 365
    again = load_digits()
    assert torch.equal(again.X_train, digits.X_train) and torch.equal(again.y_test, digits.y_test)
    # no test image appears in the training set
    train_rows = {tuple(x.flatten().tolist()) for x in digits.X_train}
    dup = sum(tuple(x.flatten().tolist()) in train_rows for x in digits.X_test)
    assert dup <= 2        # the raw data has a couple of identical images; the split is by index
    # every digit has about a fifth of its images in the test set
    for c in range(10):
        share = (digits.y_test == c).sum().item() / ((digits.y_test == c).sum() + (digits.y_train == c).sum()).item()
        assert abs(share - 0.2) < 0.01
    assert abs(digits.X_train.mean().item()) < 1e-5 and abs(digits.X_train.std().item() - 1) < 1e-3


def test_flattened_digits(digits_flat):
    assert digits_flat.X_train.shape[1:] == (64,)


def test_bad_data_arguments_are_named():
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)
    with pytest.raises(ValueError, match="n must be"):
        input_sweep(1)
    x = input_sweep(256)
    assert x.shape == (256, 1) and x[0, 0] == -2 and x[-1, 0] == 2
