"""Multi-seed sweeps of the chapter *Residual connections in Transformers (and the RNN question)*.

    python scripts/precompute_transformers.py [depth] [warmup] [triage] [controls] [initctl] [noresid] [init] [recall] [race] [--seeds 3]
        [--out book/data] [--tag confirm] [--restart]

Writes, each with the exact command and configuration (one thread, CPU):
book/data/transformers_depth.json (no residual / post-LN / pre-LN across depth),
book/data/transformers_warmup.json (post-LN vs pre-LN with and without warm-up at a high lr),
book/data/transformers_triage.json (why post-LN needs warm-up: optimizers, inits and Admin, post-LN, 8 blocks, lr 1e-2,
no warm-up; each run with its stream's collapse at the end),
book/data/transformers_controls.json (the triage's controls made to test what they name: SGD without clipping at a
lr whose first step is as large as AdamW's, with and without warm-up; the second moment pre-estimated over the
RAdam paper's 2,000 iterations, with the step counter reset or running on),
book/data/transformers_initctl.json (the residual encoders with the standard initialization, the no-skip encoder's
own: post-LN at 6 blocks, the control that differs from the no-skip encoder in the skip alone, and pre-LN and post-LN
at 1 block, where the plain encoder ends lower),
book/data/transformers_noresid.json (the no-residual encoder at 6 blocks across lr, and at the best lr for 5x the
steps, with its trained stream's collapse),
book/data/transformers_init.json (no training: gradient and stream norm against total depth; Liu's amplification),
book/data/transformers_race.json (the fair race: the LSTM without forget gate to T = 100, the LSTM with forget bias
3, a GRU, a gate-free additive RNN and linear attention without positions, same lengths and lr for all),
book/data/transformers_recall.json (steps to solve recall within a 2000-step budget: tanh RNNs of two widths, LSTM
with and without forget gate, linear attention with and without decay, across sequence length and two lrs).

Each finished run is stored at once in ``transformers_<sweep>[.<tag>].parts/`` (skipnet.sweep.Sweep): a killed run
restarted with the same command resumes there and ends with the same file. ``--seeds 1000-1009 --tag confirm`` writes
``transformers_<sweep>.confirm.json`` beside the exploratory file (a confirmation on fresh seeds).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from skipnet.experiments.transformers import (SORT_MODEL, DEFAULT_TRAIN, NORESID_BLOCKS, NORESID_LONG,
                                              NORESID_LRS, SORT, VARIANTS, WARMUP_BLOCKS, WARMUP_LR, WARMUP_STEPS,
                                              collapse_row, sort_row, train_sort, variant_config)
from skipnet.experiments.transformers_rnn import (FAIR_RACE_LENS, FAIR_RACE_LR, FAIR_RACE_NETS, RECALL_BUDGET, RECALL_NETS, RNN_TRAIN, SOLVE_WINDOW, SOLVED_ACC,
                                                  STOP_ACC, solve_recall, solve_row)
from skipnet.experiments.transformers_warmup import (AMPLIFICATION_EPS, CONTROLS, PRE_ADAM_BATCHES, TRIAGE,
                                                     amplification, first_step_norms, init_depth_sweep, train_control,
                                                     train_triage, triage_row)
from skipnet.linear_attention import LinearAttentionConfig
from skipnet.checks import check_int
from skipnet.store import interleave, parse_seeds, seeds_argument, tagged
from skipnet.sweep import run_sweep

N_BLOCKS = (1, 2, 4, 6, 8)
WARMUP_CONDITIONS = [("post", WARMUP_LR, 0), ("post", WARMUP_LR, WARMUP_STEPS), ("pre", WARMUP_LR, 0),
                     ("pre", WARMUP_LR, WARMUP_STEPS), ("post", 3e-3, 0)]    # (placement, lr, warm-up steps)
SEQ_LENS = (5, 10, 20, 40)
LA_SEQ_LENS = (5, 10, 20, 40, 100)       # linear attention is cheap (no loop over time): also T = 100
RECALL_LRS = (1e-3, 3e-3)
INIT_BLOCKS = (2, 4, 8, 16, 32, 64)
AMP_BLOCKS = (2, 4, 8, 16, 32)
CURVE_EVERY = 5                 # keep every 5th step of each loss curve (small files)


def depth_sweep(seeds: list[int], log, start) -> list[dict]:
    sweep = start({"model": SORT_MODEL.as_dict(), "variants": VARIANTS, "n_blocks": list(N_BLOCKS), "seeds": seeds,
                   "train": DEFAULT_TRAIN.as_dict(), "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}})

    def one(cell, s):
        n, name = cell
        run = train_sort(variant_config(name, n), DEFAULT_TRAIN, seed=s, label=name)
        log(f"{n} blocks {name} seed {s}: {run.status} loss {run.train_loss} ({run.seconds:.1f} s)")
        return sort_row(run, CURVE_EVERY)
    return sweep.grid([(n, name) for n in N_BLOCKS for name in VARIANTS], one)


def warmup_sweep(seeds: list[int], log, start) -> list[dict]:
    sweep = start({"model": SORT_MODEL.with_(n_blocks=WARMUP_BLOCKS).as_dict(),
                   "conditions_placement_lr_warmup": WARMUP_CONDITIONS, "seeds": seeds,
                   "train": DEFAULT_TRAIN.as_dict(), "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}})

    def one(cell, s):
        placement, lr, warm = cell
        train = DEFAULT_TRAIN.with_(lr=lr, warmup_steps=warm)
        run = train_sort(SORT_MODEL.with_(n_blocks=WARMUP_BLOCKS, placement=placement), train, seed=s,
                         label=f"{placement}-LN")
        log(f"{placement} lr {lr} warm-up {warm} seed {s}: {run.status} loss {run.train_loss} ({run.seconds:.1f} s)")
        return sort_row(run, CURVE_EVERY)
    return sweep.grid(WARMUP_CONDITIONS, one)


def triage_sweep(seeds: list[int], log, start) -> list[dict]:
    sweep = start({"conditions": {k: {"model": m.as_dict(), "train": t.as_dict(), "pre_estimated_adam": p}
                                  for k, (m, t, p) in TRIAGE.items()},
                   "pre_adam_batches": PRE_ADAM_BATCHES, "seeds": seeds,
                   "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}})

    def one(name, s):
        row = triage_row(train_triage(name, seed=s), CURVE_EVERY)
        log(f"{name} seed {s}: {row['status']} loss {row['train_loss']} r {row['r_final']:.1e} ({row['seconds']} s)")
        return row
    return sweep.grid(list(TRIAGE), one)


def controls_sweep(seeds: list[int], log, start) -> list[dict]:
    """The triage's controls redone to test what they name: SGD unclipped (at lr 0.1 and at the lr whose first step
    is as large as AdamW's), and the pre-estimated second moment over the RAdam paper's 2,000 iterations."""
    sweep = start({"conditions": {k: {"model": m.as_dict(), "train": t.as_dict(), "pre_estimation": p,
                                      "sgd_lr_matched_to_adamw_first_step": matched}
                                  for k, (m, t, p, matched) in CONTROLS.items()},
                   "seeds": seeds, "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}})

    def one(name, s):
        run = train_control(name, seed=s)
        row = {**triage_row(run, CURVE_EVERY), **first_step_norms(CONTROLS[name][0].build(s), seed=s)}
        log(f"{name} seed {s}: lr {row['lr']:.3g} {row['status']} loss {row['train_loss']} r {row['r_final']:.1e} "
            f"({row['seconds']} s)")
        return row
    return sweep.grid(list(CONTROLS), one)


INITCTL_CELLS = [(NORESID_BLOCKS, "post-LN"), (1, "post-LN"), (1, "pre-LN")]    # (blocks, variant), init "standard"


def initctl_sweep(seeds: list[int], log, start) -> list[dict]:
    """The depth sweep's residual encoders with the standard initialization (no depth-aware branch scale), which is
    the initialization the encoder without skips has: at 6 blocks post-LN then differs from it in the skip alone."""
    sweep = start({"model": SORT_MODEL.with_(init="standard").as_dict(), "variants": VARIANTS,
                   "cells_blocks_variant": [list(c) for c in INITCTL_CELLS], "init": "standard", "seeds": seeds,
                   "train": DEFAULT_TRAIN.as_dict(), "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}})

    def one(cell, s):
        n, name = cell
        run = train_sort(variant_config(name, n).with_(init="standard"), DEFAULT_TRAIN, seed=s, label=name)
        log(f"{n} blocks {name} standard init seed {s}: {run.status} loss {run.train_loss} ({run.seconds:.1f} s)")
        return {**sort_row(run, CURVE_EVERY), "init": "standard"}
    return sweep.grid(INITCTL_CELLS, one)


def noresid_sweep(seeds: list[int], log, start) -> tuple[list[dict], dict]:
    """Every lr for every seed; then, at the lr with the lowest mean loss over the seeds, 5x the steps."""
    model = variant_config("no residual", NORESID_BLOCKS)

    def config(best=None, long=None):         # the choice made from the results goes in the stored config too
        c = {"model": model.as_dict(), "lrs": list(NORESID_LRS), "best_lr": best, "long_factor": NORESID_LONG,
             "train": DEFAULT_TRAIN.as_dict(), "long_train": long, "seeds": seeds,
             "task": {"seq_len": SORT.seq_len, "vocab": SORT.vocab}}
        return c if best is not None else {k: v for k, v in c.items() if k not in ("best_lr", "long_train")}
    sweep = start(config())

    def one(lr, s):
        row = collapse_row(train_sort(model, DEFAULT_TRAIN.with_(lr=lr), seed=s, label="no residual"), CURVE_EVERY)
        log(f"lr {lr} seed {s}: loss {row['train_loss']:.3f} r {row['r_final']:.1e} ({row['seconds']} s)")
        return row
    rows = sweep.grid(NORESID_LRS, one, mark=False)
    best = min(NORESID_LRS, key=lambda lr: np.mean([r["train_loss"] for r in rows if r["lr"] == lr]))
    long = DEFAULT_TRAIN.with_(lr=best, steps=NORESID_LONG * DEFAULT_TRAIN.steps,
                               warmup_steps=NORESID_LONG * DEFAULT_TRAIN.warmup_steps)

    def one_long(cell, s):
        row = collapse_row(train_sort(model, long, seed=s, label="no residual"), CURVE_EVERY)
        log(f"lr {best} x{NORESID_LONG} steps seed {s}: loss {row['train_loss']:.3f} r {row['r_final']:.1e}")
        return row
    rows += sweep.grid([("long", best)], one_long)
    return rows, config(best, long.as_dict())


def init_sweep(seeds: list[int], log, start) -> dict:
    sweep = start({"model": SORT_MODEL.as_dict(), "grad_blocks": list(INIT_BLOCKS), "amp_blocks": list(AMP_BLOCKS),
                   "amp_eps": AMPLIFICATION_EPS, "amp_lr": WARMUP_LR, "seeds": seeds})
    amp_cells = [(init, placement, L, mode) for init in ("depth", "standard") for placement in ("post", "pre", "admin")
                 if not (placement == "admin" and init == "depth") for L in AMP_BLOCKS for mode in ("random", "adamw")]

    def one(cell, s):
        if cell == ("grads",):
            rows = init_depth_sweep(INIT_BLOCKS, [s])
            log(f"gradient / stream-norm sweep, seed {s}: {len(rows)} rows")
            return rows
        init, placement, L, mode = cell
        model = SORT_MODEL.with_(n_blocks=L, placement="post" if placement == "admin" else placement,
                                    init="admin" if placement == "admin" else init)
        if (L, mode) == (AMP_BLOCKS[-1], "adamw"):
            log(f"amplification {placement} {init}, seed {s} done")
        return {"placement": model.placement, "init": model.init, "n_blocks": L, "mode": mode, "seed": s,
                "change": amplification(model, seed=s, mode=mode)}
    values = sweep.grid([("grads",)] + amp_cells, one)
    return {"grads": interleave(values[:len(seeds)]), "amplification": values[len(seeds):]}


def recall_sweep(seeds: list[int], log, start) -> tuple[list[dict], dict]:
    """Every net at every lr, lengths in increasing order; once every seed fails at a length, longer lengths are
    not run for that net and lr (recall of the first of T tokens only gets harder with T). Which lengths run
    depends on every seed's result, so this sweep is resumable run by run, in that order, not seed by seed."""
    def config(skipped=None):
        c = {"nets": {k: v.as_dict() for k, v in RECALL_NETS.items()}, "seq_lens": list(SEQ_LENS),
             "la_seq_lens": list(LA_SEQ_LENS), "lrs": list(RECALL_LRS), "budget": RECALL_BUDGET,
             "solved_acc": SOLVED_ACC, "stop_acc": STOP_ACC, "window": SOLVE_WINDOW, "seeds": seeds,
             "train": RNN_TRAIN.as_dict(), "not_run_after_all_seeds_failed": skipped}
        return c if skipped is not None else {k: v for k, v in c.items() if k != "not_run_after_all_seeds_failed"}
    sweep = start(config())
    rows, skipped = [], []
    for label, net in RECALL_NETS.items():
        lengths = LA_SEQ_LENS if isinstance(net, LinearAttentionConfig) else SEQ_LENS
        for lr in RECALL_LRS:
            for i, seq_len in enumerate(lengths):
                new = [sweep.run(s, (label, lr, seq_len), lambda s=s: solve_row(solve_recall(net, seq_len, seed=s,
                                                                                             lr=lr, label=label)))
                       for s in seeds]
                rows += new
                log(f"{label} lr {lr} T {seq_len}: steps to solve {[r['steps_to_solve'] for r in new]} "
                    f"({sum(r['seconds'] for r in new):.0f} s)")
                if not any(r["solved"] for r in new):
                    skipped += [{"label": label, "lr": lr, "seq_len": n} for n in lengths[i + 1:]]
                    break
    return rows, config(skipped)


