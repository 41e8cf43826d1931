"""Independent trainings side by side: one forked process per training, each on one torch thread.

The book's work is many small independent trainings (a plain net and its residual twin, the seeds of a
table). One torch thread per training is the fastest setting on a shared CPU (two threads per training
were several times slower whenever another process was busy), so the second core is used by running two
trainings at once, each in its own process, rather than by intra-op threads.

:func:`side_by_side` runs named tasks in forked workers and streams their reports back to the caller's
process, where the progress callback (a lab's live figure) runs; a callback that returns ``False`` stops
every worker at its next report. It falls back to running the tasks one after another where forking is not
available or not wise: a single core, a CUDA device, inside a worker, or ``SKIPNET_WORKERS=1``.
:mod:`skipnet.race` uses it for the labs' races; :func:`in_worker` runs one training beside a lab's live figure.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import queue
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from skipnet.runtime import device as default_device

__all__ = ["workers", "usable_cpus", "cgroup_cpu_limit", "side_by_side", "in_worker"]

_IN_WORKER = False


CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _up_to(base: Path, inner: str):
    """``base/inner``, then each of its parents, up to and including ``base`` (a limit anywhere above counts)."""
    here = base / inner.strip("/") if inner.strip("/") else base
    while True:
        yield here
        if here == base or base not in here.parents:
            return
        here = here.parent


def _v2_limit(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")                       # "max 100000" (no limit) or "<quota> <period>"
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max":
        return None
    try:
        q, p = int(quota), int(period or 100_000)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _v1_limit(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        q, p = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None                 # -1: no limit


def cgroup_cpu_limit(root: str | Path | None = None, self_cgroup: str | Path | None = None) -> float | None:
    """The CPU time this process's cgroup may use, in CPUs (quota / period; 1.0 on a mybinder.org pod), or ``None``
    when no quota is set. The smallest quota on the way from the process's cgroup up to the root counts, under
    cgroup v2 (``cpu.max``, also in a hybrid ``unified/`` mount) and v1 (``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``). ``root`` and ``self_cgroup`` (``/proc/self/cgroup``) may point at other files (tests)."""
    root = Path(CGROUP_ROOT if root is None else root)
    lines = (_read(Path(SELF_CGROUP if self_cgroup is None else self_cgroup)) or "").splitlines()
    limits: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, inner = parts
        if controllers == "":                                 # v2: one hierarchy, "0::/path"
            base = root if (root / "cgroup.controllers").exists() or not (root / "unified").is_dir() \
                else root / "unified"
            read = _v2_limit
        elif "cpu" in controllers.split(","):                 # v1: the hierarchy the cpu controller is mounted on
            base = next((root / n for n in (controllers, "cpu", "cpu,cpuacct") if (root / n).is_dir()), None)
            if base is None:
                continue
            read = _v1_limit
        else:
            continue
        limits += [x for x in (read(folder) for folder in _up_to(base, inner)) if x is not None]
    if not lines:                                             # no /proc/self/cgroup: the root's own files, if any
        limits += [x for x in (_v2_limit(root), _v1_limit(root / "cpu")) if x is not None]
    return min(limits) if limits else None


def usable_cpus(root: str | Path | None = None, self_cgroup: str | Path | None = None) -> int:
    """The CPUs this process may really use: its affinity mask (``os.sched_getaffinity``; ``taskset -c 0`` gives 1),
    capped by its cgroup CPU quota rounded down (:func:`cgroup_cpu_limit`), and at least 1. Only whole CPUs of a quota
    count: on a quota of 1.5 two trainings side by side would each be throttled in bursts while holding a second copy
    of the memory; on a quota of 1 (Binder) they would only take turns."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):                         # macOS, Windows: no affinity mask
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, self_cgroup)
    if limit is not None:
        n = min(n, math.floor(limit + 1e-9))
    return max(1, n)


