"""Seconds and peak memory to execute every chapter in ``_toc.yml`` from a cold start, as the book build does.

Each chapter runs in a process of its own, ``scripts/run_chapter.py`` (jupytext reads it, nbclient runs it in a
FRESH kernel whose working directory is the chapter's folder, no execution cache), two at a time as ``make book``
runs them. Its memory is that process's whole tree, the client, the kernel and the workers the kernel forks
(``bench/memory.py``: the sampled peak of the tree's memory, mapped files counted once, and the peak of its
largest process).
A Binder pod (one CPU) forks no workers and trains in the kernel instead; on the two chapters that fork workers here
(the opening chapter and the training page of the gradient highway) the tree with its workers came out a few percent
larger than the same chapter pinned to one CPU, so these peaks bound what a pod holds besides its Jupyter server.
Pages without code cells (the bibliography) are listed, not run.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


from benchlib import ROOT
from skipnet import reading
from memory import run_measured


def toc_files(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Every ``file`` entry of the table of contents, root first, in reading order."""
    return reading.toc_files(toc)


def resolve(entry: str) -> Path | None:
    base = ROOT / entry
    for candidate in (base, base.with_suffix(".md"), base.with_suffix(".ipynb")):
        if candidate.is_file():
            return candidate
    return None


def run_chapter(path: Path, timeout: int = 600) -> dict:
    import jupytext

    nb = jupytext.read(path)
    n_code = sum(cell.cell_type == "code" for cell in nb.cells)
    row = {"chapter": str(path.relative_to(ROOT)), "code_cells": n_code, "seconds": None, "peak_tree_mb": None,
           "max_process_rss_mb": None, "peak_processes": None, "error": None}
    if n_code == 0:
        return row
    env = {**os.environ, "MPLBACKEND": "Agg"}
    run = run_measured([sys.executable, str(ROOT / "scripts" / "run_chapter.py"), str(path), "--timeout", str(timeout)],
                       env=env, cwd=ROOT, timeout=4 * timeout)
    row.update({k: run[k] for k in ("seconds", "peak_tree_mb", "max_process_rss_mb", "peak_processes")})
    if run["returncode"] != 0:
        lines = [ln for ln in (run["stderr"] + run["stdout"]).strip().splitlines() if ln.strip()]
        row["error"] = (lines[-1] if lines else f"exit status {run['returncode']}")[:300]
    return row


def book_section(only: list[str] | None = None, jobs: int = 2) -> dict:
    """Every chapter, ``jobs`` at a time (each kernel its own process, as ``make book`` executes them with
    ``sphinx-build -j 2``); ``book_execution_s`` is the wall time of the whole book."""
    from concurrent.futures import ThreadPoolExecutor
    paths, missing = [], []
    for entry in toc_files():
        path = resolve(entry)
        if path is None:
            missing.append(entry)
            continue
        if only and not any(s in entry for s in only):
            continue
        paths.append(path)
    import time
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:     # the kernels do the work; threads only wait
        rows = list(pool.map(run_chapter, paths))
    wall = time.perf_counter() - t0
    ran = [r for r in rows if r["seconds"] is not None]
    return {
        "book_execution_s": wall if ran else 0.0,
        "book_jobs": jobs,
        "book_chapters_sum_s": sum(r["seconds"] for r in ran) if ran else 0.0,
        "chapters": rows,
        "chapter_peak_memory_mb": max((r["peak_tree_mb"] for r in ran if r["peak_tree_mb"] is not None),
                                      default=None),
        "chapters_missing": missing,
        "chapter_failures": [r["chapter"] for r in rows if r["error"]],
        "partial": bool(only),
    }
