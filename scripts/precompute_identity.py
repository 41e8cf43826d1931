"""Precompute the multi-seed sweeps of the chapter *The identity mapping* (book/identity.md).

    python scripts/precompute_identity.py --section variants --seeds 5   # one section
    python scripts/precompute_identity.py --seeds 5                      # every section (use the seeds below)
    python scripts/precompute_identity.py --section fit --seeds 1000-1009 --tag confirm   # fresh seeds, own file

Writes book/data/identity_<section>.json (skipnet.store.save_result: command, config, data). Sections, the seeds
the book uses and the wall time of the stored run (one thread, nice 10, on the shared 2-core project machine while
other jobs ran: upper bounds):

    fit              5 seeds  20 min   identity fit over depth, lr 0.05
    fit_fair         3 seeds  10 min   the same with a learning-rate sweep, and on the lifted stream [x, -x]
    variants         5 seeds  34 min   He et al. (2016) Tables 1 and 2 on the 110-layer MLP
    variants_fair    5 seeds  11 min   the 1x1 shortcut started at I / orthogonal; placements with a norm before
                                       the classifier (5 seeds) or a zero classifier (3 seeds)
    lambda           3 seeds  10 min   the shortcut lambda x over lambda and depth
    decode           5 seeds  12 min   linear probes of residual, plain and dense MLPs (8 and 16 blocks)
    zero_gamma       5 seeds   4 min   residual-20/56, standard and zero-gamma, 10 epochs, branch sizes
    zero_gamma_long  3 seeds  17 min   the same for 40 epochs
    init             5 seeds   7 min   no normalization, four branch inits, lr 0.05
    init_lr          3 seeds  10 min   the same over learning rates
    rezero_alpha     5 seeds   2 min   ReZero at lr 0.05 with its largest alpha logged every step
    variants_lr      3 seeds  25 min   every ranked shortcut and placement at lr 0.01, 0.02, 0.05 (lr 0.1 is
                                       stored in variants / variants_fair): the ranking best against best
    variants_lr_top  3 seeds   3 min   the variants whose best rate is the grid's top, 0.1, at 0.2 and 0.5:
                                       does the grid's edge flatter the ratios to the identity?
    variants_lr_edge 3 seeds   3 min   the variants still best at 0.5, the top of that extended grid (and the
                                       identity), at 1.0 and 2.0: is 0.5x + 0.5F(x) only short of its rate?
    init_zero_head   3 seeds   3 min   the standard init without normalization, classifier started at 0, over lr
    decode_control   5 seeds   8 min   the read-back's controls: residual 8 / 16 blocks with each write read
                                       from the stream without it; plain 8 / 16 read state against state

Each finished run of one seed is stored at once in ``identity_<section>[.<tag>].parts/``: a killed run restarted
with the same command resumes there and ends with the same file (skipnet.sweep.Sweep); ``--tag NAME`` writes
``identity_<section>.<NAME>.json`` beside the exploratory file (a confirmation on fresh seeds). The "seconds"
stored in each file is the computing time of the runs that made it. The chapter re-runs seed 0 of some
of them live, and tests/test_identity_claims.py checks the chapter's claims on the stored seeds.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from skipnet.data import load_digits
from skipnet.experiments.identity import (BRANCH_MODEL, INIT_LRS, INIT_VARIANTS, LONG_TRAIN, NO_NORM_MODEL,
                                          NO_NORM_TRAIN, IdentityFitConfig, final_rel_error, fit_identity, init_config,
                                          train_digits, train_init_traced)
from skipnet.experiments.degradation import DEFAULT_TRAIN
from skipnet.experiments.identity_sum import (DECODE_KINDS, DECODE_TRAIN, LAMBDA_BLOCKS, LAMBDAS, decode_row,
                                              lambda_row)
from skipnet.experiments.identity_variants import (FAIR_VARIANTS, STUDY_MODEL, STUDY_TRAIN, VARIANTS, summarize,
                                                   train_traced, train_variant)
from skipnet.probes.branches import branch_stats, shortcut_product_norm
from skipnet.checks import check_int
from skipnet.store import parse_seeds, seeds_argument, tagged
from skipnet.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "book" / "data"
SECTIONS = ("fit", "variants", "zero_gamma", "init", "fit_fair", "zero_gamma_long", "init_lr", "variants_fair",
            "decode", "lambda", "rezero_alpha", "variants_lr", "decode_control", "init_zero_head", "variants_lr_top",
            "variants_lr_edge")
DECODE_BLOCKS = (8, 16)
FIT_BLOCKS = (1, 2, 4, 8, 16, 32)
FAIR_BLOCKS = (1, 4, 16)
FAIR_LRS = (0.05, 0.1, 0.2, 0.5)
VARIANT_LRS = (0.01, 0.02, 0.05)          # with the stored 0.1: one grid for every ranked variant
LR_VARIANTS = ("identity", "conv1x1_identity", "conv1x1_orthogonal", "conv1x1", "scale", "scale_both",
               "exclusive_gate_0", "exclusive_gate_6", "shortcut_gate_0", "shortcut_gate_6", "dropout",
               "post", "bn_after_add", "relu_before_add", "relu_only_pre", "plain")
TOP_LRS = (0.2, 0.5)                      # above the grid, for the variants whose best rate is its top (0.1)
TOP_VARIANTS = ("identity", "scale_both", "exclusive_gate_6", "shortcut_gate_6", "bn_after_add", "relu_only_pre")
EDGE_LRS = (1.0, 2.0)                     # above the extended grid, for the variants still best at its top (0.5)
EDGE_VARIANTS = ("identity", "scale_both", "exclusive_gate_6", "relu_only_pre")
ZERO_HEAD_LRS = (1e-3, 5e-3, 0.02, 0.05)
ZG_DEPTHS = (20, 56)
ZG_INITS = ("standard", "zero_gamma")


def _r(x, n=6):
    return None if x is None else float(np.round(float(x), n))


def section_fit(seeds, log, start):
    cfg = IdentityFitConfig()
    sweep = start({"fit": cfg.as_dict(), "n_blocks": FIT_BLOCKS, "seeds": list(seeds)})

    def run(cell, seed):
        n_blocks, residual = cell
        f = fit_identity(n_blocks, residual, seed, cfg)
        steps, err = f.curve("rel_error")
        log(f"fit n_blocks={n_blocks} residual={residual} seed={seed}: {err[0]:.3g} -> {final_rel_error(f):.3g}")
        return {"n_blocks": n_blocks, "residual": residual, "seed": seed, "status": f.status,
                "steps": steps, "rel_error": [_r(v) for v in err], "seconds": round(f.seconds, 2)}
    return {"runs": sweep.grid([(n, r) for n in FIT_BLOCKS for r in (False, True)], run)}


def section_fit_fair(seeds, log, start):
    """The identity fit without the plain stack's handicaps: a learning-rate sweep for both stacks, and the
    lifted task (stream [x, -x]) where a ReLU block can pass negative pixels."""
    sweep = start({"fit": IdentityFitConfig().as_dict(), "n_blocks": FAIR_BLOCKS, "lrs": FAIR_LRS,
                   "lift": [False, True], "seeds": list(seeds)})

    def run(cell, seed):
        lift, n_blocks, residual, lr = cell
        f = fit_identity(n_blocks, residual, seed, IdentityFitConfig(lr=lr, lift=lift, eval_every=300))
        err = f.curve("rel_error")[1]
        final = final_rel_error(f)
        log(f"fit_fair lift={lift} n_blocks={n_blocks} residual={residual} lr={lr} seed={seed}: "
            f"{err[0]:.3g} -> {final:.3g}")
        return {"lift": lift, "n_blocks": n_blocks, "residual": residual, "lr": lr, "seed": seed,
                "status": f.status, "rel_error_init": _r(err[0]),
                "rel_error": None if final == float("inf") else _r(final), "seconds": round(f.seconds, 2)}
    cells = [(lift, n, r, lr) for lift in (False, True) for n in FAIR_BLOCKS for r in (False, True) for lr in FAIR_LRS]
    return {"runs": sweep.grid(cells, run)}


def section_variants(seeds, log, start):
    sweep = start({"model": STUDY_MODEL.as_dict(), "train": STUDY_TRAIN.as_dict(), "seeds": list(seeds),
                   "variants": {k: v.fields for k, v in VARIANTS.items()}})

    def run(key, seed):
        r = train_variant(key, seed)
        if seed != seeds[0]:
            r["loss"] = None                          # keep one curve per variant (the first seed): small file
        log(f"variant {key} seed={seed}: {r['status']} test_err={r['test_err']}")
        return r
    runs = sweep.grid(list(VARIANTS), run)
    return {"runs": runs, "summary": summarize(runs)}


def _branch_fields(net, at_init, X_test) -> dict:
    """Per-block branch sizes and cosines of a trained net and of its initialization, plain and mean-centred."""
    out = {}
    for suffix, model, train_mode in (("", net, False), ("_init", at_init, True)):
        for c, tag in ((False, ""), (True, "_c")):
            st = branch_stats(model, X_test, train_mode=train_mode, centre=c)
            out[f"rel_norm{tag}{suffix}"] = [_r(v, 5) for v in st.rel_norm]
            out[f"cosine{tag}{suffix}"] = [_r(v, 5) for v in st.cosine]
    return out


def _zero_gamma_rows(seeds, log, start, train, tag):
    X_test = load_digits().X_test
    sweep = start({"model": BRANCH_MODEL.as_dict(), "train": train.as_dict(), "depths": ZG_DEPTHS,
                   "inits": ZG_INITS, "seeds": list(seeds)})

    def one(cell, seed):
        depth, init = cell
        cfg = BRANCH_MODEL.with_(depth=depth, init=init)
        at_init = cfg.build(seed)
        run = train_digits(cfg, seed, train)
        row = run.row()
        row.update({"depth": depth, "init": init, "loss": [_r(v, 5) for v in run.history.loss]})
        if train.eval_every:
            row["evals"] = [{k: _r(v) for k, v in e.items()} for e in run.history.evals]
        row.update(_branch_fields(run.net, at_init, X_test))
        log(f"{tag} depth={depth} init={init} seed={seed}: train_loss={row['train_loss']:.4f} "
            f"median rel norm {np.median(row['rel_norm']):.3f} ({run.seconds:.0f} s)")
        return row
    return {"runs": sweep.grid([(d, i) for d in ZG_DEPTHS for i in ZG_INITS], one)}


def section_variants_fair(seeds, log, start):
    """The confounded comparisons rerun (``FAIR_VARIANTS``): the 1x1 shortcut started at I or orthogonal, with
    the spectral norm of the product of its 54 maps after every step; every placement with a norm before the
    classifier; every placement with a zero-initialized classifier (the first three seeds)."""
    sweep = start({"model": STUDY_MODEL.as_dict(), "train": STUDY_TRAIN.as_dict(), "seeds": list(seeds),
                   "variants": {k: v.fields for k, v in FAIR_VARIANTS.items()}})

    def run(key, seed):
        probe = shortcut_product_norm if FAIR_VARIANTS[key].group == "shortcut_fair" else None
        r = train_traced(key, seed, probe)
        if probe:
            r["prod_norm"] = [float(f"{x:.4g}") for x in r.pop("trace")]
        log(f"variant {key} seed={seed}: {r['status']} test_err={r['test_err']} first loss {r['first_loss']} "
            f"max loss {r['max_loss']} ({r['seconds']:.0f} s)")
        return r
    runs = sweep.grid(list(FAIR_VARIANTS), run, seeds_for=lambda key: seeds if FAIR_VARIANTS[key].group !=
                      "placement_zero_head" else seeds[:3])
    return {"runs": runs, "summary": summarize(runs)}


def section_decode(seeds, log, start):
    """Linear probes of the stream of residual, plain and dense MLPs of 8 and 16 blocks at matched parameters."""
    sweep = start({"train": DECODE_TRAIN.as_dict(), "n_blocks": DECODE_BLOCKS, "kinds": DECODE_KINDS,
                   "seeds": list(seeds), "probe": "ridge, standardized features, lam = 1e-2 N, test R^2"})

    def run(cell, seed):
        n_blocks, kind = cell
        r = decode_row(kind, n_blocks, seed)
        top = r["decode"][str(n_blocks)]
        log(f"decode {kind} n_blocks={n_blocks} seed={seed}: test_err={r['test_err']:.3f} top: x0 {top['x0']:.3f} "
            f"writes min {min(top['writes']):.3f} class {top['class_acc']:.3f} ({r['seconds']:.0f} s)")
        return r
    return {"runs": sweep.grid([(n, k) for n in DECODE_BLOCKS for k in DECODE_KINDS], run)}


def section_decode_control(seeds, log, start):
    """The controls of the read-back (:func:`skipnet.probes.decode.decodability`): each write F_k read from
    x_L - F_k (residual), and the earlier states x_k read from x_L (residual and plain), on the decode networks."""
    kinds = ("residual", "plain")
    sweep = start({"train": DECODE_TRAIN.as_dict(), "n_blocks": DECODE_BLOCKS, "kinds": kinds, "seeds": list(seeds),
                   "probe": "ridge, standardized features, lam = 1e-2 N, test R^2; writes also read from x_L - F_k"})

    def run(cell, seed):
        n_blocks, kind = cell
        r = decode_row(kind, n_blocks, seed, layers=(n_blocks,))
        top = r["decode"][str(n_blocks)]
        abl = top.get("writes_ablated")
        log(f"decode_control {kind} n_blocks={n_blocks} seed={seed}: writes min {min(top['writes']):.3f}"
            + (f", without the term min {min(abl):.3f}" if abl else "") + f" ({r['seconds']:.0f} s)")
        return r
    return {"runs": sweep.grid([(n, k) for n in DECODE_BLOCKS for k in kinds], run)}


def section_lambda(seeds, log, start):
    """The shortcut y = lambda x + F(x) over lambda and depth (the trainability map)."""
    sweep = start({"model": STUDY_MODEL.as_dict(), "train": STUDY_TRAIN.as_dict(), "lambdas": LAMBDAS,
                   "n_blocks": LAMBDA_BLOCKS, "seeds": list(seeds)})

    def run(cell, seed):
        n_blocks, lam = cell
        r = lambda_row(lam, n_blocks, seed)
        log(f"lambda {lam} n_blocks={n_blocks} seed={seed}: {r['status']} test_err={r['test_err']} "
            f"({r['seconds']:.0f} s)")
        return r
    return {"runs": sweep.grid([(n, lam) for n in LAMBDA_BLOCKS for lam in LAMBDAS], run)}


def section_zero_gamma(seeds, log, start):
    return _zero_gamma_rows(seeds, log, start, DEFAULT_TRAIN, "zero_gamma")


def section_zero_gamma_long(seeds, log, start):
    """The same four networks trained four times longer (40 epochs): a budget at which all of them converge."""
    return _zero_gamma_rows(seeds, log, start, LONG_TRAIN, "zero_gamma_long")


def section_init(seeds, log, start):
    sweep = start({"model": NO_NORM_MODEL.as_dict(), "train": NO_NORM_TRAIN.as_dict(), "seeds": list(seeds),
                   "inits": INIT_VARIANTS})

    def one(key, seed):
        run = train_digits(init_config(key), seed, NO_NORM_TRAIN, keep_model=False)
        row = run.row()
        row.update({"init": key, "loss": [_r(v, 5) for v in run.history.loss]})
        log(f"init {key} seed={seed}: {row['status']} train_loss={row['train_loss']}")
        return row
    return {"runs": sweep.grid(list(INIT_VARIANTS), one)}


def section_init_lr(seeds, log, start):
    """The no-normalization inits over learning rates (``INIT_LRS``); ReZero's largest alpha logged each step."""
    sweep = start({"model": NO_NORM_MODEL.as_dict(), "train": NO_NORM_TRAIN.as_dict(), "seeds": list(seeds),
                   "inits": INIT_VARIANTS, "lrs": INIT_LRS})

    def one(cell, seed):
        key, lr = cell
        run = train_init_traced(key, seed, lr)
        row = run.row()
        row.update({"init": key, "lr": lr, "first_loss": _r(run.history.loss[0], 4) if run.history.loss else None,
                    "loss": [_r(v, 4) for v in run.history.loss]})
        if "alpha_max" in run.extra:
            row["alpha_max"] = [_r(v, 4) for v in run.extra["alpha_max"]]
        log(f"init_lr {key} lr={lr} seed={seed}: {row['status']} train_loss={row['train_loss']} "
            f"({run.seconds:.0f} s)")
        return row
    return {"runs": sweep.grid([(key, lr) for key, lrs in INIT_LRS.items() for lr in lrs], one)}


