"""Precompute the multi-seed degradation table of *The gradient highway* (He et al. 2015, Fig. 1 analogue).

    .venv/bin/python scripts/precompute_highway.py [--seeds 0 1 2] [--depths 8 20 56] [--out book/data/highway_degradation.json]

Trains plain and residual CNNs (width 8, BN, ReLU after the addition; SGD Nesterov lr 0.1, 10 epochs,
12-step warm-up, cosine) at each depth and seed with
:func:`skipnet.experiments.degradation.degradation_table` and stores :func:`degradation_row` of each run, with this command and the
configuration, via :func:`skipnet.store.save_result`. About a minute of one-core compute for 3 seeds.
The chapter loads the file and re-runs seed 0 live; ``tests/test_highway.py`` re-runs a slice.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from skipnet.data import load_digits
from skipnet.experiments.degradation import DEFAULT_MODEL, DEFAULT_TRAIN, degradation_row, race
from skipnet.store import save_result

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "book" / "data" / "highway_degradation.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--depths", type=int, nargs="+", default=[8, 20, 56])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    rows = []
    for depth in args.depths:
        for seed in args.seeds:
            runs = race(depth, seed)
            rows += [degradation_row(r) for r in runs.values()]
            losses = ", ".join(f"{k} {r.train_loss:.4f}" for k, r in runs.items())
            print(f"depth {depth} seed {seed}: {losses} ({time.perf_counter() - t0:.0f} s)", flush=True)
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    try:
        shown = out.resolve().relative_to(ROOT)
    except ValueError:
        shown = out
    command = ".venv/bin/python scripts/precompute_highway.py " + " ".join(
        ["--seeds", *map(str, args.seeds), "--depths", *map(str, args.depths), "--out", shlex.quote(str(shown))])
    n_train = len(load_digits().X_train)
    config = {"function": "skipnet.experiments.degradation.race + degradation_row", "depths": args.depths,
              "seeds": args.seeds, "model": DEFAULT_MODEL.as_dict(), "train": DEFAULT_TRAIN.as_dict(),
              "data": f"load_digits() ({n_train:,} train)",
              "epoch_loss": "mean training-batch loss of each epoch (train mode)",
              "train_loss": "full training set, eval mode, after the last step"}
    save_result(out, rows, config, command, seconds=round(time.perf_counter() - t0, 1))
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
