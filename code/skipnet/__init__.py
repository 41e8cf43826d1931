"""skipnet: the tested code behind the book *Why skip connections work*.

The modules stand in layers, each importing only from its own subpackage or from the layers before it; the
README's Layout section gives the order and what each module is for (the ground floor: ``checks``, ``data``,
``shortcuts``; the top: ``plotting``, ``tables``, ``widgets``).

Importing the package sets torch to one CPU thread (see :mod:`skipnet.runtime`).
"""
from skipnet.runtime import configure_threads as _configure_threads

__version__ = "0.1.0"

_configure_threads()
