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

import numpy as np
import torch

__all__ = ["device", "configure_threads", "seed_everything", "generator"]


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count (default: ``$SKIPNET_THREADS`` or 1) and return it."""
    if n is None:
        n = int(os.environ.get("SKIPNET_THREADS", "1"))
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n


def device() -> torch.device:
    """The device every experiment uses: ``$SKIPNET_DEVICE`` if set, else CUDA when present, else CPU."""
    name = os.environ.get("SKIPNET_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


def generator(seed: int, on: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded with ``seed`` (explicit randomness for data order and sampling)."""
    g = torch.Generator(device=on)
    g.manual_seed(int(seed))
    return g
