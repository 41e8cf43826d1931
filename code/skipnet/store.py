"""Small precomputed results, stored with the command and config that made them.

Multi-seed sweeps are too slow to run while a chapter executes; a script computes them once and
writes a JSON file under ``book/data/`` that holds the command, the configuration, the code and machine
that made it (``made_with``), the time taken and the data. Chapters load it with :func:`load_result`
(or :func:`load_sweep` by name), and a test re-runs a slice of the sweep to check that the stored numbers
still come out.

A :class:`Sweep` makes a long sweep resumable seed by seed: every finished run of one seed is written at
once (a temporary file renamed into place) into a folder beside the output, ``<output>.parts/``; a run
restarted with the same command skips what is there and, at the end, writes the same file as one
uninterrupted run. It refuses to mix into one file runs made with another command, configuration, seeds,
code version or CPU kernels. A confirmation on fresh seeds writes ``<name>.<tag>.json`` beside the
exploratory ``<name>.json`` (:func:`tagged`), in the same format, so that the same analysis reads both.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

import skipnet
from skipnet.config import check_seed

__all__ = ["DATA", "save_result", "load_result", "load_sweep", "tagged", "parse_seeds", "write_json", "made_with",
           "Sweep", "SweepMismatch", "start_sweep", "interleave", "format_seeds"]

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
class SweepMismatch(ValueError):
    """A stored, unfinished (or finished) sweep was made with another command, config, seeds or code version."""


def _plain(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, dict keys strings): what a resumed run sees."""
    return json.loads(json.dumps(obj))


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            if k not in new:
                out.append(f"{where}[{k!r}]: {old[k]!r} stored, absent in this run")
            elif k not in old:
                out.append(f"{where}[{k!r}]: absent in the stored run, {new[k]!r} in this run")
            else:
                out += _differences(old[k], new[k], f"{where}[{k!r}]")
        return out
    if old != new:
        return [f"{where or 'value'}: {old!r} stored, {new!r} in this run"]
    return []


#: ``made_with`` fields that must agree for seeds to share a file (the rest only describe the machine).
VERSION_FIELDS = ("skipnet", "torch", "threads", "cpu_capability", "commit", "code")


