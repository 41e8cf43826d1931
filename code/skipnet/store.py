"""Small precomputed results, stored with the command and config that made them.

Multi-seed sweeps are too slow to run while a chapter executes; a script computes them once and
writes a JSON file under ``book/data/`` that holds the command, the configuration, the package
version, the time taken and the data. Chapters load it with :func:`load_result`, and a test
re-runs a slice of the sweep to check that the stored numbers still come out.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

import skipnet

__all__ = ["save_result", "load_result"]


def save_result(path: str | Path, data: Any, config: dict, command: str, seconds: float | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "config": config,
        "made_with": {"skipnet": skipnet.__version__, "torch": torch.__version__, "python": sys.version.split()[0],
                      "machine": platform.machine(), "threads": torch.get_num_threads()},
        "created": time.strftime("%Y-%m-%d"),
        "seconds": seconds,
        "data": data,
    }
    path.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    return path


def load_result(path: str | Path) -> dict:
    """The stored record: keys ``command``, ``config``, ``made_with``, ``created``, ``seconds``, ``data``."""
    return json.loads(Path(path).read_text())
