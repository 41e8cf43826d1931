"""Peak memory of a process and everything it starts (a chapter's client, its kernel, the kernel's forked workers).

Two measures, because neither alone is what a Binder pod's 2 GB limit sees:

* ``peak_tree_mb``: the largest total over the process tree, sampled every ``every_s`` seconds, of its anonymous
  memory plus the files it maps: the sum of each process's proportional anonymous set (``Pss_Anon`` in
  ``/proc/<pid>/smaps_rollup``: a page that forked workers still share with the kernel is split between them, so it
  counts once) plus the largest file-backed resident set of one process (the libraries, torch's above all, that the
  kernel and its forked workers map alike, counted once). That is what a pod's memory cgroup is charged for its
  processes, give or take the page cache of files they read. A plain sum of RSS would count the shared pages once per
  worker, and a sum of PSS would split the libraries' pages with unrelated processes of the same machine that map
  them too. Sampled, so a peak shorter than the interval can be missed.
* ``max_process_rss_mb``: the largest RSS high-water mark of one process of the tree (``VmHWM`` in
  ``/proc/<pid>/status``, which the kernel keeps per process, libraries included), read at each sample: only what a
  process gains after the last sample before it ends is missed. (``wait4``'s ``ru_maxrss`` would not do: a child
  inherits the high-water mark of the process that forked it, here the benchmark's own.) A lower bound of the
  tree's peak when the other processes hold memory of their own.

Linux only (``/proc``); elsewhere the sampled fields are ``None``.
"""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

MB = 1024 * 1024


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])           # the name in (...) may hold spaces
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its living descendants."""
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(proportional anonymous set, file-backed resident set) of one process in kB; (0, 0) if it is gone."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Anonymous", "Pss_Anon"):
                fields[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return 0, 0
    return fields.get("Pss_Anon", 0), max(0, fields.get("Rss", 0) - fields.get("Anonymous", 0))


def _high_water_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeSampler:
    """Samples a process tree's memory (module docstring) in a thread until :meth:`stop`; keeps the peaks."""

    def __init__(self, pid: int, every_s: float = 0.2):
        self.pid, self.every_s = pid, every_s
        self.peak_kb = self.peak_processes = self.samples = self.max_hwm_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = Path("/proc/self/smaps_rollup").exists()

    def _run(self) -> None:
        while not self._stop.is_set():
            tree = process_tree(self.pid)
            mem = [m for m in (_memory_kb(p) for p in tree) if any(m)]
            self.max_hwm_kb = max([self.max_hwm_kb, *(_high_water_kb(p) for p in tree)])
            if mem:
                self.peak_kb = max(self.peak_kb, sum(a for a, _ in mem) + max(f for _, f in mem))
                self.peak_processes = max(self.peak_processes, len(mem))
            self.samples += 1
            self._stop.wait(self.every_s)

    def start(self) -> "TreeSampler":
        if self.available:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def run_measured(cmd: list[str], every_s: float = 0.2, timeout: float | None = None, **popen) -> dict:
    """Run ``cmd`` to its end while sampling its process tree; its output, exit status, seconds and peaks."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    sampler = TreeSampler(proc.pid, every_s).start()
    out: dict[str, str] = {}

    def drain(name, stream):
        out[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    timer = threading.Timer(timeout, proc.kill) if timeout else None
    if timer:
        timer.start()
    try:
        proc.wait()
    finally:
        if timer:
            timer.cancel()
        sampler.stop()
    for r in readers:
        r.join()
    return {"returncode": proc.returncode, "stdout": out.get("stdout", ""), "stderr": out.get("stderr", ""),
            "seconds": time.perf_counter() - t0,
            "peak_tree_mb": sampler.peak_kb / 1024 if sampler.samples else None,
            "peak_processes": sampler.peak_processes if sampler.samples else None,
            "max_process_rss_mb": sampler.max_hwm_kb / 1024 if sampler.samples else None}