def workers(n_tasks: int) -> int:
    """How many processes ``n_tasks`` independent trainings should use here (1 = in this process):
    ``$SKIPNET_WORKERS`` if set to a positive integer, else the CPUs this process may use (:func:`usable_cpus`)."""
    env = os.environ.get("SKIPNET_WORKERS")
    limit = int(env) if env and env.isdigit() and int(env) > 0 else usable_cpus()
    if (_IN_WORKER or n_tasks < 2 or limit < 2 or default_device().type != "cpu"
            or "fork" not in mp.get_all_start_methods()):
        return 1
    return min(n_tasks, limit)


def _worker(name: str, task: Callable, messages, stop) -> None:
    global _IN_WORKER
    _IN_WORKER = True
    torch.set_num_threads(1)

    # payloads travel as plain pickles: torch's own queue reduction would hand over shared-memory handles
    # that vanish when the worker exits
    def report(payload: Any) -> bool:
        messages.put(("report", name, pickle.dumps(payload)))
        return not stop.is_set()

    try:
        messages.put(("done", name, pickle.dumps(task(report))))
    except BaseException:                                    # the caller re-raises it with the traceback
        messages.put(("error", name, traceback.format_exc()))


def side_by_side(tasks: dict[str, Callable[[Callable[[Any], bool]], Any]],
                 on_report: Callable[[str, Any], bool | None] | None = None,
                 n_workers: int | None = None) -> dict[str, Any]:
    """Run every ``task(report)`` and return ``{name: its result}``.

    A task calls ``report(payload)`` now and then; ``on_report(name, payload)`` runs in this process, and if it
    returns ``False`` every later ``report`` returns ``False`` (the task should then stop). Tasks are
    independent: each must seed what it draws (the trainers do). An exception in a task is raised here as a
    ``RuntimeError`` carrying the worker's traceback.
    """
    n = workers(len(tasks)) if n_workers is None else n_workers
    if n == 1:
        stopped = False

        def local_report(name):
            def report(payload):
                nonlocal stopped
                if on_report is not None and on_report(name, payload) is False:
                    stopped = True
                return not stopped
            return report

        return {name: task(local_report(name)) for name, task in tasks.items()}

    ctx = mp.get_context("fork")
    messages, stop = ctx.Queue(), ctx.Event()
    pending = list(tasks.items())
    running: dict[str, mp.Process] = {}
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def start_next():
        name, task = pending.pop(0)
        p = ctx.Process(target=_worker, args=(name, task, messages, stop), daemon=True)
        p.start()
        running[name] = p

    try:
        while pending and len(running) < n:
            start_next()
        while running:
            try:
                kind, name, payload = messages.get(timeout=0.5)
            except queue.Empty:
                dead = [k for k, p in running.items() if not p.is_alive() and p.exitcode not in (0, None)]
                for k in dead:
                    errors[k] = f"worker for {k!r} died with exit code {running.pop(k).exitcode}"
                continue
            if kind == "report":
                if on_report is not None and on_report(name, pickle.loads(payload)) is False:
                    stop.set()
                continue
            if kind == "done":
                results[name] = pickle.loads(payload)
            else:
                errors[name] = payload
            running.pop(name).join()
            if pending:
                start_next()
    finally:
        stop.set()
        for p in running.values():
            p.terminate()
            p.join()
    if errors:
        name, text = next(iter(errors.items()))
        raise RuntimeError(f"the training {name!r} failed in its worker:\n{text}")
    return {name: results[name] for name in tasks}


def in_worker(task: Callable[[Callable], Any], progress: Callable | None = None, every_s: float = 0.25) -> Any:
    """``task(progress)`` run in one worker process while this one handles its progress: a lab redraws its live
    figure on one core while the training runs on the other, instead of pausing it. The progress calls
    ``(fraction, text, partial)`` are passed on at most every ``every_s`` seconds (and the last one always);
    a ``False`` from ``progress`` stops the task at its next call. Runs here where forking is not wise."""
    if workers(2) == 1:
        return task(progress)
    last = [float("-inf")]

    def run(report):
        def throttled(fraction, text="", partial=None):
            now = time.perf_counter()
            if now - last[0] >= every_s or fraction >= 1:
                last[0] = now
                return report((fraction, text, partial))
            return None
        return task(throttled)

    def on_report(_name, payload):
        return None if progress is None else progress(*payload)

    return side_by_side({"task": run}, on_report, n_workers=2)["task"]
