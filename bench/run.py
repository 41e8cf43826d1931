"""`make bench`: the book's speed against a baseline and against the machine's limit.

    .venv/bin/python bench/run.py [--quick] [--skip-book] [--skip-widgets] [--skip-busy]
                                  [--skip-vectorized] [--skip-browser] [--widgets NAME ...] [--chapters NAME ...]
                                  [--cpu-only] [--out _build/bench/results.json]

Prints a table and writes ``_build/bench/results.json``. Each lab's default run is timed twice: here, and in a
child process pinned to one CPU as on a mybinder.org pod (``widget_one_cpu_*``); each chapter's execution is
measured for time and for the peak memory of its process tree, workers included (``bench/memory.py``).
Every speed figure is a ratio of two rates measured in this run, in alternating rounds (see ``benchlib.py``);
absolute seconds (labs, chapters) depend on the machine and its load, which the JSON records beside them. When CUDA is
present the same measurements run again on the GPU (``SKIPNET_DEVICE=cuda``, the one place the
package chooses its device) and are reported under ``"cuda"``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()       # what a tutorial gets: read BEFORE skipnet sets one thread

from benchlib import ROOT, fmt, loadavg, machine, table  # noqa: E402

GOALS = {                                        # metric: (comparison, bound, unit)
    "trainer_speedup_vs_naive": (">=", 2.0, "x"),
    "trainer_speedup_vs_naive_busy": (">=", 2.0, "x"),
    "step_fraction_of_matmul_peak": (">=", 0.6, ""),
    "widget_first_update_s": ("<=", 1.0, "s"),
    "widget_first_figure_s": ("<=", 2.0, "s"),
    "widget_total_s": ("<=", 8.0, "s"),
    "widget_one_cpu_first_figure_s": ("<=", 2.0, "s"),    # a mybinder.org pod: one CPU, 2 GB
    "widget_one_cpu_total_s": ("<=", 8.0, "s"),
    "book_execution_s": ("<=", 150.0, "s"),
    "chapter_peak_memory_mb": ("<=", 2048.0, " MB"),
    "busy_machine_slowdown": ("<=", 2.5, "x"),
    "browser_lab_train_s": ("<=", 10.0, "s"),   # the opening page's lab at its default, headless Chromium
}


def met(name: str, value) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    op, bound, _ = GOALS[name]
    return value >= bound if op == ">=" else value <= bound


def clean(x):
    """JSON-safe, rounded numbers."""
    if isinstance(x, float):
        return None if not math.isfinite(x) else float(f"{x:.5g}")
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


def run_device(dev: str, args) -> dict:
    from train_speed import trainer_section, vectorized_section
    from widget_speed import one_cpu_section, widget_section
    from book_speed import book_section
    from busy_speed import busy_section

    device = torch.device(dev)
    os.environ["SKIPNET_DEVICE"] = dev
    out: dict = {"device": dev, "sections": {}}

    def section(name, fn):
        t0, load0 = time.perf_counter(), loadavg()
        print(f"[{dev}] {name} ...", flush=True)
        out.update(fn())
        out["sections"][name] = {"seconds": round(time.perf_counter() - t0, 1), "loadavg_before": load0,
                                 "loadavg_after": loadavg()}

    section("trainer", lambda: trainer_section(device, DEFAULT_THREADS, args.quick))
    if not args.skip_vectorized:
        section("vectorized", lambda: {"vectorized": vectorized_section(device, args.quick)})
    if not args.skip_widgets:
        section("widgets", lambda: widget_section(args.widgets))
        if dev == "cpu":
            section("widgets on one CPU", lambda: one_cpu_section(args.widgets))
    if not args.skip_busy:
        section("busy", lambda: busy_section(device, args.quick, warm="widgets" in out["sections"]))
    if not args.skip_book:
        section("book", lambda: book_section(args.chapters))
    if not args.skip_browser and dev == "cpu":                  # the browser does not use torch's device
        from browser_lab import browser_lab_section
        section("browser", lambda: browser_lab_section(1 if args.quick else 3))
    for name in GOALS:
        out.setdefault(name, None)
    out["goals_met"] = {name: met(name, out[name]) for name in GOALS}
    return out


def report(res: dict, title: str) -> str:
    lines = [f"\n## {title}"]
    rows = []
    for name, (op, bound, unit) in GOALS.items():
        ok = res["goals_met"][name]
        rows.append([name, res[name], f"{op} {fmt(bound)}{unit}", {True: "yes", False: "NO", None: "-"}[ok]])
    lines.append(table(rows, ["metric", "value", "goal", "met"]))
    tr = res.get("trainer")
    if tr:
        lines.append("\nTraining throughput, images/s (best of alternating rounds; ResNet-20 width 16, batch "
                     f"{tr['batch']}; tutorial loop on {tr['tutorial_threads']} thread(s)):")
        lines.append(table([[k, v, tr["images_per_s_median"][k]] for k, v in tr["images_per_s"].items()],
                           ["loop", "best", "median"]))
        fl = res["flops"]
        pair = res.get("trainer_pair") or {}
        for when in ("idle", "busy"):
            if pair.get(when):
                lines.append(f"the plain/residual pair, {when}: package (side by side) "
                             f"{fmt(pair[when]['images_per_s']['package_pair'])} images/s, tutorial (one after the "
                             f"other) {fmt(pair[when]['images_per_s']['tutorial_pair'])}: {fmt(pair[when]['speedup'])}x")
        lines.append(f"one training alone, package vs tutorial: {fmt(res.get('trainer_single_speedup_vs_naive'))}x; "
                     f"package vs tutorial on one thread: {fmt(tr['speedup_vs_tutorial_same_threads'])}x; "
                     f"package / minimal loop: {fmt(tr['package_over_minimal_loop'])}; "
                     f"achieved {fmt(fl['achieved_gflops'])} GFLOP/s of a {fmt(fl['matmul_peak_gflops'])} GFLOP/s "
                     f"matmul peak ({fmt(fl['train_flops_per_image'] / 1e6)} MFLOP per training image)")
        share = res["step_breakdown"]["share"]
        lines.append("where the package step's time goes: " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in sorted(share.items(), key=lambda kv: -kv[1]))
            + f"; the convolutions alone run at {fmt(fl['convolutions_fraction_of_peak'])} of the matmul peak")
    kl = res.get("conv_limits")
    if kl:
        lines.append("\nResNet-20's 3x3 convolutions alone (forward and backward), fraction of the matmul peak: "
                     + ", ".join(f"{k.replace('_', ' ')} {fmt(kl[k])}" for k in
                                 ("nchw", "channels_last", "batch_256", "pair_apart", "grouped_pair"))
                     + f"; BatchNorm folded into the convolution at eval: {fmt(kl['bn_folded_eval_speedup'])}x")
    if res.get("vectorized"):
        lines.append("\nSeveral seeds in one vectorized pass vs one after another:")
        lines.append(table([[k, v["models"], v["speedup"], v["speedup_median"]] for k, v in res["vectorized"].items()],
                           ["network", "models", "speedup (best)", "speedup (median)"]))
    if res.get("widgets") is not None:
        one = {r["widget"]: r for r in res.get("widgets_one_cpu") or []}
        lines.append(f"\nLabs ({res['widget_count']} found), default run; 'one CPU' = pinned to one CPU as on Binder"
                     f" ({res.get('widgets_one_cpu_usable_cpus', '-')} usable CPU there):")
        lines.append(table([[r["widget"], r["first_update_s"], r["first_figure_s"], r["total_s"],
                             one.get(r["widget"], {}).get("first_figure_s"), one.get(r["widget"], {}).get("total_s"),
                             r["draws"], r["draw_s"], r["error"] or one.get(r["widget"], {}).get("error") or ""]
                            for r in res["widgets"]],
                           ["lab", "first update s", "first figure s", "total s", "one CPU: first figure s",
                            "one CPU: total s", "figures", "drawing s", "error"]))
        if res.get("widgets_one_cpu_note"):
            lines.append(f"  one-CPU run: {res['widgets_one_cpu_note']}")
        for mod, err in res.get("widget_import_errors", {}).items():
            lines.append(f"  import failed: {mod}: {err}")
    if res.get("busy"):
        b = res["busy"]
        lines.append(f"\nBusy machine ({b['workload']}): idle {b['idle_s']} s, with one busy process {b['busy_s']} s")
        for k, v in b.get("resnet20_steps", {}).items():
            lines.append(f"  ResNet-20 steps on {k.replace('_', ' ')}: {fmt(v['idle_images_per_s'])} -> "
                         f"{fmt(v['busy_images_per_s'])} images/s with a busy process ({fmt(v['slowdown'])}x slower)")
    if res.get("browser_lab"):
        lab = res["browser_lab"]
        lines.append(f"\nIn-browser lab ({lab['page']}, Chromium {lab['chromium']}): " + ", ".join(
            f"{r['blocks']} blocks in a {r['engine']} {fmt(r['seconds'])} s" for r in lab["runs"]))
    if res.get("chapters") is not None:
        lines.append(f"\nChapters (fresh kernel each, {res.get('book_jobs')} at a time as `make book` runs them; "
                     f"wall {fmt(res.get('book_execution_s'))} s, sum of chapters {fmt(res.get('book_chapters_sum_s'))} s):")
        lines.append(table([[r["chapter"], r["code_cells"], r["seconds"], r.get("peak_tree_mb"),
                             r.get("max_process_rss_mb"), r.get("peak_processes"), r["error"] or ""]
                            for r in res["chapters"]],
                           ["chapter", "code cells", "seconds", "peak MB (tree)", "largest process MB",
                            "processes", "error"]))
        lines.append("  peak MB: the most the chapter's processes (client, kernel, forked workers) held at once, "
                     "anonymous memory plus mapped files once, sampled every 0.2 s (bench/memory.py); largest process: the "
                     "largest RSS high-water mark (VmHWM) of one of them")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds (development)")
    ap.add_argument("--skip-book", action="store_true")
    ap.add_argument("--skip-widgets", action="store_true")
    ap.add_argument("--skip-busy", action="store_true")
    ap.add_argument("--skip-vectorized", action="store_true")
    ap.add_argument("--skip-browser", action="store_true", help="skip the in-browser lab (needs Chromium)")
    ap.add_argument("--widgets", nargs="*", default=None, help="only labs whose name contains one of these")
    ap.add_argument("--chapters", nargs="*", default=None, help="only chapters whose path contains one of these")
    ap.add_argument("--cpu-only", action="store_true", help="skip the GPU pass even when CUDA is present")
    ap.add_argument("--out", default=str(ROOT / "_build" / "bench" / "results.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    results = {"machine": machine(), "tutorial_default_threads": DEFAULT_THREADS,
               "package_threads": torch.get_num_threads(),
               "goals": {k: f"{op} {b}{u}" for k, (op, b, u) in GOALS.items()},
               "mode": {"quick": args.quick, "skipped": [s for s in ("book", "widgets", "busy", "vectorized", "browser")
                                                         if getattr(args, f"skip_{s}")],
                        "widgets": args.widgets, "chapters": args.chapters}}
    env_device = os.environ.get("SKIPNET_DEVICE")
    try:
        cpu = run_device("cpu", args)
        results.update({k: v for k, v in cpu.items() if k != "device"})
        results["package_threads"] = torch.get_num_threads()
        if torch.cuda.is_available() and not args.cpu_only:
            results["cuda"] = run_device("cuda", args)
        else:
            results["cuda"] = None
    finally:
        if env_device is None:
            os.environ.pop("SKIPNET_DEVICE", None)
        else:
            os.environ["SKIPNET_DEVICE"] = env_device
    results["machine"]["loadavg_end"] = loadavg()
    results["total_s"] = time.perf_counter() - t0

    out = ROOT / args.out if not os.path.isabs(args.out) else args.out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(clean(results), f, indent=1)
    m = results["machine"]
    text = (f"# Benchmarks on {m['cpu']} ({m['cpu_count']} cores), torch {m['torch']}, package on "
            f"{results['package_threads']} thread(s), {m['date']}\nload average {m['loadavg_start']} -> "
            f"{m['loadavg_end']} (uptime: {m['uptime']})\n" + report(results, "CPU"))
    if results["cuda"]:
        text += "\n" + report(results["cuda"], f"GPU ({m['cuda']})")
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
        f.write(text + "\n")
    print("\n" + text)
    print(f"\nwrote {out} (and .md) in {results['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
