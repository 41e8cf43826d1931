"""Every lab's default run: seconds to its first progress update and to its finished result.

Labs are discovered, not listed: every subclass of :class:`skipnet.widgets.base.Lab` defined in a
``skipnet.widgets.*`` module. Each is built with ``Cls(threaded=False)`` (or ``Cls()``), its Run
button is clicked and the run awaited, as a reader would; the lab itself records
``first_update_s`` and ``elapsed_s``.

:func:`one_cpu_section` runs the same in a child process whose affinity is one CPU, as on a mybinder.org pod
(``taskset -c 0``): the package then counts one usable CPU and forks no workers
(:func:`skipnet.parallel.usable_cpus`). The goals (first figure within 2 s, the default run within 8 s) are for
that run.

    python bench/widget_speed.py [--one-cpu] [--widgets NAME ...]     # prints the rows as JSON
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import skipnet.widgets
from skipnet.widgets.base import Lab


def discover_labs() -> tuple[list[type], dict[str, str]]:
    """(lab classes sorted by qualified name, {module: import error} for modules that failed to import)."""
    labs, errors = [], {}
    for info in pkgutil.iter_modules(skipnet.widgets.__path__, prefix="skipnet.widgets."):
        try:
            module = importlib.import_module(info.name)
        except Exception as e:                     # a module in progress must not stop the benchmark
            errors[info.name] = f"{type(e).__name__}: {e}"
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, Lab) and cls is not Lab and cls.__module__ == module.__name__
                    and cls.compute is not Lab.compute and not inspect.isabstract(cls)):
                labs.append(cls)
    return sorted(labs, key=lambda c: f"{c.__module__}.{c.__qualname__}"), errors


def build(cls: type) -> Lab:
    try:
        return cls(threaded=False)
    except TypeError:
        return cls()


def time_lab(cls: type, timeout: float = 120.0) -> dict:
    """One default run of one lab."""
    name = f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"
    row = {"widget": name, "first_update_s": None, "first_figure_s": None, "total_s": None, "draws": 0,
           "draw_s": 0.0, "wall_s": None, "error": None}
    t0 = time.perf_counter()
    try:
        lab = build(cls)
        draw = lab._draw

        def timed_draw(result, final=True):      # where the time goes: drawing figures vs computing
            t = time.perf_counter()
            draw(result, final)
            row["draws"] += 1
            row["draw_s"] += time.perf_counter() - t
            if row["first_figure_s"] is None:
                row["first_figure_s"] = time.perf_counter() - lab._t0

        lab._draw = timed_draw
        lab.run_button.click()
        lab.wait(timeout)
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}"
        return row
    row["wall_s"] = time.perf_counter() - t0           # includes building the controls
    row["first_update_s"], row["total_s"] = lab.first_update_s, lab.elapsed_s
    if lab.error:
        row["error"] = lab.error
    elif lab.result is None:
        row["error"] = "no result"
    return row


def widget_section(only: list[str] | None = None) -> dict:
    labs, import_errors = discover_labs()
    if only:
        labs = [c for c in labs if any(s in f"{c.__module__}.{c.__qualname__}" for s in only)]
    rows = [time_lab(cls) for cls in labs]
    ok = [r for r in rows if r["error"] is None]
    # a lab that never reports progress shows its first change with the result
    firsts = [r["first_update_s"] if r["first_update_s"] is not None else r["total_s"] for r in ok]
    return {
        "widget_first_update_s": max(firsts) if firsts else None,
        "widget_total_s": max(r["total_s"] for r in ok) if ok else None,
        "widget_first_figure_s": max((r["first_figure_s"] for r in ok if r["first_figure_s"] is not None), default=None),
        "widgets": rows,
        "widget_count": len(rows),
        "widget_failures": [r["widget"] for r in rows if r["error"] is not None]
        + [f"{m} (import)" for m in import_errors],
        "widget_import_errors": import_errors,
        "widgets_without_progress": [r["widget"] for r in ok if r["first_update_s"] is None],
    }


def one_cpu_section(only: list[str] | None = None, cpu: int | None = None) -> dict:
    """:func:`widget_section` in a child process pinned to one CPU (``cpu``, default the lowest this process may
    use), with ``SKIPNET_WORKERS`` unset so that the package sees what a one-CPU pod shows it."""
    if not hasattr(os, "sched_setaffinity"):
        return {"widgets_one_cpu": None, "widgets_one_cpu_note": "no CPU affinity on this platform"}
    cpu = min(os.sched_getaffinity(0)) if cpu is None else cpu
    env = {k: v for k, v in os.environ.items() if k != "SKIPNET_WORKERS"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json"] + (["--widgets", *only] if only else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800,
                         preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    if out.returncode != 0:
        return {"widgets_one_cpu": None, "widgets_one_cpu_note": out.stderr.strip()[-500:]}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {"widgets_one_cpu": res["widgets"], "widget_one_cpu_first_figure_s": res["widget_first_figure_s"],
            "widget_one_cpu_total_s": res["widget_total_s"], "widgets_one_cpu_usable_cpus": res["usable_cpus"],
            "widget_one_cpu_failures": res["widget_failures"]}


def main() -> int:
    ap = argparse.ArgumentParser(description="every lab's default run")
    ap.add_argument("--json", action="store_true", help="print the section as one line of JSON")
    ap.add_argument("--one-cpu", action="store_true", help="in a child process pinned to one CPU")
    ap.add_argument("--widgets", nargs="*", default=None)
    args = ap.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    from skipnet.parallel import usable_cpus
    res = one_cpu_section(args.widgets) if args.one_cpu else {**widget_section(args.widgets),
                                                                  "usable_cpus": usable_cpus()}
    print(json.dumps(res) if args.json or args.one_cpu else res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
