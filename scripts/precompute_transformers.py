"""Multi-seed sweeps of the chapter *Residual connections in Transformers (and the RNN question)*.

    python scripts/precompute_transformers.py [depth] [warmup] [recall] [--seeds 3] [--out book/data]

Writes book/data/transformers_depth.json (no residual / post-LN / pre-LN across depth),
book/data/transformers_warmup.json (post-LN vs pre-LN with and without warm-up at a high lr) and
book/data/transformers_recall.json (tanh RNN vs LSTM with and without forget gate on the recall
task across sequence length), each with the exact command and configuration. One thread, CPU.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from skipnet.experiments.transformers import (DEFAULT_MODEL, DEFAULT_TRAIN, SORT, VARIANTS, WARMUP_BLOCKS,
                                              WARMUP_LR, WARMUP_STEPS, sort_row, train_sort, variant_config)
from skipnet.experiments.transformers_rnn import RNN_CELLS, RNN_TRAIN, recall_row, train_recall
from skipnet.store import save_result

N_BLOCKS = (1, 2, 4, 6, 8)
WARMUP_CONDITIONS = [("post", WARMUP_LR, 0), ("post", WARMUP_LR, WARMUP_STEPS), ("pre", WARMUP_LR, 0),
                     ("pre", WARMUP_LR, WARMUP_STEPS), ("post", 3e-3, 0)]    # (placement, lr, warm-up steps)
SEQ_LENS = (5, 10, 20, 40)
CURVE_EVERY = 5                 # keep every 5th step of each loss curve (small files)


def depth_sweep(seeds: list[int], log) -> tuple[list[dict], dict]:
    rows = []
    for n in N_BLOCKS:
        for name in VARIANTS:
            for s in seeds:
                run = train_sort(variant_config(name, n), DEFAULT_TRAIN, seed=s, label=name)
                rows.append(sort_row(run, CURVE_EVERY))
                log(f"{n} blocks {name} seed {s}: {run.status} loss {run.train_loss} ({run.seconds:.1f} s)")
    config = {"model": DEFAULT_MODEL.as_dict(), "variants": VARIANTS, "n_blocks": list(N_BLOCKS), "seeds": seeds,
              "train": DEFAULT_TRAIN.as_dict(), "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}}
    return rows, config


def warmup_sweep(seeds: list[int], log) -> tuple[list[dict], dict]:
    rows = []
    for placement, lr, warm in WARMUP_CONDITIONS:
        for s in seeds:
            train = DEFAULT_TRAIN.with_(lr=lr, warmup_steps=warm)
            run = train_sort(DEFAULT_MODEL.with_(n_blocks=WARMUP_BLOCKS, placement=placement), train, seed=s,
                             label=f"{placement}-LN")
            rows.append(sort_row(run, CURVE_EVERY))
            log(f"{placement} lr {lr} warm-up {warm} seed {s}: {run.status} loss {run.train_loss} ({run.seconds:.1f} s)")
    config = {"model": DEFAULT_MODEL.with_(n_blocks=WARMUP_BLOCKS).as_dict(),
              "conditions_placement_lr_warmup": WARMUP_CONDITIONS, "seeds": seeds, "train": DEFAULT_TRAIN.as_dict(),
              "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}}
    return rows, config


def recall_sweep(seeds: list[int], log) -> tuple[list[dict], dict]:
    rows = []
    for seq_len in SEQ_LENS:
        for label, cell in RNN_CELLS.items():
            for s in seeds:
                run = train_recall(cell, seq_len, seed=s, label=label)
                rows.append(recall_row(run, CURVE_EVERY))
                log(f"T {seq_len} {label} seed {s}: acc {run.train_acc} ({run.seconds:.1f} s)")
    config = {"cells": {k: v.as_dict() for k, v in RNN_CELLS.items()}, "seq_lens": list(SEQ_LENS), "seeds": seeds,
              "train": RNN_TRAIN.as_dict()}
    return rows, config


SWEEPS = {"depth": depth_sweep, "warmup": warmup_sweep, "recall": recall_sweep}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweeps", nargs="*", default=list(SWEEPS), choices=list(SWEEPS))
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..n-1 (default: 3; 5 for warmup)")
    ap.add_argument("--out", default="book/data")
    args = ap.parse_args()
    command = "python scripts/precompute_transformers.py " + " ".join(sys.argv[1:])
    for name in args.sweeps or list(SWEEPS):
        n = args.seeds or (5 if name == "warmup" else 3)
        t0 = time.perf_counter()
        rows, config = SWEEPS[name]([*range(n)], lambda m: print(f"[{name}] {m}", flush=True))
        path = save_result(Path(args.out) / f"transformers_{name}.json", rows, config, command.strip(),
                           seconds=round(time.perf_counter() - t0, 1))
        print(f"wrote {path} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
