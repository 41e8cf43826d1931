"""Seconds to execute every chapter in ``_toc.yml`` from a cold start, as the book build does.

Each chapter is read with jupytext and run by nbclient in a FRESH kernel whose working directory is
the chapter's folder (no execution cache), as ``scripts/run_chapter.py`` does, two at a time as
``make book`` runs them. Pages without code cells (the bibliography) are listed, not run.
"""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from benchlib import ROOT


def toc_files(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Every ``file`` entry of the table of contents, root first, in reading order."""
    spec = yaml.safe_load(toc.read_text())
    out = [spec["root"]] if "root" in spec else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in spec.items() if k != "root"})
    return out


def resolve(entry: str) -> Path | None:
    base = ROOT / entry
    for candidate in (base, base.with_suffix(".md"), base.with_suffix(".ipynb")):
        if candidate.is_file():
            return candidate
    return None


def run_chapter(path: Path, timeout: int = 600) -> dict:
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = jupytext.read(path)
    n_code = sum(cell.cell_type == "code" for cell in nb.cells)
    row = {"chapter": str(path.relative_to(ROOT)), "code_cells": n_code, "seconds": None, "error": None}
    if n_code == 0:
        return row
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as e:
        row["error"] = str(e).strip().splitlines()[-1][:300] if str(e).strip() else "CellExecutionError"
    except Exception as e:                 # a timeout or a dead kernel
        row["error"] = f"{type(e).__name__}: {e}"[:300]
    row["seconds"] = time.perf_counter() - t0
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
        "chapters_missing": missing,
        "chapter_failures": [r["chapter"] for r in rows if r["error"]],
        "partial": bool(only),
    }
