"""Every judgment the book's rules make on the stored sweeps, as one JSON record: each chapter's family of claims
(test, n, effect, interval, raw and Holm-adjusted p, outcome, lean), the closing chapter's verdicts and leans, and
its negative controls.

    python scripts/frozen_judgments.py                       # print the judgments of the exploratory sweeps
    python scripts/frozen_judgments.py --out book/data/frozen_judgments.json

Run at the frozen commit (``git worktree add /tmp/frozen confirm-frozen``, then this script with
``PYTHONPATH=/tmp/frozen/code``), it records what the frozen rules decide on the exploratory sweeps;
``tests/test_confirmation.py`` runs the same function with today's code and asserts the same answers, so a rule,
threshold, margin or family changed after the freeze fails the suite. It uses only functions the frozen commit has.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import skipnet

from skipnet.store import DATA, load_sweep, made_with, write_json


#: The files whose code decides a claim: the inference protocol and every chapter's analysis (the closing chapter's
#: page text, ``verdict_page.py``, only words the results), relative to the package.
ANALYSIS_EXCLUDED = ("experiments/verdict_page.py",)


def analysis_files() -> list[str]:
    package = Path(skipnet.__file__).resolve().parent
    files = ["inference.py", "store.py"] + sorted(str(p.relative_to(package))
                                                  for p in (package / "experiments").glob("*.py"))
    return [f for f in files if f not in ANALYSIS_EXCLUDED]


def analysis_hashes() -> dict[str, str]:
    """``{file: sha256}`` of :func:`analysis_files` in the package that is imported."""
    package = Path(skipnet.__file__).resolve().parent
    return {f: hashlib.sha256((package / f).read_bytes()).hexdigest() for f in analysis_files()}


def _comparison(c, lean) -> dict:
    return {"claim": c.claim, "n": c.n, "alpha": c.alpha, "mean": c.mean, "ci": list(c.ci), "higher": c.higher, "lower": c.lower,
            "p": c.p, "p_adj": c.p_adj, "margin": c.margin, "p_equiv": c.p_equiv, "p_equiv_adj": c.p_equiv_adj,
            "outcome": c.outcome, "lean": lean(c)}


def families(tag: str | None = None) -> dict:
    """``{family name: Family}`` of every chapter, read from the exploratory sweeps or from the ``tag`` files."""
    from skipnet.experiments import ensemble_claims, highway_trained, identity_sum, transformers
    tf = {n: load_sweep(f"transformers_{n}", tag) for n in transformers.FAMILY_SWEEPS}
    rec = ensemble_claims.ensemble_records(tag)
    return {"highway": highway_trained.chapter_family(tag),
            "identity": identity_sum.identity_family(identity_sum.load_identity_records(tag)),
            "ensemble": ensemble_claims.ensemble_family(rec),
            "ensemble_primary": ensemble_claims.ensemble_primary_family(rec),
            "transformers": transformers.chapter_family(tf)}


def judgments(tag: str | None = None, data_dir: Path = DATA, controls: bool = True) -> dict:
    """The record described in the module's docstring, for the exploratory sweeps (``tag=None``) or a tag's."""
    from skipnet.experiments import verdict as vd
    from skipnet.experiments.verdict_base import _leaning
    out = {"families": {name: {k: _comparison(c, _leaning) for k, c in fam.results().items()}
                        for name, fam in families(tag).items()}}
    stored = vd.load_stored(Path(data_dir), tag=tag)
    verdicts = vd.judge_all(stored)
    out["verdicts"] = {k: {"verdict": v.verdict, "lean": v.lean,
                           "claims": {n: _comparison(c, _leaning) for n, c in v.claims.items()}}
                       for k, v in verdicts.items()}
    if controls:
        from skipnet.experiments.verdict_controls import run_controls
        out["controls"] = [{k: r[k] for k in ("rule", "control", "verdict", "lean", "passes")}
                           for r in run_controls(stored)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", default=None, help="judge the files of this tag (default: the exploratory sweeps)")
    ap.add_argument("--out", type=Path, help="write the record here (with the commit that made it)")
    args = ap.parse_args(argv)
    record = judgments(args.tag)
    if args.out:
        made = made_with(__file__)
        write_json(args.out, {"made_with": {k: made[k] for k in ("commit", "dirty", "skipnet", "torch")},
                              "tag": args.tag, "analysis": analysis_hashes(), "judgments": record})
    else:
        json.dump(record, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