def section_init_zero_head(seeds, log, start):
    """The starting-loss control of the placements applied to the standard no-normalization init: the classifier
    started at zero (every run starts at ln 10), over ``ZERO_HEAD_LRS``."""
    sweep = start({"model": NO_NORM_MODEL.as_dict(), "train": NO_NORM_TRAIN.as_dict(), "lrs": ZERO_HEAD_LRS,
                   "seeds": list(seeds), "init": "standard", "zero_head": True})

    def one(lr, seed):
        run = train_digits(init_config("standard", zero_head=True), seed, NO_NORM_TRAIN.with_(lr=lr), keep_model=False)
        row = run.row()
        row.update({"init": "standard", "zero_head": True, "lr": lr,
                    "first_loss": _r(run.history.loss[0], 4) if run.history.loss else None})
        log(f"init_zero_head lr={lr} seed={seed}: {row['status']} train_loss={row['train_loss']} "
            f"first loss {row['first_loss']} ({run.seconds:.0f} s)")
        return row
    return {"runs": sweep.grid(list(ZERO_HEAD_LRS), one)}


def section_rezero_alpha(seeds, log, start):
    """ReZero at the chapter's learning rate (0.05), every seed of the init sweep, with its largest alpha each step."""
    sweep = start({"model": NO_NORM_MODEL.as_dict(), "train": NO_NORM_TRAIN.as_dict(), "seeds": list(seeds)})

    def one(cell, seed):
        run = train_init_traced("rezero", seed, NO_NORM_TRAIN.lr)
        row = run.row()
        row.update({"init": "rezero", "lr": NO_NORM_TRAIN.lr, "loss": [_r(v, 4) for v in run.history.loss],
                    "alpha_max": [_r(v, 4) for v in run.extra["alpha_max"]]})
        log(f"rezero_alpha seed={seed}: {row['status']} train_loss={row['train_loss']} "
            f"max alpha {max(row['alpha_max']):.3g}")
        return row
    return {"runs": sweep.grid([()], one)}


