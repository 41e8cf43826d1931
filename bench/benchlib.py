"""Shared helpers of the benchmarks: interleaved timing, device sync, thread settings, machine facts.

Every figure the benchmarks report is a RATIO of two rates measured in the same process, in
alternating rounds (A B A B ...), so that a load that comes and goes on a shared machine hits both
sides alike. A rate is the best round (the least disturbed one); the per-round rates are kept too.
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

from skipnet.models import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
RESNET20 = ModelConfig(arch="cnn", depth=20, width=16)   # the network every CNN benchmark times


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work (a no-op on the CPU) so that a timer sees finished work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def threads(n: int):
    """Run a block with ``n`` torch intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def interleaved(variants: dict[str, Callable[[], float]], rounds: int,
                max_seconds: float | None = None, min_rounds: int = 2) -> dict[str, dict]:
    """Call each variant once per round, in turn; each call returns the work done (e.g. images).

    After ``min_rounds``, stop early once ``max_seconds`` have passed (a heavily loaded machine).
    Returns, per variant, ``best`` and ``median`` rates (work per second) and the per-round rates.
    """
    rates: dict[str, list[float]] = {name: [] for name in variants}
    start = time.perf_counter()
    for r in range(rounds):
        if max_seconds is not None and r >= min_rounds and time.perf_counter() - start > max_seconds:
            break
        for name, fn in variants.items():
            t0 = time.perf_counter()
            work = fn()
            dt = time.perf_counter() - t0
            rates[name].append(work / dt)
    return {name: {"best": max(r), "median": statistics.median(r), "rounds": [round(x, 1) for x in r]}
            for name, r in rates.items()}


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    """What ran the benchmark: CPU, cores, torch, GPU, load, commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else None
    info = {
        "cpu": f"{cpu} ({isa})" if isa else cpu,
        "cpu_model": cpu,
        "isa": isa,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg_start": loadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    try:
        info["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["uptime"] = None
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(rows: list[list], header: list[str]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])
