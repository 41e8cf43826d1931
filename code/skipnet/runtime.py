"""Where the book's code runs: device, CPU threads and seeding, each chosen in ONE place.

Every experiment in the book calls :func:`device` to place tensors and :func:`seed_everything`
(or :func:`generator`) to draw random numbers, so a chapter never sets these itself.

Threads: on a small CPU (a laptop, a Binder container, the 2-core CI machine) one thread is the
fastest choice for these tiny networks, and two threads became up to 38x *slower* whenever another
process was busy. Importing :mod:`skipnet` therefore sets torch to one intra-op thread unless the
environment variable ``SKIPNET_THREADS`` says otherwise.
"""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from skipnet.checks import check_int, check_seed

__all__ = ["device", "configure_threads", "seed_everything", "generator", "eval_mode", "train_mode"]


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count (default: ``$SKIPNET_THREADS`` or 1) and return it."""
    if n is None:
        n = int(os.environ.get("SKIPNET_THREADS", "1"))
    torch.set_num_threads(check_int("threads", n, 1))
    return n


def device() -> torch.device:
    """The device every experiment uses: ``$SKIPNET_DEVICE`` if set, else CUDA when present, else CPU."""
    name = os.environ.get("SKIPNET_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer between 0 and 2^32 - 1."""
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def generator(seed: int, on: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded with ``seed`` (explicit randomness for data order and sampling).

    Experiments offset a seed by a constant (``generator(10_000 + seed)``) to draw data independent of the
    weights, so any non-negative integer is accepted here; the user-facing rule is :func:`check_seed`.
    """
    g = torch.Generator(device=on)
    g.manual_seed(check_int("seed", seed, 0, 2**63 - 1))
    return g


@contextmanager
def _mode(model: torch.nn.Module, training: bool) -> Iterator[torch.nn.Module]:
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def eval_mode(model: torch.nn.Module):
    """``with eval_mode(net): ...``: the model in eval mode (BatchNorm's running statistics, no dropout),
    put back in the mode it was in afterwards, even on an error."""
    return _mode(model, False)


def train_mode(model: torch.nn.Module, training: bool = True):
    """``with train_mode(net): ...``: as :func:`eval_mode`, for train mode (or ``training`` given)."""
    return _mode(model, training)
