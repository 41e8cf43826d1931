"""The stored sweeps: their seeds and commands, their confirmations, and the commands of a confirmation.

    python scripts/sweeps.py                                  # every stored sweep (deciding ones marked *)
    python scripts/sweeps.py confirm --seeds 100-109          # the commands that rerun every deciding sweep on
                                                              # fresh seeds into <name>.confirm.json
    python scripts/sweeps.py confirm identity_fit highway_lr --seeds 100-109 --tag confirm  # named sweeps

A *deciding* sweep is one that a verdict reads (``skipnet.experiments.verdict.SOURCES``) or that a chapter's family
of claims reads (each chapter module's ``FAMILY_SWEEPS``). A confirmation reruns it
at a frozen commit on seeds disjoint from the stored ones (each precompute script's ``--seeds ... --tag NAME``)
and stores ``<name>.<tag>.json`` beside ``<name>.json``: same format, its own command and commit, read by the same
analysis (``skipnet.store.load_sweep(name, tag)``). The commands resume seed by seed when restarted.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from skipnet.experiments import ensemble_claims, highway_trained, identity_sum, transformers
from skipnet.experiments.verdict import SOURCES
from skipnet.store import DATA, format_seeds, load_result, parse_seeds, tagged

#: Every sweep a verdict or a chapter's family of claims reads.
DECIDING = tuple(sorted({n for names in SOURCES.values() for n in names}
                        | set(highway_trained.FAMILY_SWEEPS)
                        | {f"identity_{n}" for n in identity_sum.FAMILY_SWEEPS}
                        | {f"ensemble_{n}" for n in ensemble_claims.ENSEMBLE_SWEEPS}
                        | {f"transformers_{n}" for n in transformers.FAMILY_SWEEPS}))
#: Which part of scripts/precompute_ensemble.py writes each ensemble file.
ENSEMBLE_PART = {"gaps": "gaps", "lesions": "lesions", "streams": "lesions", "paths": "paths", "spectra": "trials",
                 "recal": "trials", "noise": "trials", "short": "trials", "members": "trials", "truncated": "truncated"}
ENSEMBLE_PARTS = ("gaps", "lesions", "paths", "trials", "truncated")
ENSEMBLE_MEMBERS = 5        # precompute_ensemble.MEMBERS: sweep seed s also trains residual-8 nets 5 s .. 5 s + 4


def stored_names(data_dir: Path = DATA) -> list[str]:
    """The exploratory sweeps: ``<name>.json`` files (a tagged file ``<name>.<tag>.json`` is a confirmation)."""
    return sorted(p.stem for p in data_dir.glob("*.json") if "." not in p.stem)


def seeds_of(record: dict) -> list[int]:
    """The seeds a stored record holds: ``seeds`` (files a resumable sweep wrote), else its config's."""
    if record.get("seeds") is not None:
        return list(record["seeds"])
    config = record.get("config", {})
    if "grid" in config:                                      # highway convergence: [[depths, seeds], ...]
        return list(dict.fromkeys(s for _, seeds in config["grid"] for s in seeds))
    return list(config.get("seeds", []))


def used_seeds(name: str, record: dict) -> set[int]:
    """Every seed the sweep's runs were made with: an ensemble run also trains the residual-8 members 5 s .. 5 s + 4
    (precompute_ensemble.py), so a fresh seed must avoid those too."""
    seeds = set(seeds_of(record))
    if name.startswith("ensemble_"):                   # the same run trained them (a fresh seed must not repeat one)
        seeds |= {ENSEMBLE_MEMBERS * s + j for s in seeds for j in range(ENSEMBLE_MEMBERS)}
    return seeds


def confirmations(name: str, data_dir: Path = DATA) -> dict[str, dict]:
    """``{tag: record}`` of the files ``<name>.<tag>.json`` beside ``<name>.json``."""
    return {p.name[len(name) + 1:-len(".json")]: load_result(p) for p in sorted(data_dir.glob(f"{name}.*.json"))}


def unfinished(data_dir: Path = DATA) -> list[tuple[Path, list[int], list[int]]]:
    """Folders of unfinished resumable runs: (folder, seeds, seeds done)."""
    out = []
    for folder in sorted(data_dir.glob("*.parts")):
        manifest = folder / "sweep.json"
        seeds = json.loads(manifest.read_text())["seeds"] if manifest.exists() else []
        done = [s for s in seeds if (folder / f"seed-{s}.json").exists()
                and json.loads((folder / f"seed-{s}.json").read_text()).get("complete")]
        out.append((folder, seeds, done))
    return out


def _drop_options(words: list[str], options: tuple[str, ...]) -> list[str]:
    """``words`` without each option in ``options`` and the values that follow it."""
    out, skip = [], False
    for w in words:
        if w.startswith("--"):
            skip = w in options
            if skip:
                continue
        elif skip:
            continue
        out.append(w)
    return out


