"""Precompute the stored sweeps of the opening chapter and *The gradient highway*.

    .venv/bin/python scripts/precompute_highway.py [degradation] [--seeds 0 1 2] [--depths 8 20 56]
    .venv/bin/python scripts/precompute_highway.py convergence --grid 8,14,20,26,32,38,44,56:0,1,2,3,4 --grid 110:0,1,2
    .venv/bin/python scripts/precompute_highway.py lr --lrs 0.003 0.01 0.03 0.1 0.3 --seeds 0 1 2
    .venv/bin/python scripts/precompute_highway.py intervention --seeds 0 1 2
    .venv/bin/python scripts/precompute_highway.py hessian --seeds 0 1 2
    .venv/bin/python scripts/precompute_highway.py chi --seeds 0 1 2
    .venv/bin/python scripts/precompute_highway.py chi --mean-field-only

Each sweep writes ``book/data/highway_<sweep>.json`` (or ``--out``) through :func:`skipnet.store.save_result`, with
this command and the configuration. CPU seconds on one loaded core (an idle one is about twice as fast):

* ``degradation``: plain and residual CNNs of 8, 20, 56 layers, the chapter's 10 epochs (about 800 s for 3 seeds);
* ``convergence``: the same networks at 8 ... 110 layers with 100 epochs, the step at which the training-batch
  loss first falls below 1, 0.5, 0.2 and 0.1 (:func:`~skipnet.experiments.degradation.convergence_run`);
* ``lr``: plain-56 and residual-56 at five peak learning rates, the chapter's budget;
* ``intervention``: plain-56 and residual-56 with SGD, with every conv weight held at its initial norm, with the
  explosion removed at the first step (each layer's gradient scaled by a factor fixed then), and with
  layer-wise relative (LARS-like) steps (:func:`~skipnet.experiments.degradation.intervention_run`);
* ``intervention_control``: the controls for the relative steps: plain-56 and residual-56 with relative steps
  equal across layers at SGD's own overall (explosion-dominated) step size (mode ``lars_matched``: balanced, larger
  steps), and plain-56 under SGD at smaller peak learning rates (imbalanced, smaller steps);
* ``hessian``: the Hessian's extreme eigenvalues at the trained weights (Lanczos on Hessian-vector products) and a
  filter-normalized loss slice, for plain-20, residual-20, residual-56 (and plain-56) after the chapter's budget;
* ``chi``: the gradient ratio over (weight gain, depth) of the chi phase diagram, three activations, three variants
  (about 250 s); with ``--mean-field-only``, only its mean-field columns (``predicted``, ``critical_gain``) are
  recomputed (a few seconds) and the stored measurements are kept, with the command that made them.

Each finished run is stored at once in ``<out>.parts/`` (:class:`skipnet.sweep.Sweep`): a killed run restarted with
the same command resumes there and ends with the same file as an uninterrupted one. ``--tag confirm`` (with fresh
``--seeds``, or fresh seeds in each ``--grid``) writes ``highway_<sweep>.confirm.json`` beside the exploratory file.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from skipnet.data import load_digits
from skipnet.experiments import degradation as dg
from skipnet.experiments import highway_chi as hwc
from skipnet.experiments import highway_trained as hwt
from skipnet.store import parse_seeds, save_result, tagged
from skipnet.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LRS = [0.003, 0.01, 0.03, 0.1, 0.3]
SWEEPS = ("degradation", "convergence", "lr", "intervention", "intervention_control", "hessian", "chi")


def _grid(text: str) -> tuple[list[int], list[int]]:
    depths, seeds = text.split(":")
    return [int(d) for d in depths.split(",")], parse_seeds(seeds.split(","), "--grid seeds")


def _rows_degradation(args, start, log):
    sweep = start({"function": "skipnet.experiments.degradation.race + degradation_row", "depths": args.depths,
                   "seeds": args.seeds, "model": dg.DEGRADATION_MODEL.as_dict(), "train": dg.DEFAULT_TRAIN.as_dict(),
                   "epoch_loss": "mean training-batch loss of each epoch (train mode)",
                   "train_loss": "full training set, eval mode, after the last step"})

    def one(depth, seed):
        return [log(dg.degradation_row(r)) for r in dg.race(depth, seed).values()]
    return [row for pair in sweep.grid(args.depths, one) for row in pair]


def _rows_convergence(args, start, log):
    grids = [_grid(g) for g in (args.grid or ["8,14,20,26,32,38,44,56:0,1,2"])]
    sweep = start({"function": "skipnet.experiments.degradation.convergence_run", "grid": grids, "epochs": args.epochs,
                   "thresholds": list(dg.THRESHOLDS), "model": dg.DEGRADATION_MODEL.as_dict(),
                   "train": dg.DEFAULT_TRAIN.with_(epochs=args.epochs).as_dict(),
                   "steps_to": "first step at which the mean training-batch loss of the last epoch of steps (11) is "
                               "below the threshold; null: not within the budget",
                   "stop": "a run stops at the end of the first epoch whose mean batch loss is below the lowest "
                           "threshold",
                   "train_loss": "full training set, eval mode, when the run stopped (null if not finite)"})
    last = {s: k for k, (_, seeds) in enumerate(grids) for s in seeds}      # the last grid that runs each seed
    rows = []
    for k, (depths, seeds) in enumerate(grids):
        for seed in seeds:                                   # a seed at a time: a cut-short sweep has whole seeds
            for depth in depths:
                for residual in (False, True):
                    rows.append(sweep.run(seed, (depth, residual), lambda d=depth, r=residual, s=seed:
                                          log(dg.convergence_run(d, r, s, epochs=args.epochs))))
            if last[seed] == k:
                sweep.seed_done(seed)
    return rows


def _rows_lr(args, start, log):
    sweep = start({"function": "skipnet.experiments.degradation.lr_row", "lrs": args.lrs, "depths": args.depths,
                   "seeds": args.seeds, "model": dg.DEGRADATION_MODEL.as_dict(), "train": dg.DEFAULT_TRAIN.as_dict()})

    def one(cell, seed):
        lr, depth = cell
        return [log(dg.lr_row(depth, residual, lr, seed)) for residual in (False, True)]
    return [row for pair in sweep.grid([(lr, d) for lr in args.lrs for d in args.depths], one) for row in pair]


def _rows_intervention(args, start, log):
    sweep = start({"function": "skipnet.experiments.degradation.intervention_run", "modes": list(dg.INTERVENTIONS),
                   "depth": args.depths[0], "seeds": args.seeds, "trust": dg.LARS_TRUST,
                   "model": dg.DEGRADATION_MODEL.as_dict(), "train": dg.DEFAULT_TRAIN.as_dict()})
    cells = [(mode, residual) for mode in dg.INTERVENTIONS for residual in (False, True)]
    return sweep.grid(cells, lambda cell, seed: log(dg.intervention_run(cell[0], args.depths[0], cell[1], seed)),
                      seed_major=True)


def _rows_intervention_control(args, start, log):
    small = args.lrs if args.lrs != DEFAULT_LRS else list(dg.SMALL_LRS)
    sweep = start({"function": "skipnet.experiments.degradation.intervention_run", "modes": list(dg.CONTROLS),
                   "depth": args.depths[0], "seeds": args.seeds, "small_lrs": small,
                   "cells": "every control at the chapter's learning rate, plain-56 and residual-56; plain-56 under "
                            "SGD at each smaller peak learning rate (imbalanced, smaller steps)",
                   "model": dg.DEGRADATION_MODEL.as_dict(), "train": dg.DEFAULT_TRAIN.as_dict()})
    cells = ([(mode, residual, dg.DEFAULT_TRAIN.lr) for mode in dg.CONTROLS for residual in (False, True)]
             + [("sgd", False, lr) for lr in small])

    def one(cell, seed):
        mode, residual, lr = cell
        return log(dg.intervention_run(mode, args.depths[0], residual, seed, train=dg.DEFAULT_TRAIN.with_(lr=lr)))
    return sweep.grid(cells, one, seed_major=True)


def _rows_hessian(args, start, log):
    sweep = start({"function": "skipnet.experiments.highway_trained.hessian_row", "nets": hwt.HESSIAN_NETS,
                   "seeds": args.seeds,
                   "n_examples": hwt.HESSIAN_EXAMPLES, "lanczos_steps": hwt.LANCZOS_STEPS,
                   "model": dg.DEGRADATION_MODEL.as_dict(), "train": dg.DEFAULT_TRAIN.as_dict(),
                   "slice": "filter-normalized slice, first seed only"})

    def one(cell, seed):
        return log(hwt.hessian_row(cell[0], cell[1], seed, slice_seed=0 if seed == args.seeds[0] else None))
    return sweep.grid(hwt.HESSIAN_NETS, one, seed_major=True)


def _rows_chi(args, start, log):
    sweep = start({"function": "skipnet.experiments.highway_chi.chi_phase", "seeds": args.seeds,
                   "gains": list(hwc.CHI_GAINS), "n_blocks": list(hwc.CHI_DEPTHS),
                   "activations": list(hwc.CHI_ACTIVATIONS), "variants": list(hwc.CHI_VARIANTS),
                   "n_examples": hwc.CHI_EXAMPLES, "width": hwc.CHI_WIDTH})

    def one(cell, seed):                                     # every measurement of one seed
        return hwc.chi_phase(seeds=[seed], progress=lambda f, text, _: print(f"seed {seed}: {f:.0%} {text}",
                                                                             flush=True))
    parts = sweep.grid([()], one)
    data = parts[0]
    data["seeds"] = list(args.seeds)
    for name, panel in data["panels"].items():               # measured: [depth][gain][seed]
        panel["measured"] = [[[p["panels"][name]["measured"][i][j][0] for p in parts] for j in range(len(row))]
                             for i, row in enumerate(panel["measured"])]
    return data


def _chi_mean_field_only(args):
    """The stored chi sweep at ``--out`` with its mean-field columns recomputed and its measurements kept."""
    from skipnet.store import load_result
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    rec = load_result(out)
    data, config = rec["data"], dict(rec["config"])
    config.pop("measured_by", None)
    theory = hwc.chi_predictions(data["gains"], data["n_blocks"], config["activations"], config["variants"])
    data["critical_gain"] = theory["critical_gain"]
    for key, panel in data["panels"].items():
        panel["predicted"] = theory["predicted"][key]
    measured_by = rec["config"].get("measured_by") or {k: rec[k] for k in ("command", "made_with", "created",
                                                                          "seconds")}
    config["measured_by"] = measured_by
    config["predicted"] = "skipnet.experiments.highway_chi.chi_predictions (recomputed; measured kept from measured_by)"
    return data, config


def parse_args(argv: list[str] | None = None) -> tuple[str, list[str], argparse.Namespace]:
    """(sweep, the argument words after it, the parsed arguments)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    sweep = argv.pop(0) if argv and argv[0] in SWEEPS else "degradation"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="seeds and ranges A-B, e.g. 10-19")
    one_depth = sweep in ("lr", "intervention", "intervention_control")
    ap.add_argument("--depths", type=int, nargs="+", default=[56] if one_depth else [8, 20, 56])
    ap.add_argument("--grid", action="append", help="convergence: DEPTHS:SEEDS, e.g. 8,20,56:0,1,2 or 110:10-19 "
                                                    "(repeatable)")
    ap.add_argument("--epochs", type=int, default=dg.LONG_EPOCHS)
    ap.add_argument("--mean-field-only", action="store_true",
                    help="chi: recompute only the mean-field columns of the stored sweep at --out, "
                         "keep the measurements")
    ap.add_argument("--lrs", type=float, nargs="+", default=DEFAULT_LRS,
                    help="lr: the peak learning rates; intervention_control: the smaller ones (default 0.003 0.01 0.03)")
    default_out = "highway_degradation.json" if sweep == "degradation" else f"highway_{sweep}.json"
    ap.add_argument("--out", type=Path, default=ROOT / "book" / "data" / default_out,
                    help="the output file (with --tag, its tagged name beside it)")
    ap.add_argument("--tag", default=None, help="write <out>.<tag>.json beside the exploratory file")
    ap.add_argument("--restart", action="store_true", help="discard the stored pieces of an unfinished run")
    args = ap.parse_args(argv)
    args.seeds = parse_seeds(args.seeds)
    if sweep == "convergence":          # the seeds of a convergence sweep are those of its grids
        args.seeds = list(dict.fromkeys(s for g in (args.grid or ["8,14,20,26,32,38,44,56:0,1,2"])
                                        for s in _grid(g)[1]))
    return sweep, argv, args


