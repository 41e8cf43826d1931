"""Multi-seed sweeps for the chapter *An ensemble of relatively shallow paths* -> book/data/ensemble_*.json.

    .venv/bin/python scripts/precompute_ensemble.py --seeds 0 1 2 3 4                 # every part
    .venv/bin/python scripts/precompute_ensemble.py --seeds 0 1 2 3 4 --parts lesions trials

Parts (each file records the command that wrote it):

* ``gaps``: plain/residual nets of depth 8, 20 and 56 with evaluations every 5 steps -> ensemble_gaps.json
  (the evaluation histories: the generalization gap).
* ``lesions``: residual-56, residual-56 with stochastic depth, residual-20, plain-20 -> ensemble_lesions.json
  (single deletions, k random deletions with their sets, k disjoint swaps with their Kendall distances, and for
  the residual nets swaps with block 1 held in place) and ensemble_streams.json (linear probes, also on a fixed
  number of principal components, and branch / stream sizes; plus a fresh residual-56 with calibrated BN).
* ``paths``: Veit et al.'s sampled estimate of the gradient by path length -> ensemble_paths.json.
* ``trials``: -> ensemble_spectra.json (the exact path-length spectrum of trained, fresh, zero-gamma and
  stochastic-depth nets), ensemble_recal.json (lesions with BN recalibrated), ensemble_noise.json (branch outputs
  replaced by another image's or by matched noise; the refinement cosine), ensemble_short.json (training through
  only k random blocks a step, and its update-only control), ensemble_members.json (five residual-8 nets as a real
  ensemble, members deleted).
* ``truncated``: Veit et al.'s causal test done by length: residual-56 trained on the exact gradient of the
  backward paths of at most K branches (skipnet.probes.path_spectrum.LengthTruncation), and the same with the
  gradient rescaled each step to the full gradient's norm, beside normal training -> ensemble_truncated.json.

On one core shared with other jobs: about 10 minutes a seed for ``lesions trials`` (53 minutes for seeds 0-4).

Every study of one seed is stored at once in ``ensemble[_<parts>][.<tag>].parts/`` (skipnet.sweep.Sweep): a killed
run restarted with the same command resumes at the first unfinished seed and ends with the same files.
``--seeds 1000-1009 --tag confirm`` (the seeds ``scripts/sweeps.py confirm`` checks are fresh) writes ``ensemble_<name>.confirm.json`` beside the exploratory files (a confirmation
on fresh seeds).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from skipnet.data import load_digits
from skipnet.experiments import ensemble as E
from skipnet.experiments import ensemble_trials as T
from skipnet.probes.lesions import recalibrated
from skipnet.store import parse_seeds, tagged
from skipnet.sweep import SweepMismatch, start_sweep

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "book" / "data"

PARTS = ("gaps", "lesions", "paths", "trials", "truncated")
LESION_NETS = [(56, True, 0.0), (56, True, 0.5), (20, True, 0.0), (20, False, 0.0)]   # (depth, residual, drop_prob)
GAP_NETS = [(8, False), (8, True), (20, False), (20, True), (56, False), (56, True)]
N_SAMPLES = 10          # random block sets (or swap orders) per k
SWAP_KS = {27: [0, 1, 2, 4, 8, 12], 9: [0, 1, 2, 3]}           # disjoint pairs: at most 12 (27 blocks), 3 (9 blocks)
PATH_SAMPLES = 10       # random paths per length (Veit's estimate)
RECAL_KS = [2, 4, 8, 13]
NOISE_MS = {27: [1, 2, 4, 6, 9, 13, 27], 9: [1, 2, 3, 4, 6, 9]}
SHORT = [(3, "paths"), (7, "paths"), (13, "paths"), (7, "updates")]
MEMBERS = 5             # residual-8 nets in the real ensemble (seeds 5 s .. 5 s + 4 for sweep seed s)
ZERO_GAMMA = E.ENSEMBLE_MODEL.with_(init="zero_gamma")
TRUNCATED = [(1, False), (1, True), (2, False), (2, True), (4, False), (4, True)]   # (K, norm-matched)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", default=["0", "1", "2", "3", "4"], help="seeds and ranges A-B, e.g. 10-19")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--out", default=str(DATA))
    ap.add_argument("--tag", default=None, help="write ensemble_<name>.<tag>.json beside the exploratory files")
    ap.add_argument("--restart", action="store_true", help="discard the stored pieces of an unfinished run")
    args = ap.parse_args(argv)
    args.seeds = parse_seeds(args.seeds)
    if args.tag is not None:
        tagged(DATA / "x.json", args.tag)                 # checks the tag
    return args


def command_for(args: argparse.Namespace) -> str:
    """The command that (re)makes the files of this run: rerunning it resumes or repeats the run."""
    parts = set(args.parts)
    command = "python scripts/precompute_ensemble.py --seeds " + " ".join(map(str, args.seeds))
    if parts != set(PARTS):
        command += " --parts " + " ".join(p for p in PARTS if p in parts)
    if Path(args.out).resolve() != DATA.resolve():
        command += " --out " + shlex.quote(args.out)
    if args.tag:
        command += " --tag " + args.tag
    return command


def main(argv=None) -> int:
    args = parse_args(argv)
    out, parts = Path(args.out), set(args.parts)
    command = command_for(args)
    config = {"model": E.ENSEMBLE_MODEL.as_dict(), "train": E.DEFAULT_TRAIN.as_dict(), "seeds": args.seeds,
              "lesion_nets": LESION_NETS, "gap_nets": GAP_NETS, "n_samples": N_SAMPLES, "swap_ks": SWAP_KS,
              "path_samples": PATH_SAMPLES, "path_batch": T.SPECTRUM_BATCH, "probe_dims": E.PROBE_DIMS,
              "recal_ks": RECAL_KS, "noise_ms": NOISE_MS, "short": SHORT, "members": MEMBERS,
              "short_train": T.DEFAULT_TRAIN.with_(eval_every=0).as_dict()}
    if "truncated" in parts:
        config["truncated"] = TRUNCATED
    data = load_digits()
    files = {name: {} for name in ("gaps", "lesions", "streams", "paths", "spectra", "recal", "noise", "short",
                                   "members", "truncated")}
    wanted = {"gaps": {"gaps"}, "lesions": {"lesions", "streams"}, "paths": {"paths"},
              "trials": {"spectra", "recal", "noise", "short", "members"}, "truncated": {"truncated"}}
    written = [name for name in files if name in set().union(*(wanted[p] for p in parts))]
    outputs = {name: tagged(out / f"ensemble_{name}.json", args.tag) for name in written}
    run_name = "ensemble" if parts == set(PARTS) else "ensemble_" + "+".join(p for p in PARTS if p in parts)
    try:
        state = tagged(out / f"{run_name}.json", args.tag).with_suffix(".parts")
        sweep = start_sweep(outputs.values(), command, config, args.seeds, script=__file__, tag=args.tag,
                            restart=args.restart, state=state)
    except SweepMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if sweep is None:
        return 0
    t_start = time.perf_counter()
    with sweep:
        for seed in args.seeds:                 # every study of one seed is one stored piece (they share the nets)
            got = sweep.run(seed, (), lambda seed=seed: one_seed(seed, parts, data))
            for name, labels in got.items():
                for label, records in labels.items():
                    files[name].setdefault(label, []).extend(records)
            sweep.seed_done(seed)
            print(f"seed {seed} stored after {time.perf_counter() - t_start:.0f} s", flush=True)
        sweep.finish({outputs[name]: files[name] for name in written})
    print(f"done in {time.perf_counter() - t_start:.0f} s ({sweep.seconds:.0f} s of computing)")
    return 0


def one_seed(seed: int, parts: set, data) -> dict:
    """Every study of ``parts`` for one seed: ``{file name: {label: [record]}}``."""
    files = {}

    def put(name, label, seed, record):
        files.setdefault(name, {}).setdefault(label, []).append({"seed": seed, **record})

    trained = {}
    if "gaps" in parts:
        for depth, residual in GAP_NETS:
            net = E.train_net(depth, residual, seed=seed, data=data)
            trained[(depth, residual, 0.0)] = net
            put("gaps", net.label, seed, {"seconds": net.seconds, "status": net.history.status,
                                          "evals": net.history.evals})
            print(f"seed {seed} {net.label}: {net.history.status}, train loss {net.train_loss:.4f}, "
                  f"test acc {net.test_acc:.3f}, {net.seconds:.1f} s", flush=True)
    if parts & {"lesions", "paths", "trials"}:
        for depth, residual, drop in LESION_NETS:
            net = trained.get((depth, residual, drop)) or E.train_net(depth, residual, seed=seed, drop_prob=drop,
                                                                      data=data)
            trained[(depth, residual, drop)] = net
            t0 = time.perf_counter()
            n = net.model.n_blocks
            if "lesions" in parts:
                study = E.lesion_study(net.net, data, net.label, n_samples=N_SAMPLES, swap_ks=SWAP_KS[n],
                                       seed=seed, fixed_swaps=residual)
                put("lesions", net.label, seed, study.as_dict())
                put("streams", net.label, seed, E.stream_study(net.net, data, net.label).as_dict())
            if "paths" in parts and residual:
                put("paths", net.label, seed, E.path_study(net.net, data, n_samples=PATH_SAMPLES,
                                                           seed=seed).as_dict())
            print(f"seed {seed} {net.label}: test acc {net.test_acc:.3f} ({net.seconds:.0f} s), "
                  f"studies {time.perf_counter() - t0:.1f} s", flush=True)
    if "lesions" in parts:
        fresh = E.ENSEMBLE_MODEL.build(seed)
        calibrated, _ = recalibrated(fresh, data.X_train)
        put("streams", "residual-56, fresh", seed, E.stream_study(calibrated, data, "residual-56, fresh").as_dict())
    if "trials" in parts:
        trials(seed, data, trained, put)
    if "truncated" in parts:
        truncated(seed, data, trained, put)
    return files


def truncated(seed, data, trained, put) -> None:
    r56 = trained.get((56, True, 0.0)) or E.train_net(56, True, seed=seed, model=E.ENSEMBLE_MODEL,
                                                     train=T.DEFAULT_TRAIN.with_(eval_every=0), data=data)
    put("truncated", "normal", seed, {"K": 27, "norm_match": False, "test_acc": r56.test_acc,
                                      "train_loss": r56.train_loss, "status": r56.status, "seconds": r56.seconds})
    for K, matched in TRUNCATED:
        run = T.train_truncated(K, matched, seed=seed, data=data)
        put("truncated", f"K={K}" + (" (norm-matched)" if matched else ""), seed,
            {"K": K, "norm_match": matched, "test_acc": run.test_acc, "train_loss": run.train_loss,
             "status": run.status, "seconds": run.seconds, "median_scale": run.extra["median_scale"]})
        print(f"seed {seed} truncated K={K} matched={matched}: test acc {run.test_acc:.3f}, {run.seconds:.0f} s",
              flush=True)


def trials(seed, data, trained, put) -> None:
    t0 = time.perf_counter()
    r56, sd, r20, p20 = (trained[k] for k in LESION_NETS)
    fresh56, fresh20 = E.ENSEMBLE_MODEL.build(seed), E.ENSEMBLE_MODEL.with_(depth=20).build(seed)
    zg = E.train_net(56, True, seed=seed, model=ZERO_GAMMA, data=data)
    spectra = {"residual-56": (r56.net, {}), "residual-56 (drop 0.5)": (sd.net, {}),
               "residual-56 (zero-gamma)": (zg.net, {}), "residual-20": (r20.net, {}),
               "residual-56, fresh, BN off": (fresh56, {}), "residual-56, fresh, batch statistics": (fresh56,
                                                                                                   {"bn": "batch"}),
               "residual-56, fresh, calibrated BN": (fresh56, {"calibrate": True}),
               "residual-56, trained, batch statistics": (r56.net, {"bn": "batch"}),
               "residual-56 (zero-gamma), fresh": (ZERO_GAMMA.build(seed), {}),
               "residual-20, fresh, calibrated BN": (fresh20, {"calibrate": True})}
    for label, (model, kw) in spectra.items():
        put("spectra", label, seed, T.spectrum_study(model, data, seed, label=label, **kw).as_dict())
    put("spectra", "zero-gamma run", seed, {"test_acc": zg.test_acc, "train_loss": zg.train_loss,
                                            "status": zg.status, "seconds": zg.seconds})
    print(f"seed {seed} spectra {time.perf_counter() - t0:.0f} s", flush=True)
    for run in (r56, r20, p20):
        t1 = time.perf_counter()
        put("recal", run.label, seed, T.recal_study(run.net, data, run.label, RECAL_KS, N_SAMPLES, seed).as_dict())
        print(f"seed {seed} recal {run.label} {time.perf_counter() - t1:.0f} s", flush=True)
    t1 = time.perf_counter()
    for run in (r56, r20, sd):
        n = run.model.n_blocks
        rec = {"all": T.noise_study(run.net, data, NOISE_MS[n], N_SAMPLES, seed),
               "cos": T.refinement_study(run.net, data)}
        if run is not sd:
            rec["no_first"] = T.noise_study(run.net, data, NOISE_MS[n], N_SAMPLES, seed, exclude_first=True)
        put("noise", run.label, seed, rec)
    calibrated, _ = recalibrated(E.ENSEMBLE_MODEL.build(seed), data.X_train)
    put("noise", "residual-56, fresh", seed, {"cos": T.refinement_study(calibrated, data)})
    print(f"seed {seed} noise {time.perf_counter() - t1:.0f} s", flush=True)
    put("short", "normal", seed, {"k": 27, "mode": "normal", "test_acc": r56.test_acc, "train_loss": r56.train_loss,
                                  "status": r56.status, "seconds": r56.seconds})
    for k, mode in SHORT:
        run = T.train_short_paths(k, mode, seed=seed, data=data)
        put("short", f"k={k} ({mode})", seed, {"k": k, "mode": mode, "test_acc": run.test_acc,
                                               "train_loss": run.train_loss, "status": run.status,
                                               "seconds": run.seconds})
        print(f"seed {seed} short k={k} {mode}: test acc {run.test_acc:.3f}, {run.seconds:.0f} s", flush=True)
    members = [E.train_net(8, True, seed=MEMBERS * seed + j, data=data) for j in range(MEMBERS)]
    put("members", "residual-8", seed, {"member_seeds": [m.seed for m in members],
                                        "seconds": sum(m.seconds for m in members),
                                        **T.ensemble_deletion([m.net for m in members], data.X_test, data.y_test)})
    print(f"seed {seed} trials {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