class Sweep:
    """A multi-seed run that stores each finished piece at once and resumes where it stopped.

    ``state`` is the folder of the unfinished run (``<output>.parts``); ``command``, ``config`` and ``seeds`` say
    what the run is; ``script`` is the file of the script (its text is part of the code version). Use it as a
    context manager (it holds a lock file against a second process writing the same folder)::

        with Sweep(out.with_suffix(".parts"), command, config, seeds, script=__file__) as sweep:
            rows = sweep.grid(cells, lambda cell, seed: run(cell, seed))
            sweep.finish({out: {"runs": rows}})

    :meth:`run` computes one (seed, cell) piece or returns it from the folder; every value goes through JSON both
    ways, so a resumed run and an uninterrupted one see the same values and write the same files. Opening a folder
    made with another command, config, seeds or code version (:data:`VERSION_FIELDS` of :func:`made_with`)
    raises :class:`SweepMismatch` naming the difference; ``restart=True`` discards the folder instead.
    """

    def __init__(self, state: str | Path, command: str, config: dict, seeds: Iterable[int],
                 script: str | Path | None = None, restart: bool = False, log: Callable[[str], Any] | None = print):
        self.state = Path(state)
        self.seeds = [check_seed(s, "seeds") for s in seeds]
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty list without repeats, got {self.seeds}")
        self.made = made_with(script)
        self.identity = {"command": command, "config": _plain(config), "seeds": self.seeds,
                         "version": {k: self.made[k] for k in VERSION_FIELDS}}
        self.log = log or (lambda text: None)
        self.restart = restart
        self._units: dict[int, dict] = {s: {"seed": s, "complete": False, "units": {}} for s in self.seeds}
        self._locked = False
        if restart and self.state.exists():
            shutil.rmtree(self.state)
        manifest = self.state / "sweep.json"
        if manifest.exists():
            stored = json.loads(manifest.read_text())
            diffs = _differences({k: stored.get(k) for k in self.identity}, self.identity)
            if diffs:
                what = [k for k in self.identity if _differences(stored.get(k), self.identity[k])]
                done = sorted(int(p.stem.split("-", 1)[1]) for p in self.state.glob("seed-*.json"))
                raise SweepMismatch(
                    f"{self.state} holds an unfinished sweep (stored runs for seeds {done}) made with a different "
                    f"{' and '.join('code version' if k == 'version' else k for k in what)}:\n  "
                    + "\n  ".join(diffs[:8]) + ("\n  ..." if len(diffs) > 8 else "") +
                    f"\nRuns made with other settings or code are not mixed into one file. To finish it, rerun "
                    f"{stored.get('command')!r} at commit {(stored.get('version') or {}).get('commit')}; to discard "
                    f"it, rerun with restart (the scripts' --restart).")
            for s in self.seeds:
                p = self.state / f"seed-{s}.json"
                if p.exists():
                    self._units[s] = json.loads(p.read_text())

    # -- lock -------------------------------------------------------------------------------------------------
    def __enter__(self) -> "Sweep":
        lock = self.state / "lock"
        if lock.exists():
            try:
                pid = int(lock.read_text().split()[0])
                os.kill(pid, 0)
                alive = pid != os.getpid()
            except (ValueError, IndexError, ProcessLookupError):
                alive = False
            except PermissionError:
                alive = True
            if alive:
                raise RuntimeError(f"another process (pid {pid}) is running this sweep ({self.state}); wait for it, "
                                   f"or delete {lock} if it is gone")
        self.state.mkdir(parents=True, exist_ok=True)
        if not (self.state / "sweep.json").exists():
            write_json(self.state / "sweep.json", self.identity)
        lock.write_text(f"{os.getpid()}\n")
        self._locked = True
        return self

    def __exit__(self, *exc) -> None:
        if self._locked:
            (self.state / "lock").unlink(missing_ok=True)
            self._locked = False

    # -- pieces -----------------------------------------------------------------------------------------------
    @property
    def seeds_done(self) -> list[int]:
        """Seeds marked complete (:meth:`seed_done`), in the sweep's order."""
        return [s for s in self.seeds if self._units[s]["complete"]]

    def is_done(self, seed: int, cell: Any = ()) -> bool:
        return json.dumps(_plain(cell)) in self._unit_table(seed)

    def _unit_table(self, seed: int) -> dict:
        if seed not in self._units:
            raise ValueError(f"seed must be one of this sweep's seeds {self.seeds}, got {seed!r}")
        return self._units[seed]["units"]

    def _save_seed(self, seed: int) -> None:
        if not self._locked:
            raise RuntimeError("a Sweep stores pieces only inside `with sweep:` (it holds the folder's lock)")
        write_json(self.state / f"seed-{seed}.json", self._units[seed])

    def run(self, seed: int, cell: Any, compute: Callable[[], Any]) -> Any:
        """The value of ``compute()`` for (``seed``, ``cell``): stored at once when computed, read back when stored.
        ``cell`` names the piece within the seed (a JSON-able tuple of its settings; ``()`` for the whole seed)."""
        table = self._unit_table(seed)
        key = json.dumps(_plain(cell))
        if key not in table:
            t0 = time.perf_counter()
            value = _plain(compute())
            table[key] = {"value": value, "seconds": round(time.perf_counter() - t0, 3)}
            self._save_seed(seed)
        return _plain(table[key]["value"])

    def seed_done(self, seed: int) -> None:
        """Mark ``seed`` complete (every piece of it stored): listings show it as done."""
        self._unit_table(seed)
        if not self._units[seed]["complete"]:
            self._units[seed]["complete"] = True
            self._save_seed(seed)
            self.log(f"seed {seed} done ({len(self.seeds_done)} of {len(self.seeds)})")

    def grid(self, cells: Iterable[Any], compute: Callable[[Any, int], Any],
             seeds_for: Callable[[Any], Iterable[int]] | None = None, mark: bool = True,
             seed_major: bool = False) -> list:
        """``compute(cell, seed)`` over every cell and seed, run seed by seed (a seed's cells, then the next seed),
        returned in the order of the loop ``for cell in cells: for seed in seeds`` (the stored files' order).
        ``seeds_for(cell)``: the seeds that run that cell (default: all); ``mark``: mark each seed done after it;
        ``seed_major``: return them in the order of execution instead (``for seed in seeds: for cell in cells``)."""
        cells = list(cells)
        wanted = {i: set(self.seeds if seeds_for is None else seeds_for(c)) for i, c in enumerate(cells)}
        for s in self.seeds:
            for i, c in enumerate(cells):
                if s in wanted[i]:
                    self.run(s, c, lambda c=c, s=s: compute(c, s))
            if mark:
                self.seed_done(s)
        if seed_major:
            return [self.run(s, c, _missing) for s in self.seeds for i, c in enumerate(cells) if s in wanted[i]]
        return [self.run(s, c, _missing) for i, c in enumerate(cells) for s in self.seeds if s in wanted[i]]

    @property
    def seconds(self) -> float:
        """Compute time of every stored piece, over all sittings."""
        return round(sum(u["seconds"] for rec in self._units.values() for u in rec["units"].values()), 1)

    def finish(self, outputs: dict[str | Path, Any], config: dict | None = None) -> list[Path]:
        """Write every output ``{path: data}`` (atomically, with ``seeds``), then remove the folder of pieces.
        ``config``: the configuration to store, when it holds more than the one the sweep was opened with (choices
        made from the results, e.g. the best learning rate); its other keys must be the same."""
        if config is not None:
            diffs = _differences(self.identity["config"], {k: v for k, v in _plain(config).items()
                                                           if k in self.identity["config"]})
            if diffs:
                raise ValueError("config to store differs from the sweep's: " + "; ".join(diffs))
        made = dict(self.made, threads=torch.get_num_threads())
        paths = [save_result(p, data, self.identity["config"] if config is None else config,
                             self.identity["command"], self.seconds,
                             seeds=self.seeds, made=made) for p, data in outputs.items()]
        for s in self.seeds:
            self._units[s]["complete"] = True
        self.__exit__()
        shutil.rmtree(self.state, ignore_errors=True)
        return paths

    def finished(self, outputs: Iterable[str | Path], protect: bool = False) -> bool:
        """True when every output exists and was written by a sweep with this identity (nothing left to run).
        ``protect``: raise :class:`SweepMismatch` rather than let this run replace an output that a sweep with
        another identity wrote (a confirmation is never replaced silently; ``restart=True`` allows it)."""
        done = True
        for p in map(Path, outputs):
            if not p.exists():
                done = False
                continue
            rec = load_result(p)
            config = rec.get("config") or {}
            old = {"command": rec.get("command"), "seeds": rec.get("seeds"),
                   "config": {k: config[k] for k in self.identity["config"] if k in config} if
                   isinstance(config, dict) else config,
                   "version": {k: rec.get("made_with", {}).get(k) for k in VERSION_FIELDS}}
            diffs = _differences(old, {k: self.identity[k] for k in old})
            if diffs:
                done = False
                if protect and not self.restart and "seeds" in rec:
                    raise SweepMismatch(f"{p} was written by another sweep:\n  " + "\n  ".join(diffs[:8]) +
                                        "\nA stored confirmation is not replaced silently: rerun with --restart to "
                                        "replace it, or choose another --tag.")
        return done


def start_sweep(outputs: Iterable[str | Path], command: str, config: dict, seeds: Iterable[int], *,
                script: str | Path | None = None, tag: str | None = None, restart: bool = False,
                state: str | Path | None = None, log: Callable[[str], Any] | None = print) -> Sweep | None:
    """The :class:`Sweep` that writes ``outputs`` (its pieces in ``state``, default ``<first output>.parts``), or
    None when they are complete with this command, config, seeds and code (``restart``: run it again anyway). A
    tagged run (a confirmation) refuses to replace a different stored one unless ``restart``."""
    outputs = [Path(p) for p in outputs]
    sweep = Sweep(state or outputs[0].with_suffix(".parts"), command, config, seeds, script=script, restart=restart,
                  log=log)
    if not restart and sweep.finished(outputs, protect=tag is not None) and not sweep.state.exists():
        if log:
            log(f"{', '.join(map(str, outputs))}: complete (same command, config, seeds and code); nothing to run")
        return None
    return sweep


def _missing():
    raise AssertionError("a piece of the sweep was not computed")