def race_sweep(seeds: list[int], log, start) -> tuple[list[dict], dict]:
    """The fair race: every net of FAIR_RACE_NETS at the same lengths (to T = 100) and lr; as in the first race, once
    every seed fails at a length, the longer lengths are not run for that net."""
    def config(skipped=None):
        c = {"nets": {k: v.as_dict() for k, v in FAIR_RACE_NETS.items()}, "seq_lens": list(FAIR_RACE_LENS),
             "lr": FAIR_RACE_LR, "budget": RECALL_BUDGET, "solved_acc": SOLVED_ACC, "stop_acc": STOP_ACC,
             "window": SOLVE_WINDOW, "seeds": seeds, "train": RNN_TRAIN.as_dict(),
             "not_run_after_all_seeds_failed": skipped}
        return c if skipped is not None else {k: v for k, v in c.items() if k != "not_run_after_all_seeds_failed"}
    sweep = start(config())
    rows, skipped = [], []
    for label, net in FAIR_RACE_NETS.items():
        for i, seq_len in enumerate(FAIR_RACE_LENS):
            new = [sweep.run(s, (label, seq_len), lambda s=s: solve_row(solve_recall(net, seq_len, seed=s,
                                                                                     lr=FAIR_RACE_LR, label=label)))
                   for s in seeds]
            rows += new
            log(f"{label} T {seq_len}: steps to solve {[r['steps_to_solve'] for r in new]} "
                f"({sum(r['seconds'] for r in new):.0f} s)")
            if not any(r["solved"] for r in new):
                skipped += [{"label": label, "seq_len": n} for n in FAIR_RACE_LENS[i + 1:]]
                break
    return rows, config(skipped)


