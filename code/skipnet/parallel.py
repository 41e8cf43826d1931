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

import multiprocessing as mp
import os
import pickle
import queue
import time
import traceback
from typing import Any, Callable

import torch

from skipnet.runtime import device as default_device

__all__ = ["workers", "side_by_side", "in_worker"]

_IN_WORKER = False


def workers(n_tasks: int) -> int:
    """How many processes ``n_tasks`` independent trainings should use here (1 = in this process)."""
    env = os.environ.get("SKIPNET_WORKERS")
    limit = int(env) if env and env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
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
