"""Multi-seed sweeps for the chapter *An ensemble of relatively shallow paths* -> book/data/ensemble_*.json.

    .venv/bin/python scripts/precompute_ensemble.py --seeds 0 1 2 3 4

For each seed: train residual-56, residual-56 with stochastic depth, residual-20 and plain-20 (the
lesion, path and stream studies), and plain/residual nets of depth 8, 20 and 56 with evaluations
every 5 steps (the generalization gap). Writes

* ensemble_lesions.json: per net and seed, the LesionStudy (single deletions, k random deletions, swaps);
* ensemble_paths.json: per residual net and seed, the PathStudy (gradient by path length);
* ensemble_streams.json: per net and seed, the StreamStudy (linear probes, branch / stream sizes);
* ensemble_gaps.json: per net and seed, the evaluation history (train / test loss and accuracy).

About 80 s a seed on one idle core.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from skipnet.data import load_digits
from skipnet.experiments import ensemble as E
from skipnet.store import save_result

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "book" / "data"

LESION_NETS = [(56, True, 0.0), (56, True, 0.5), (20, True, 0.0), (20, False, 0.0)]   # (depth, residual, drop_prob)
GAP_NETS = [(8, False), (8, True), (20, False), (20, True), (56, False), (56, True)]
N_SAMPLES = 10          # random block sets (or swap orders) per k
SWAP_KS = [0, 1, 2, 3, 4, 6, 8, 12, 16]
PATH_SAMPLES = 10       # random paths per length


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", default=str(DATA))
    args = ap.parse_args(argv)
    out = Path(args.out)
    command = "python scripts/precompute_ensemble.py --seeds " + " ".join(map(str, args.seeds))
    config = {"model": E.DEFAULT_MODEL.as_dict(), "train": E.DEFAULT_TRAIN.as_dict(), "seeds": args.seeds,
              "lesion_nets": LESION_NETS, "gap_nets": GAP_NETS, "n_samples": N_SAMPLES, "swap_ks": SWAP_KS,
              "path_samples": PATH_SAMPLES, "path_batch": 128}
    data = load_digits()
    lesions, paths, streams, gaps = {}, {}, {}, {}
    t_start = time.perf_counter()
    trained = {}
    for seed in args.seeds:
        for depth, residual in GAP_NETS:
            net = E.train_net(depth, residual, seed=seed, data=data)
            trained[(depth, residual, 0.0)] = net
            gaps.setdefault(net.label, []).append({"seed": seed, "seconds": net.seconds, "status": net.history.status,
                                                   "evals": net.history.evals})
            print(f"seed {seed} {net.label}: {net.history.status}, train loss {net.train_loss:.4f}, "
                  f"test acc {net.test_acc:.3f}, {net.seconds:.1f} s", flush=True)
        for depth, residual, drop in LESION_NETS:
            net = trained.get((depth, residual, drop)) or E.train_net(depth, residual, seed=seed, drop_prob=drop, data=data)
            t0 = time.perf_counter()
            study = E.lesion_study(net.net, data, net.label, n_samples=N_SAMPLES,
                                   swap_ks=SWAP_KS if residual else SWAP_KS[:5], seed=seed)
            lesions.setdefault(net.label, []).append({"seed": seed, **study.as_dict()})
            streams.setdefault(net.label, []).append({"seed": seed, **E.stream_study(net.net, data, net.label).as_dict()})
            if residual:
                p = E.path_study(net.net, data, n_samples=PATH_SAMPLES, seed=seed)
                paths.setdefault(net.label, []).append({"seed": seed, **p.as_dict()})
            print(f"seed {seed} {net.label}: intact {study.intact:.3f}, median single {study.median_single:.3f}, "
                  f"studies {time.perf_counter() - t0:.1f} s", flush=True)
        trained.clear()
        seconds = time.perf_counter() - t_start
        for name, d in (("lesions", lesions), ("paths", paths), ("streams", streams), ("gaps", gaps)):
            save_result(out / f"ensemble_{name}.json", d, config, command, seconds)
    print(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
