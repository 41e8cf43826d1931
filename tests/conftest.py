"""Shared fixtures. Tests run on the CPU with one thread (set on `import skipnet`) so that the same
seed gives bit-identical numbers."""
import os

os.environ.setdefault("SKIPNET_DEVICE", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from skipnet.data import load_digits  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def digits_flat():
    return load_digits(flatten=True)
