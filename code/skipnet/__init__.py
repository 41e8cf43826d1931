"""skipnet: the tested code behind the book *Why skip connections work*.

Modules, each depending only on the ones before it::

    runtime -> data -> models -> train -> probes -> experiments -> plotting -> widgets

Importing the package sets torch to one CPU thread (see :mod:`skipnet.runtime`).
"""
from skipnet.runtime import configure_threads as _configure_threads

__version__ = "0.1.0"

_configure_threads()
