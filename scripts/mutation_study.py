"""Mutation study: does the fast test suite catch a plausible bug in each of the book's key mechanisms?

    .venv/bin/python scripts/mutation_study.py [--only M4 M7 ...] [--workers 2] [--out _build/mutations.md]

Each mutation is one small edit (a snippet replaced by another) to a copy of the package in a temporary folder;
the fast suite (``-m "not slow and not site"``) then runs against that copy (``PYTHONPATH`` puts it before the
installed package) and every failing test is listed. A mutation "survives" when no test fails. The edits are
checked before anything runs: a snippet that no longer exists in the code is an error, not a silent survivor.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "code" / "skipnet"

# id: (what it breaks, file in the package, snippet, replacement)
MUTATIONS = {
    "M1": ("block returns F(x), not F(x) + x", "models.py",
           "        return self.post(self.branch(x) + self.shortcut(x))", "        return self.post(self.branch(x))"),
    "M2": ("zero-gamma init dropped", "branch.py",
           "nn.init.zeros_(self.norms[-1].weight)           # the branch starts at exactly zero", "pass"),
    "M3": ("a lesion deletes the shortcut instead of the branch", "probes/lesions.py",
           "return self.block.post(self.block.shortcut(x))", "return self.block.post(self.block.branch(x))"),
    "M4": ("path sampling uses n - k branches instead of k", "probes/paths.py",
           "random_subsets(graph.n, k, n_samples, gen)", "random_subsets(graph.n, graph.n - k, n_samples, gen)"),
    "M4b": ("PathGraph swaps the skip and branch routes", "probes/paths.py",
            "route = self.via_branch[i] if i in use_branch else self.via_skip[i]",
            "route = self.via_skip[i] if i in use_branch else self.via_branch[i]"),
    "M5": ("pre-LN block drops the add of its attention", "transformer.py",
           "x = x + self.attn(self.ln_1(x))\n        return", "x = self.attn(self.ln_1(x))\n        return"),
    "M5b": ("post-LN block drops the add of its attention", "transformer.py",
            "x = self.ln_1(x + self.attn(x))", "x = self.ln_1(self.attn(x))"),
    "M6": ("seed_everything always seeds 0", "runtime.py",
           "seed = check_seed(seed)\n", "seed = check_seed(seed) * 0\n"),
    "M7": ("stochastic-depth survival uniform instead of linear in depth", "models.py",
           "survival = 1.0 - cfg.drop_prob * (index + 1) / cfg.n_blocks", "survival = 1.0 - cfg.drop_prob"),
    "M8": ("Fixup without its rescale of the inner branch weights", "branch.py",
           "w.weight.data.mul_(L ** (-1.0 / (2 * m - 2)))", "pass"),
    "M9": ("Trainer ignores grad_clip", "train.py",
           "if c.grad_clip is not None:\n            torch.nn.utils.clip_grad_norm_",
           "if False:\n            torch.nn.utils.clip_grad_norm_"),
    "M10": ("lesion evaluator resumes at the last deleted block", "probes/lesions.py",
            "model, first = self.model, deleted[0]", "model, first = self.model, deleted[-1]"),
    "M11": ("ReZero alpha starts at 1", "branch.py",
            "self.alpha = _Scalar(0.0, multiply=True)", "self.alpha = _Scalar(1.0, multiply=True)"),
    "M12": ("identity_share's cosine against the bottom gradient", "probes/jacobian.py",
            "top = grads[-1].flatten()", "top = grads[0].flatten()"),
    "M13": ("a race in worker processes keeps the untrained weights here", "race.py",
            '        t.model.load_state_dict(state["model"])', "        pass"),
    "M14": ("the useful-noise verdict compares another image with itself", "experiments/verdict.py",
            '    other, delete, _ = pair(acc("other image"), acc("delete"))',
            '    other, delete, _ = pair(acc("delete"), acc("delete"))'),
    # single-line bugs in the glue between tested probes and what the book stores or prints
    "N7": ("the stream probe's ridge penalty not scaled by the number of examples", "probes/streams.py",
           "reg = ridge * len(A) * torch.eye(", "reg = ridge * torch.eye("),
    "N8": ("lesions recalibrated on the test images they are scored on", "experiments/ensemble_trials.py",
           "X, y, calib = data.X_test.to(dev), data.y_test.to(dev), data.X_train.to(dev)",
           "X, y, calib = data.X_test.to(dev), data.y_test.to(dev), data.X_test.to(dev)"),
    "N9": ("verdicts pair the two sides by position in value order, not by seed", "experiments/verdict_base.py",
           "    return (np.array([a[s] for s in seeds], dtype=np.float64), "
           "np.array([b[s] for s in seeds], dtype=np.float64),",
           "    return (np.sort([a[s] for s in seeds]).astype(np.float64), "
           "np.array([b[s] for s in seeds], dtype=np.float64),"),
    "N10": ("the race's gradient ratio read at the first block, not the stem", "experiments/highway_trained.py",
            "np.log(g[:, 0] / g[:, -1])", "np.log(g[:, 1] / g[:, -1])"),
    "N11": ("glue rounds NumPy scalars to two decimals", "notebook.py",
            "    if isinstance(value, np.generic):\n        return value.item()",
            "    if isinstance(value, np.generic):\n        return round(value.item(), 2)"),
}


def mutated_copy(mid: str, into: Path) -> Path:
    _, rel, old, new = MUTATIONS[mid]
    target = into / "skipnet"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    path = target / rel
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{mid}: the snippet {old!r} occurs {text.count(old)} times in {rel}; update the study")
    path.write_text(text.replace(old, new))
    return into


def run_suite(pythonpath: Path | None, workers: int) -> tuple[list[str], int, float]:
    env = dict(os.environ, MPLBACKEND="Agg")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-m", "not slow and not site", "-q", "-rf", "-p", "no:cacheprovider",
           "-n", str(workers), "tests",
           # the copy is imported from the temporary folder on purpose: that test would fail for every mutation
           "--deselect", "tests/test_repository.py::test_package_is_imported_from_the_repository"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    failed = sorted(set(re.findall(r"^FAILED (\S+)", out.stdout, re.M)))
    return failed, out.returncode, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=list(MUTATIONS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "mutations.md")
    args = ap.parse_args()
    import torch
    cpu = f"{platform.processor() or platform.machine()}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}"
    baseline, code, seconds = run_suite(None, args.workers)
    if code != 0:
        print(f"the fast suite fails WITHOUT any mutation ({baseline}); fix that first", file=sys.stderr)
        return 1
    lines = [f"# Mutation study ({time.strftime('%Y-%m-%d')}, {cpu})", "",
             f"Fast suite unmutated: passes in {seconds:.0f} s.", "",
             "| mutation | what it breaks | caught? | failing tests |", "|---|---|---|---|"]
    survivors = []
    for mid in args.only:
        with tempfile.TemporaryDirectory() as tmp:
            failed, code, seconds = run_suite(mutated_copy(mid, Path(tmp)), args.workers)
        if not failed and code != 0:
            failed = [f"(pytest exit {code}: collection error)"]
        caught = bool(failed)
        if not caught:
            survivors.append(mid)
        shown = ", ".join(f.split("::", 1)[-1] for f in failed[:6]) + (f" and {len(failed) - 6} more" if len(failed) > 6 else "")
        lines.append(f"| {mid} | {MUTATIONS[mid][0]} | {'yes (' + str(len(failed)) + ')' if caught else '**survived**'} "
                     f"| {shown} |")
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