def _variants_at_rates(name, variants, lrs, seeds, log, start, curves: bool):
    """Each of ``variants`` trained at every rate of ``lrs`` (STUDY_TRAIN with only lr changed); ``curves``: keep
    the loss curve of the first seed (else none, to keep the file small)."""
    sweep = start({"model": STUDY_MODEL.as_dict(), "train": STUDY_TRAIN.as_dict(), "lrs": lrs,
                   "variants": {k: {**VARIANTS, **FAIR_VARIANTS}[k].fields for k in variants},
                   "seeds": list(seeds)})

    def run(cell, seed):
        key, lr = cell
        r = train_variant(key, seed, train=STUDY_TRAIN.with_(lr=lr))
        r["lr"] = lr
        if not curves or seed != seeds[0]:
            r["loss"] = None
        log(f"{name} {key} lr={lr} seed={seed}: {r['status']} test_err={r['test_err']} ({r['seconds']:.0f} s)")
        return r
    return {"runs": sweep.grid([(k, lr) for k in variants for lr in lrs], run)}


def section_variants_lr(seeds, log, start):
    """Every variant the chapter ranks, at the learning rates ``VARIANT_LRS`` (the same budget, STUDY_TRAIN with only
    lr changed), so that each can be taken at its own best rate (the 0.1 runs are those of ``variants`` and
    ``variants_fair``). One loss curve per variant and rate (the first seed) keeps the file small."""
    return _variants_at_rates("variants_lr", LR_VARIANTS, VARIANT_LRS, seeds, log, start, curves=True)