SWEEPS = {"depth": depth_sweep, "warmup": warmup_sweep, "triage": triage_sweep, "controls": controls_sweep,
          "initctl": initctl_sweep, "noresid": noresid_sweep,
          "init": init_sweep, "recall": recall_sweep, "race": race_sweep}
DEFAULT_SEEDS = {"warmup": 5, "init": 5}        # seeds 0..n-1; 3 for the others



def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweeps", nargs="*", default=list(SWEEPS), choices=list(SWEEPS))
    ap.add_argument("--seeds", nargs="+", default=None,
                    help="one number N: seeds 0..N-1 (default: 3; 5 for warmup and init); else seeds and ranges "
                         "A-B, e.g. 10-19 (a lone seed s: s-s)")
    ap.add_argument("--out", default="book/data")
    ap.add_argument("--tag", default=None, help="write transformers_<sweep>.<tag>.json beside the exploratory file")
    ap.add_argument("--restart", action="store_true", help="discard the stored pieces of an unfinished run")
    args = ap.parse_args(argv)
    args.sweeps = args.sweeps or list(SWEEPS)
    if args.seeds is not None:
        args.seeds = (list(range(check_int("seeds", int(args.seeds[0]), 1))) if len(args.seeds) == 1 and
                      args.seeds[0].isdigit() else parse_seeds(args.seeds))
    if args.tag is not None:
        tagged(Path("x.json"), args.tag)                   # checks the tag
    return args


def seeds_of(args: argparse.Namespace, name: str) -> list[int]:
    return args.seeds if args.seeds is not None else list(range(DEFAULT_SEEDS.get(name, 3)))


def command_for(args: argparse.Namespace, name: str) -> str:
    """The command that (re)makes sweep ``name``'s file: rerunning it resumes or repeats the run."""
    words = ["python scripts/precompute_transformers.py", name]
    if args.seeds is not None:
        words += ["--seeds", seeds_argument(args.seeds)]
    if args.out != "book/data":
        words += ["--out", shlex.quote(args.out)]
    if args.tag:
        words += ["--tag", args.tag]
    return " ".join(words)


def main(argv=None) -> int:
    args = parse_args(argv)
    for name in args.sweeps:
        code = run_sweep(tagged(Path(args.out) / f"transformers_{name}.json", args.tag), command_for(args, name),
                         seeds_of(args, name), lambda start, name=name: SWEEPS[name](
                             seeds_of(args, name), lambda m: print(f"[{name}] {m}", flush=True), start),
                         script=__file__, tag=args.tag, restart=args.restart)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
