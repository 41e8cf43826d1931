"""Small precomputed results, stored with the command and config that made them.

Multi-seed sweeps are too slow to run while a chapter executes; a script computes them once and
writes a JSON file under ``book/data/`` that holds the command, the configuration, the code and machine
that made it (``made_with``), the time taken and the data. Chapters load it with :func:`load_result`
(or :func:`load_sweep` by name), and a test re-runs a slice of the sweep to check that the stored numbers
still come out.

A long sweep is made resumable seed by seed by :mod:`skipnet.sweep`. A confirmation on fresh seeds writes
``<name>.<tag>.json`` beside the exploratory ``<name>.json`` (:func:`tagged`), in the same format, so that the
same analysis reads both (:func:`load_sweep`).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import torch

import skipnet
from skipnet.checks import check_seed

__all__ = ["DATA", "save_result", "load_result", "load_sweep", "tagged", "parse_seeds", "write_json", "made_with",
           "interleave", "format_seeds", "seeds_argument"]

#: The folder of the stored sweeps (``book/data`` of the repository that holds this package).
DATA = Path(__file__).resolve().parents[2] / "book" / "data"
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_RESERVED_TAGS = ("json", "parts", "partial", "tmp")


# -- files -----------------------------------------------------------------------------------------------------
def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically: a temporary file in the same folder, flushed to disk, then
    renamed over ``path``. A crash at any point leaves either the previous file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=1, sort_keys=False) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _code_hash(script: str | Path | None) -> str:
    """sha256 (16 hex digits) of the package's Python files and of the script that runs the sweep."""
    package = Path(skipnet.__file__).resolve().parent
    h = hashlib.sha256()
    files = sorted(package.rglob("*.py")) + ([Path(script).resolve()] if script else [])
    for p in files:
        h.update(str(p.relative_to(package) if p.is_relative_to(package) else p.name).encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def made_with(script: str | Path | None = None) -> dict:
    """What made a stored result: package, torch and Python versions, machine, torch threads, the CPU kernels torch
    uses (``torch.backends.cpu.get_cpu_capability()``: AVX2 and AVX512 kernels can round differently), the git
    commit of the code and whether the package or scripts had uncommitted changes (``None`` outside git), and
    ``code``, a hash of the package's source and of ``script``."""
    root = Path(skipnet.__file__).resolve().parents[2]
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--", "code", "scripts") if commit else None
    return {"skipnet": skipnet.__version__, "torch": torch.__version__, "python": sys.version.split()[0],
            "machine": platform.machine(), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "commit": commit,
            "dirty": None if status is None else bool(status), "code": _code_hash(script)}


def save_result(path: str | Path, data: Any, config: dict, command: str, seconds: float | None = None,
                seeds: Iterable[int] | None = None, made: dict | None = None) -> Path:
    """Write the record ``{command, config, made_with, created, seconds, data}`` (and ``seeds``, the seeds it
    holds, when given) atomically to ``path``."""
    record = {"command": command, "config": config, "made_with": made if made is not None else made_with(),
              "created": time.strftime("%Y-%m-%d"), "seconds": seconds, "data": data}
    if seeds is not None:
        record["seeds"] = list(seeds)
    return write_json(path, record)


def load_result(path: str | Path) -> dict:
    """The stored record: keys ``command``, ``config``, ``made_with``, ``created``, ``seconds``, ``data`` (and
    ``seeds`` in the files a :class:`Sweep` wrote)."""
    return json.loads(Path(path).read_text())


def _check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag) or tag in _RESERVED_TAGS:
        raise ValueError(f"tag must be a word of 1 to 40 letters, digits, '-' or '_' (not {', '.join(_RESERVED_TAGS)}),"
                         f" e.g. 'confirm'; got {tag!r}")
    return tag


