"""Precompute the multi-seed sweeps of the chapter *The identity mapping* (book/identity.md).

    python scripts/precompute_identity.py                     # every section, 5 seeds
    python scripts/precompute_identity.py --section variants  # one section

Writes book/data/identity_<section>.json (skipnet.store.save_result: command, config, data).
Sections and their one-thread CPU cost (estimated from runs on the shared project machine): fit ~3 min,
variants ~6 min, zero_gamma ~2 min, init ~2 min; the "seconds" stored in each file is the wall time of the
run that made it, on a busy machine. The chapter re-runs seed 0 of some of them live, and
tests/test_identity_claims.py checks that those seeds still reproduce.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from skipnet.data import load_digits
from skipnet.experiments.identity import (BRANCH_MODEL, INIT_VARIANTS, NO_NORM_MODEL, NO_NORM_TRAIN,
                                          IdentityFitConfig, final_rel_error, fit_identity, init_config, train_digits)
from skipnet.experiments.degradation import DEFAULT_TRAIN
from skipnet.experiments.identity_variants import STUDY_MODEL, STUDY_TRAIN, VARIANTS, summarize, train_variant
from skipnet.probes.branches import branch_stats
from skipnet.store import save_result

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "book" / "data"
SECTIONS = ("fit", "variants", "zero_gamma", "init")
FIT_BLOCKS = (1, 2, 4, 8, 16, 32)
ZG_DEPTHS = (20, 56)
ZG_INITS = ("standard", "zero_gamma")


def _r(x, n=6):
    return None if x is None else float(np.round(float(x), n))


def section_fit(seeds, log):
    cfg = IdentityFitConfig()
    rows = []
    for n_blocks in FIT_BLOCKS:
        for residual in (False, True):
            for seed in seeds:
                f = fit_identity(n_blocks, residual, seed, cfg)
                steps, err = f.curve("rel_error")
                rows.append({"n_blocks": n_blocks, "residual": residual, "seed": seed, "status": f.status,
                             "steps": steps, "rel_error": [_r(v) for v in err], "seconds": round(f.seconds, 2)})
                log(f"fit n_blocks={n_blocks} residual={residual} seed={seed}: {err[0]:.3g} -> {final_rel_error(f):.3g}")
    return {"runs": rows}, {"fit": cfg.as_dict(), "n_blocks": FIT_BLOCKS, "seeds": list(seeds)}


def section_variants(seeds, log):
    runs = []
    for key in VARIANTS:
        for seed in seeds:
            r = train_variant(key, seed)
            if seed != seeds[0]:
                r["loss"] = None                      # keep one curve per variant (the first seed): small file
            runs.append(r)
            log(f"variant {key} seed={seed}: {r['status']} test_err={r['test_err']}")
    return ({"runs": runs, "summary": summarize(runs)},
            {"model": STUDY_MODEL.as_dict(), "train": STUDY_TRAIN.as_dict(), "seeds": list(seeds),
             "variants": {k: v.fields for k, v in VARIANTS.items()}})


def section_zero_gamma(seeds, log):
    X_test = load_digits().X_test
    rows = []
    for depth in ZG_DEPTHS:
        for init in ZG_INITS:
            cfg = BRANCH_MODEL.with_(depth=depth, init=init)
            for seed in seeds:
                at_init = branch_stats(cfg.build(seed), X_test, train_mode=True)
                run = train_digits(cfg, seed)
                st = branch_stats(run.net, X_test)
                row = run.row()
                row.update({"depth": depth, "init": init, "loss": [_r(v, 5) for v in run.history.loss],
                            "rel_norm": [_r(v, 5) for v in st.rel_norm], "cosine": [_r(v, 5) for v in st.cosine],
                            "rel_norm_init": [_r(v, 5) for v in at_init.rel_norm],
                            "cosine_init": [_r(v, 5) for v in at_init.cosine]})
                rows.append(row)
                log(f"zero_gamma depth={depth} init={init} seed={seed}: train_loss={row['train_loss']:.4f} "
                    f"median rel norm {st.median_rel_norm:.3f}")
    return {"runs": rows}, {"model": BRANCH_MODEL.as_dict(), "train": DEFAULT_TRAIN.as_dict(), "depths": ZG_DEPTHS,
                            "inits": ZG_INITS, "seeds": list(seeds)}


def section_init(seeds, log):
    rows = []
    for key in INIT_VARIANTS:
        for seed in seeds:
            run = train_digits(init_config(key), seed, NO_NORM_TRAIN, keep_model=False)
            row = run.row()
            row.update({"init": key, "loss": [_r(v, 5) for v in run.history.loss]})
            rows.append(row)
            log(f"init {key} seed={seed}: {row['status']} train_loss={row['train_loss']}")
    return {"runs": rows}, {"model": NO_NORM_MODEL.as_dict(), "train": NO_NORM_TRAIN.as_dict(), "seeds": list(seeds),
                            "inits": INIT_VARIANTS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", choices=("all",) + SECTIONS, default="all")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=str(DATA))
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds))
    todo = SECTIONS if args.section == "all" else (args.section,)
    for name in todo:
        t0 = time.perf_counter()
        data, config = globals()[f"section_{name}"](seeds, lambda m: print(m, flush=True))
        command = f"python scripts/precompute_identity.py --section {name} --seeds {args.seeds}"
        path = save_result(Path(args.out) / f"identity_{name}.json", data, config, command,
                           seconds=round(time.perf_counter() - t0, 1))
        print(f"wrote {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
