"""skipnet: the tested code behind the book *Why skip connections work*.

Modules, each depending only on the ones before it::

    config, runtime -> data -> models (transformer, recurrent) -> history, train -> probes -> experiments
        -> plotting -> widgets

``config`` holds the frozen-config base and its range checks; ``notebook`` the chapters' glue; ``store`` the
stored sweeps.

Importing the package sets torch to one CPU thread (see :mod:`skipnet.runtime`).
"""
from skipnet.runtime import configure_threads as _configure_threads

__version__ = "0.1.0"

_configure_threads()
