"""The base of every configuration object in the package, and its range checks.

Every config (:class:`~skipnet.models.ModelConfig`, :class:`~skipnet.train.TrainConfig`,
:class:`~skipnet.transformer.TransformerConfig`, ...) is a frozen dataclass deriving from :class:`Config`:

* ``cfg.with_(depth=56)``: a copy with some fields changed, validated again;
* ``cfg.as_dict()``: plain data (stored with every precomputed sweep);
* ``cfg.build(seed=0)``: the network it describes, its initialization seeded (model configs only);
* ``cfg.label``: the short name the book prints (``"residual-56"``, ``"pre-LN, 6 blocks"``).

An invalid value raises ``ValueError`` naming the field and the accepted range, checked by the
functions below: :func:`check_int`, :func:`check_float`, :func:`check_choice`, and
:func:`check_seed`, the one rule for seeds everywhere (labs, experiments, trainers).

Vocabulary, the same in every config: ``n_blocks`` counts blocks (residual or plain), ``depth`` counts
weight layers on the main path (the "56" of ResNet-56); ``norm`` names the kind of normalization and
``placement`` where it sits; ``residual`` switches the skip; ``seq_len`` is a sequence length.
"""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

__all__ = ["Config", "check_int", "check_float", "check_choice", "check_seed", "MAX_SEED"]

MAX_SEED = 2**32 - 1          # NumPy's legacy seeding accepts at most 32 bits; one rule for every seed

C = TypeVar("C", bound="Config")


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


@dataclass(frozen=True)
class Config:
    """Base of the frozen configs: ``with_``, ``as_dict``, ``build``, ``label`` (see the module docstring)."""

    def with_(self: C, **changes) -> C:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)

    def network(self):
        """The module this config describes (model configs override it)."""
        raise TypeError(f"{type(self).__name__} does not describe a network")

    def build(self, seed: int | None = None):
        """The network, with its initialization seeded when ``seed`` is given (the one builder of the package)."""
        if seed is not None:
            from skipnet.runtime import seed_everything
            seed_everything(seed)
        return self.network()

    @property
    def label(self) -> str:
        return type(self).__name__
