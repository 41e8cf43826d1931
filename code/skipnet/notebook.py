"""Helpers for the chapters themselves.

:func:`glue` hands a computed value to the page text (``{glue:text}`name```). It is the only glue
the chapters use: with myst-nb present (the book build) it records the value for Sphinx; in a reader's
kernel without myst-nb (Binder installs no Sphinx) it shows the value only if asked to, so every
chapter runs there unchanged.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["glue", "plain_value"]


def plain_value(value: Any) -> Any:
    """NumPy and torch scalars as Python numbers: their repr (``np.float64(0.95)``) would not format in the text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if type(value).__module__ == "torch" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def glue(name: str, value: Any, display: bool = False) -> None:
    """Record ``value`` under ``name`` for the page text; ``display=True`` also shows it as a cell output."""
    value = plain_value(value)
    try:
        from myst_nb import glue as _glue
    except ImportError:                       # a reader's kernel: nothing to bind the value to
        if display:
            from IPython.display import display as _display
            _display(value)
        return
    _glue(name, value, display=display)
