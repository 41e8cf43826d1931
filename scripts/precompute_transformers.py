"""Multi-seed sweeps of the chapter *Residual connections in Transformers (and the RNN question)*.

    python scripts/precompute_transformers.py [depth] [warmup] [triage] [noresid] [init] [recall] [--seeds 3]
        [--out book/data]

Writes, each with the exact command and configuration (one thread, CPU):
book/data/transformers_depth.json (no residual / post-LN / pre-LN across depth),
book/data/transformers_warmup.json (post-LN vs pre-LN with and without warm-up at a high lr),
book/data/transformers_triage.json (why post-LN needs warm-up: optimizers, inits and Admin, post-LN, 8 blocks, lr 1e-2,
no warm-up; each run with its stream's collapse at the end),
book/data/transformers_noresid.json (the no-residual encoder at 6 blocks across lr, and at the best lr for 5x the
steps, with its trained stream's collapse),
book/data/transformers_init.json (no training: gradient and stream norm against total depth; Liu's amplification),
book/data/transformers_recall.json (steps to solve recall within a 2000-step budget: tanh RNNs of two widths, LSTM
with and without forget gate, linear attention with and without decay, across sequence length and two lrs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from skipnet.experiments.transformers import (DEFAULT_MODEL, DEFAULT_TRAIN, NORESID_BLOCKS, NORESID_LONG,
                                              NORESID_LRS, SORT, VARIANTS, WARMUP_BLOCKS, WARMUP_LR, WARMUP_STEPS,
                                              collapse_row, sort_row, train_sort, variant_config)
from skipnet.experiments.transformers_rnn import (RECALL_BUDGET, RECALL_NETS, RNN_TRAIN, SOLVE_WINDOW, SOLVED_ACC,
                                                  STOP_ACC, solve_recall, solve_row)
from skipnet.experiments.transformers_warmup import (AMPLIFICATION_EPS, PRE_ADAM_BATCHES, TRIAGE, amplification,
                                                     init_depth_sweep, train_triage, triage_row)
from skipnet.linear_attention import LinearAttentionConfig
from skipnet.store import save_result

N_BLOCKS = (1, 2, 4, 6, 8)
WARMUP_CONDITIONS = [("post", WARMUP_LR, 0), ("post", WARMUP_LR, WARMUP_STEPS), ("pre", WARMUP_LR, 0),
                     ("pre", WARMUP_LR, WARMUP_STEPS), ("post", 3e-3, 0)]    # (placement, lr, warm-up steps)
SEQ_LENS = (5, 10, 20, 40)
LA_SEQ_LENS = (5, 10, 20, 40, 100)       # linear attention is cheap (no loop over time): also T = 100
RECALL_LRS = (1e-3, 3e-3)
INIT_BLOCKS = (2, 4, 8, 16, 32, 64)
AMP_BLOCKS = (2, 4, 8, 16, 32)
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


def triage_sweep(seeds: list[int], log) -> tuple[list[dict], dict]:
    rows = []
    for name in TRIAGE:
        for s in seeds:
            row = triage_row(train_triage(name, seed=s), CURVE_EVERY)
            rows.append(row)
            log(f"{name} seed {s}: {row['status']} loss {row['train_loss']} r {row['r_final']:.1e} ({row['seconds']} s)")
    config = {"conditions": {k: {"model": m.as_dict(), "train": t.as_dict(), "pre_estimated_adam": p}
                             for k, (m, t, p) in TRIAGE.items()},
              "pre_adam_batches": PRE_ADAM_BATCHES, "seeds": seeds, "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}}
    return rows, config


def noresid_sweep(seeds: list[int], log) -> tuple[list[dict], dict]:
    model = variant_config("no residual", NORESID_BLOCKS)
    rows = []
    for lr in NORESID_LRS:
        for s in seeds:
            rows.append(collapse_row(train_sort(model, DEFAULT_TRAIN.with_(lr=lr), seed=s, label="no residual"),
                                     CURVE_EVERY))
            log(f"lr {lr} seed {s}: loss {rows[-1]['train_loss']:.3f} r {rows[-1]['r_final']:.1e} ({rows[-1]['seconds']} s)")
    best = min(NORESID_LRS, key=lambda lr: np.mean([r["train_loss"] for r in rows if r["lr"] == lr]))
    long = DEFAULT_TRAIN.with_(lr=best, steps=NORESID_LONG * DEFAULT_TRAIN.steps,
                               warmup_steps=NORESID_LONG * DEFAULT_TRAIN.warmup_steps)
    for s in seeds:
        rows.append(collapse_row(train_sort(model, long, seed=s, label="no residual"), CURVE_EVERY))
        log(f"lr {best} x{NORESID_LONG} steps seed {s}: loss {rows[-1]['train_loss']:.3f} r {rows[-1]['r_final']:.1e}")
    config = {"model": model.as_dict(), "lrs": list(NORESID_LRS), "best_lr": best, "long_factor": NORESID_LONG,
              "train": DEFAULT_TRAIN.as_dict(), "long_train": long.as_dict(), "seeds": seeds,
              "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}}
    return rows, config


def init_sweep(seeds: list[int], log) -> tuple[dict, dict]:
    grads = init_depth_sweep(INIT_BLOCKS, seeds)
    log(f"gradient / stream-norm sweep: {len(grads)} rows")
    amp = []
    for init in ("depth", "standard"):
        for placement in ("post", "pre", "admin"):
            if placement == "admin" and init == "depth":
                continue
            for L in AMP_BLOCKS:
                model = DEFAULT_MODEL.with_(n_blocks=L, placement="post" if placement == "admin" else placement,
                                            init="admin" if placement == "admin" else init)
                for mode in ("random", "adamw"):
                    for s in seeds:
                        amp.append({"placement": model.placement, "init": model.init, "n_blocks": L, "mode": mode,
                                    "seed": s, "change": amplification(model, seed=s, mode=mode)})
            log(f"amplification {placement} {init} done")
    config = {"model": DEFAULT_MODEL.as_dict(), "grad_blocks": list(INIT_BLOCKS), "amp_blocks": list(AMP_BLOCKS),
              "amp_eps": AMPLIFICATION_EPS, "amp_lr": WARMUP_LR, "seeds": seeds}
    return {"grads": grads, "amplification": amp}, config


def recall_sweep(seeds: list[int], log) -> tuple[list[dict], dict]:
    """Every net at every lr, lengths in increasing order; once every seed fails at a length, longer lengths are
    not run for that net and lr (recall of the first of T tokens only gets harder with T)."""
    rows, skipped = [], []
    for label, net in RECALL_NETS.items():
        lengths = LA_SEQ_LENS if isinstance(net, LinearAttentionConfig) else SEQ_LENS
        for lr in RECALL_LRS:
            for i, seq_len in enumerate(lengths):
                new = [solve_row(solve_recall(net, seq_len, seed=s, lr=lr, label=label)) for s in seeds]
                rows += new
                log(f"{label} lr {lr} T {seq_len}: steps to solve {[r['steps_to_solve'] for r in new]} "
                    f"({sum(r['seconds'] for r in new):.0f} s)")
                if not any(r["solved"] for r in new):
                    skipped += [{"label": label, "lr": lr, "seq_len": n} for n in lengths[i + 1:]]
                    break
    config = {"nets": {k: v.as_dict() for k, v in RECALL_NETS.items()}, "seq_lens": list(SEQ_LENS),
              "la_seq_lens": list(LA_SEQ_LENS), "lrs": list(RECALL_LRS), "budget": RECALL_BUDGET,
              "solved_acc": SOLVED_ACC, "stop_acc": STOP_ACC, "window": SOLVE_WINDOW, "seeds": seeds,
              "train": RNN_TRAIN.as_dict(), "not_run_after_all_seeds_failed": skipped}
    return rows, config


SWEEPS = {"depth": depth_sweep, "warmup": warmup_sweep, "triage": triage_sweep, "noresid": noresid_sweep,
          "init": init_sweep, "recall": recall_sweep}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweeps", nargs="*", default=list(SWEEPS), choices=list(SWEEPS))
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..n-1 (default: 3; 5 for warmup and init)")
    ap.add_argument("--out", default="book/data")
    args = ap.parse_args()
    command = "python scripts/precompute_transformers.py " + " ".join(sys.argv[1:])
    for name in args.sweeps or list(SWEEPS):
        n = args.seeds or (5 if name in ("warmup", "init") else 3)
        t0 = time.perf_counter()
        rows, config = SWEEPS[name]([*range(n)], lambda m: print(f"[{name}] {m}", flush=True))
        path = save_result(Path(args.out) / f"transformers_{name}.json", rows, config, command.strip(),
                           seconds=round(time.perf_counter() - t0, 1))
        print(f"wrote {path} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