def confirm_command(name: str, record: dict, seeds: list[int], tag: str) -> str:
    """The command that reruns the stored sweep ``name`` on ``seeds`` into ``<name>.<tag>.json``."""
    words = shlex.split(record["command"])
    head, script, rest = words[0], words[1], words[2:]
    rest = _drop_options(rest, ("--seeds", "--out", "--tag", "--restart", "--parts"))
    if script.endswith("precompute_transformers.py") and not any(not w.startswith("-") for w in rest):
        rest = [name.removeprefix("transformers_")] + rest
    if script.endswith("precompute_ensemble.py"):
        rest += ["--parts", ENSEMBLE_PART[name.removeprefix("ensemble_")]]
    if "--grid" in rest:                                      # highway convergence: fresh seeds in every grid
        rest = [f"{w.split(':')[0]}:{format_seeds(seeds).replace(' ', ',')}" if i and rest[i - 1] == "--grid" else w
                for i, w in enumerate(rest)]
    else:
        rest += ["--seeds", format_seeds(seeds)]
    return " ".join([head, script] + [shlex.quote(w) for w in rest] + ["--tag", tag])


def _merge_ensemble(commands: list[str]) -> list[str]:
    """One precompute_ensemble.py command for all the ensemble parts wanted (they share the trained nets)."""
    ens = [c for c in commands if "precompute_ensemble.py" in c]
    if len(ens) < 2:
        return commands
    parts = {w for c in ens for w in _option_values(shlex.split(c), "--parts")}
    words = _drop_options(shlex.split(ens[0]), ("--parts",))
    merged = " ".join(words[:-2] + ["--parts"] + [p for p in ENSEMBLE_PARTS if p in parts] + words[-2:])
    first = commands.index(ens[0])
    rest = [c for c in commands if c not in ens]
    return rest[:first] + [merged] + rest[first:]


def _option_values(words: list[str], option: str) -> list[str]:
    i = words.index(option)
    out = []
    for w in words[i + 1:]:
        if w.startswith("--"):
            break
        out.append(w)
    return out


def confirm_commands(names: list[str], seeds: list[int], tag: str, data_dir: Path = DATA) -> list[str]:
    """The commands of a confirmation of ``names`` on ``seeds`` (``ValueError`` when a seed was used already)."""
    tagged(data_dir / "x.json", tag)
    commands, clashes = [], []
    for name in names:
        path = data_dir / f"{name}.json"
        if not path.exists():
            raise ValueError(f"names must be stored sweeps ({', '.join(stored_names(data_dir))}); got {name!r}")
        record = load_result(path)
        used = used_seeds(name, record) & set(seeds)
        if used:
            clashes.append(f"{name}: {sorted(used)}")
        command = confirm_command(name, record, seeds, tag)
        if command not in commands:
            commands.append(command)
    if clashes:
        raise ValueError("seeds must be fresh (disjoint from the seeds the stored sweeps used); already used: "
                         + "; ".join(clashes))
    return _merge_ensemble(commands)


def listing(data_dir: Path = DATA) -> str:
    lines = []
    for name in stored_names(data_dir):
        record = load_result(data_dir / f"{name}.json")
        conf = confirmations(name, data_dir)
        mark = "*" if name in DECIDING else " "
        lines.append(f"{mark} {name}: seeds {format_seeds(seeds_of(record)) or '?'}")
        lines.append(f"    {record['command']}")
        for tag, rec in conf.items():
            commit = (rec.get("made_with") or {}).get("commit")
            lines.append(f"    {tag}: seeds {format_seeds(seeds_of(rec))}, commit {commit}: {rec['command']}")
        if not conf:
            lines.append("    no confirmation stored beside it")
    for folder, seeds, done in unfinished(data_dir):
        lines.append(f"unfinished: {folder.name}: {len(done)} of {len(seeds)} seeds done ({format_seeds(done) or '-'})")
    lines.append("* deciding: read by a verdict or by a chapter's family of claims")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="action")
    sub.add_parser("list", help="every stored sweep (the default)")
    c = sub.add_parser("confirm", help="print the commands of a confirmation on fresh seeds")
    c.add_argument("names", nargs="*", help="stored sweeps (default: every deciding one)")
    c.add_argument("--seeds", nargs="+", required=True, help="fresh seeds and ranges A-B, e.g. 100-109")
    c.add_argument("--tag", default="confirm")
    ap.add_argument("--data", type=Path, default=DATA, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.action == "confirm":
        try:
            seeds = parse_seeds(args.seeds)
        except ValueError as e:
            print(f"error: {e} (name the sweeps before --seeds)", file=sys.stderr)
            return 2
        if len(seeds) < 10:
            print(f"note: {len(seeds)} seeds; a confirmation should have at least 10", file=sys.stderr)
        try:
            commands = confirm_commands(args.names or list(DECIDING), seeds, args.tag, args.data)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("\n".join(commands))
        return 0
    print(listing(args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