def command_for(sweep: str, argv: list[str], args: argparse.Namespace, out: Path) -> str:
    """The command to rerun: the words given, and ``--out`` (the untagged file) when they had none."""
    try:
        shown = out.resolve().relative_to(ROOT)
    except ValueError:
        shown = out
    words = ([sweep] if sweep != "degradation" else []) + [shlex.quote(a) for a in argv if a != "--restart"]
    if "--out" not in argv:
        words += ["--out", shlex.quote(str(shown))]
    return ".venv/bin/python scripts/precompute_highway.py " + " ".join(words)


def main(argv: list[str] | None = None) -> int:
    sweep, argv, args = parse_args(argv)
    base = args.out if args.out.is_absolute() else Path.cwd() / args.out
    out = tagged(base, args.tag)
    command = command_for(sweep, argv, args, base)
    if sweep == "chi" and args.mean_field_only:
        data, config = _chi_mean_field_only(args)
        save_result(out, data, config, command)
        print(f"wrote {out} (mean-field columns only)")
        return 0
    t0 = time.perf_counter()

    def log(row: dict) -> dict:
        brief = {k: v for k, v in row.items() if not isinstance(v, (list, dict)) or k == "steps_to"}
        print(f"[{time.perf_counter() - t0:.0f} s] {brief}", flush=True)
        return row

    data_note = f"load_digits() ({len(load_digits().X_train):,} train, {len(load_digits().X_test):,} test)"
    return run_sweep(out, command, args.seeds, lambda start: globals()[f"_rows_{sweep}"](args, start, log),
                     script=__file__, tag=args.tag, restart=args.restart, extra={"data": data_note})


if __name__ == "__main__":
    sys.exit(main())
