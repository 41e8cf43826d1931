"""Range checks for every value a reader or a config can set: each bad value raises ``ValueError`` naming the
field and the accepted range.

:func:`check_int`, :func:`check_float`, :func:`check_choice`, and :func:`check_seed`, the one rule for seeds
everywhere (labs, experiments, trainers). The ground floor of the package: it imports nothing of it.
"""
from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_int", "check_float", "check_choice", "check_seed", "MAX_SEED"]

MAX_SEED = 2**32 - 1          # NumPy's legacy seeding accepts at most 32 bits; one rule for every seed


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int if it is an integer in [low, high] (``high=None``: no upper bound), else ``ValueError``.

    Floats are refused even when whole (``epochs=2.0``): a config field that counts things takes integers.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and low <= value and (high is None or value <= high):
        return int(value)
    accepted = f"an integer >= {low:,}" if high is None else f"an integer between {low:,} and {high:,}"
    raise ValueError(f"{name} must be {accepted}, got {value!r}")


def check_float(name: str, value: Any, low: float, high: float, low_open: bool = False,
                high_open: bool = False) -> float:
    """``value`` as a float if it is a finite real number in the interval, else ``ValueError``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value
    if ok and (low < value if low_open else low <= value) and (value < high if high_open else value <= high):
        return float(value)
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def check_choice(name: str, value: Any, accepted: tuple) -> Any:
    if value not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, accepted))}; got {value!r}")
    return value


def check_seed(seed: Any, name: str = "seed") -> int:
    """The rule for every seed in the book: an integer between 0 and 2^32 - 1."""
    return check_int(name, seed, 0, MAX_SEED)
