"""A long sweep, resumable seed by seed (the stored format is :mod:`skipnet.store`'s).

A :class:`Sweep` writes every finished run of one seed at once (a temporary file renamed into place) into a
folder beside the output, ``<output>.parts/``; a run restarted with the same command skips what is there and, at
the end, writes the same file as one uninterrupted run. It refuses to mix into one file runs made with another
command, configuration, seeds, code version or CPU kernels. The precompute scripts open one with
:func:`start_sweep`.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from skipnet.checks import check_seed
from skipnet.store import load_result, made_with, save_result, write_json

__all__ = ["Sweep", "SweepMismatch", "VERSION_FIELDS", "start_sweep", "run_sweep"]


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


class _Complete(Exception):
    """The output is already complete with this command, config, seeds and code."""


def run_sweep(out: str | Path, command: str, seeds: Iterable[int], body: Callable, *, script: str | Path | None = None,
              tag: str | None = None, restart: bool = False, extra: dict | None = None,
              log: Callable[[str], Any] = print) -> int:
    """Run one precompute sweep to ``out`` and return the script's exit code.

    ``body(start)`` computes the data: it calls ``start(config)`` once it knows its configuration (``extra`` is added
    to it), which opens the resumable :class:`Sweep` (or ends the run at once when ``out`` is already complete with
    this command, config, seeds and code), and returns the data, or ``(data, config)`` when the stored config must
    say more than the one it started with. Exit code 2, with the difference named, when the stored pieces were made
    with another command, config, seeds or code version."""
    out, opened = Path(out), []

    def start(config: dict) -> Sweep:
        sweep = start_sweep([out], command, {**config, **(extra or {})}, seeds, script=script, tag=tag,
                            restart=restart, log=log)
        if sweep is None:
            raise _Complete
        opened.append(sweep.__enter__())
        return sweep

    try:
        result = body(start)
        data, config = result if isinstance(result, tuple) else (result, None)
        path, = opened[0].finish({out: data}, config=None if config is None else {**config, **(extra or {})})
    except _Complete:
        return 0
    except SweepMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        for sweep in opened:
            sweep.__exit__()
    log(f"wrote {path} ({opened[0].seconds:.0f} s of computing)")
    return 0
