"""Helpers for the chapters themselves.

:func:`glue` hands a computed value to the page text (``{glue:text}`name```) when the book is
built with myst-nb; in a live kernel without myst-nb (Binder installs no Sphinx) it quietly does
nothing for hidden values and displays the visible ones.
"""
from __future__ import annotations

from typing import Any

__all__ = ["glue"]


def glue(name: str, variable: Any, display: bool = True) -> None:
    try:
        from myst_nb import glue as _glue
    except ImportError:                       # a reader's kernel: nothing to bind the value to
        if display:
            from IPython.display import display as _display
            _display(variable)
        return
    _glue(name, variable, display=display)