def section_variants_lr_top(seeds, log, start):
    """The variants whose best rate on the grid is its largest, 0.1, trained at ``TOP_LRS``: the grid extended
    where its edge was the best rate (the chapter reads it together with ``variants_lr``)."""
    return _variants_at_rates("variants_lr_top", TOP_VARIANTS, TOP_LRS, seeds, log, start, curves=False)


def section_variants_lr_edge(seeds, log, start):
    """The variants whose best rate on the extended grid is still its largest, 0.5 (and the identity, their
    baseline), trained at ``EDGE_LRS``: halving the branch output also shrinks that branch's effective step, so a
    halving variant may need a larger rate than the grid offered."""
    return _variants_at_rates("variants_lr_edge", EDGE_VARIANTS, EDGE_LRS, seeds, log, start, curves=False)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", choices=("all",) + SECTIONS, default="all")
    ap.add_argument("--seeds", nargs="+", default=["5"],
                    help="one number N: seeds 0..N-1 (as the stored commands say); else seeds and ranges A-B, "
                         "e.g. 10-19 (a lone seed s: s-s)")
    ap.add_argument("--out", default=str(DATA))
    ap.add_argument("--tag", default=None, help="write identity_<section>.<tag>.json beside the exploratory file")
    ap.add_argument("--restart", action="store_true", help="discard the stored pieces of an unfinished run")
    args = ap.parse_args(argv)
    args.seeds = (list(range(check_int("seeds", int(args.seeds[0]), 1))) if len(args.seeds) == 1 and
                  args.seeds[0].isdigit() else parse_seeds(args.seeds))
    if args.tag is not None:
        tagged(DATA / "x.json", args.tag)                 # checks the tag
    return args


def command_for(args: argparse.Namespace, name: str) -> str:
    """The command that (re)makes section ``name``'s file: rerunning it resumes or repeats the run."""
    words = ["python scripts/precompute_identity.py", "--section", name, "--seeds", seeds_argument(args.seeds)]
    if Path(args.out).resolve() != DATA.resolve():
        words += ["--out", shlex.quote(args.out)]
    if args.tag:
        words += ["--tag", args.tag]
    return " ".join(words)


def main(argv=None) -> int:
    args = parse_args(argv)
    todo = SECTIONS if args.section == "all" else (args.section,)
    for name in todo:
        code = run_sweep(tagged(Path(args.out) / f"identity_{name}.json", args.tag), command_for(args, name),
                         args.seeds, lambda start, name=name: globals()[f"section_{name}"](
                             args.seeds, lambda m: print(m, flush=True), start),
                         script=__file__, tag=args.tag, restart=args.restart)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
