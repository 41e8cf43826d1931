"""The base of every configuration object in the package.

Every config (:class:`~skipnet.models.ModelConfig`, :class:`~skipnet.train.TrainConfig`,
:class:`~skipnet.transformer.TransformerConfig`, ...) is a frozen dataclass deriving from :class:`Config`:

* ``cfg.with_(depth=56)``: a copy with some fields changed, validated again;
* ``cfg.as_dict()``: plain data (stored with every precomputed sweep);
* ``cfg.build(seed=0)``: the network it describes, its initialization seeded (model configs only);
* ``cfg.label``: the short name the book prints (``"residual-56"``, ``"pre-LN, 6 blocks"``).

An invalid value raises ``ValueError`` naming the field and the accepted range, checked by the
functions of :mod:`skipnet.checks`.

Vocabulary, the same in every config: ``n_blocks`` counts blocks (residual or plain), ``depth`` counts
weight layers on the main path (the "56" of ResNet-56); ``norm`` names the kind of normalization and
``placement`` where it sits; ``residual`` switches the skip; ``seq_len`` is a sequence length.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TypeVar

from skipnet.runtime import seed_everything

__all__ = ["Config"]

C = TypeVar("C", bound="Config")


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
            seed_everything(seed)
        return self.network()

    @property
    def label(self) -> str:
        return type(self).__name__