def tagged(path: str | Path, tag: str | None) -> Path:
    """``x.json`` -> ``x.<tag>.json``, a confirmation's file beside the exploratory one (``tag=None``: ``path``)."""
    path = Path(path)
    if tag is None:
        return path
    if path.suffix != ".json":
        raise ValueError(f"path must end in .json to carry a tag, got {str(path)!r}")
    return path.with_name(f"{path.stem}.{_check_tag(tag)}.json")


def load_sweep(name: str, tag: str | None = None, data_dir: str | Path = DATA) -> dict:
    """The stored sweep ``name`` (e.g. ``"highway_convergence"``): the exploratory ``<name>.json`` when ``tag`` is
    None, else ``<name>.<tag>.json`` (e.g. the confirmation, ``tag="confirm"``). Same record either way, so the
    analysis that reads one reads the other."""
    path = tagged(Path(data_dir) / f"{name}.json", tag)
    if not path.exists():
        parts = path.with_suffix(".parts")
        hint = (f"; {parts} holds an unfinished run: restart its command to finish it" if parts.exists() else
                "; `python scripts/sweeps.py` lists the stored sweeps and prints the command of a confirmation")
        raise FileNotFoundError(f"no stored sweep {name!r}" + (f" with tag {tag!r}" if tag else "") +
                                f" ({path} does not exist){hint}")
    return load_result(path)


def parse_seeds(values: Iterable[str | int], name: str = "seeds") -> list[int]:
    """Seeds from the command line: integers and inclusive ranges ``A-B`` (``10-19``), in order, no repeats."""
    seeds = []
    for v in values:
        text = str(v).strip()
        m = re.fullmatch(r"(\d+)-(\d+)", text)
        if m:
            lo, hi = int(m[1]), int(m[2])
            if hi < lo:
                raise ValueError(f"{name}: the range {text!r} is empty (write A-B with A <= B)")
            seeds += range(lo, hi + 1)
        elif re.fullmatch(r"\d+", text):
            seeds.append(int(text))
        else:
            raise ValueError(f"{name} must be integers between 0 and 2^32 - 1 or ranges A-B, got {text!r}")
    for s in seeds:
        check_seed(s, name)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"{name} must not repeat a seed; repeated: {repeated}")
    if not seeds:
        raise ValueError(f"{name} must name at least one seed")
    return seeds


def seeds_argument(seeds: Iterable[int]) -> str:
    """The ``--seeds`` words of a stored command: a count ``N`` for seeds 0..N-1 (as the identity and Transformer
    scripts' commands say), else :func:`format_seeds`."""
    seeds = list(seeds)
    return str(len(seeds)) if seeds == list(range(len(seeds))) else format_seeds(seeds)


def format_seeds(seeds: Iterable[int]) -> str:
    """Seeds as :func:`parse_seeds` reads them, runs of consecutive seeds as ranges: ``[10, ..., 19, 25]`` ->
    ``"10-19 25"``. A lone seed ``s`` is written ``s-s`` (a single number means a count in some scripts)."""
    seeds, out, i = list(seeds), [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        out.append(f"{seeds[i]}-{seeds[j]}" if j > i or len(seeds) == 1 else str(seeds[i]))
        i = j + 1
    return " ".join(out)


def interleave(per_seed: Iterable[list], block: int = 1) -> list:
    """Rows of several seeds in the order of a loop whose seed is the inner one: ``per_seed[k]`` holds seed k's
    rows in loop order, in blocks of ``block`` rows that belong to one iteration (e.g. plain and residual)."""
    per_seed = [list(rows) for rows in per_seed]
    n = {len(rows) for rows in per_seed}
    if len(n) > 1:
        raise ValueError(f"every seed must have the same number of rows to interleave, got {sorted(n)}")
    n = n.pop() if n else 0
    if block < 1 or n % block:
        raise ValueError(f"block must be a positive divisor of the rows per seed ({n}), got {block}")
    return [row for i in range(0, n, block) for rows in per_seed for row in rows[i:i + block]]


# -- resumable sweeps --------------------------------------------------------------------------------------------
