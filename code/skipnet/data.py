"""Data for the book: scikit-learn's bundled handwritten digits (no download), and synthetic sets.

The digits are 1,797 grey-level 8x8 images of the ten digits. The split is fixed (80 % train,
20 % test, stratified by a seeded permutation), and pixels are standardized with the *training*
mean and standard deviation, so every chapter sees exactly the same tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = ["Dataset", "load_digits", "input_sweep"]


@dataclass(frozen=True)
class Dataset:
    """In-memory classification data. ``X_*``: (N, C, H, W) images or (N, D) vectors; ``y_*``: (N,) labels."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])

    def to(self, device: torch.device | str) -> "Dataset":
        return Dataset(*(t.to(device) for t in (self.X_train, self.y_train, self.X_test, self.y_test)),
                       n_classes=self.n_classes)

    def flattened(self) -> "Dataset":
        """The same data with every example flattened to a vector (for MLPs)."""
        return Dataset(self.X_train.flatten(1), self.y_train, self.X_test.flatten(1), self.y_test, self.n_classes)


@lru_cache(maxsize=4)
def _digits(test_fraction: float, split_seed: int) -> Dataset:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    X = bunch.images.astype(np.float32)            # (1797, 8, 8), values 0..16
    y = bunch.target.astype(np.int64)
    rng = np.random.RandomState(split_seed)
    test_idx, train_idx = [], []
    for c in range(10):                            # stratified: the same share of each digit in test
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_fraction * len(idx)))
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    mean, std = X[train_idx].mean(), X[train_idx].std()
    X = (X - mean) / std
    X_t = torch.from_numpy(X).unsqueeze(1)         # (N, 1, 8, 8)
    y_t = torch.from_numpy(y)
    return Dataset(X_t[train_idx].contiguous(), y_t[train_idx].contiguous(),
                   X_t[test_idx].contiguous(), y_t[test_idx].contiguous(), n_classes=10)


def load_digits(flatten: bool = False, test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """The digits as tensors on the CPU: 1,438 training and 359 test images (the default split).

    ``flatten=True`` gives (N, 64) vectors for the MLPs. The split and standardization are deterministic.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ds = _digits(float(test_fraction), int(split_seed))
    return ds.flattened() if flatten else ds


def input_sweep(n: int = 256, low: float = -2.0, high: float = 2.0) -> torch.Tensor:
    """``n`` evenly spaced scalar inputs on [low, high] as an (n, 1) tensor (the shattered-gradients sweep)."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if not low < high:
        raise ValueError(f"low must be < high, got low={low}, high={high}")
    return torch.linspace(low, high, n).unsqueeze(1)
