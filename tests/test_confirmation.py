"""The confirmation on fresh seeds: the frozen rules still judge the stored sweeps as they did at the freeze, what
"confirmed" means, and where the confirmatory files came from."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from skipnet import confirmation as cf
from skipnet.inference import EQUIVALENT, HIGHER, LOWER, NOT_DETECTED, Family, compare
from skipnet.store import DATA, format_seeds, load_result

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _close(a, b, where: str):
    """``a`` equals ``b``: strings and ints exactly, floats to 1e-9 relative (NaN only with NaN)."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: {len(a)} items now, {len(b)} at the freeze"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{where}: {a!r} now, {b!r} at the freeze"
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), \
            f"{where}: {a!r} now, {b!r} at the freeze"
    else:
        assert a == b, f"{where}: {a!r} now, {b!r} at the freeze"


# -- the freeze ---------------------------------------------------------------------------------------------------
def test_the_frozen_rules_still_judge_the_stored_sweeps_as_at_the_freeze():
    """Every family's claims (n, effect, interval, p, adjusted p, outcome, lean), every verdict and lean, and every
    negative control, computed by today's code on the exploratory sweeps, equal what the frozen commit computed: a
    rule, threshold, margin or family changed after the freeze fails here."""
    stored = cf.frozen_judgments()
    assert stored["made_with"]["commit"] == cf.FROZEN_COMMIT and stored["made_with"]["dirty"] is False
    assert stored["tag"] is None
    now = json.loads(json.dumps(_script("frozen_judgments").judgments()))
    _close(now, stored["judgments"], "judgments")


def test_the_analysis_files_are_the_frozen_commits_byte_for_byte():
    """The code that decides a claim is unchanged since the freeze, including what only the fresh seeds would reach
    (the significance level, a rule's branch the stored seeds never take): every analysis file's sha256 equals the
    frozen commit's. Only the closing chapter's page text, which words the results, may change."""
    fj = _script("frozen_judgments")
    frozen = cf.frozen_judgments()["analysis"]
    assert {"inference.py", "experiments/verdict.py", "experiments/verdict_rules.py", "experiments/transformers.py",
            "experiments/identity_sum.py", "experiments/ensemble_claims.py", "experiments/highway_trained.py"} <= set(frozen)
    assert set(fj.analysis_files()) == set(frozen), "an analysis file was added or removed since the freeze"
    changed = [f for f, h in fj.analysis_hashes().items() if h != frozen[f]]
    assert changed == [], f"changed since the freeze at {cf.FROZEN_COMMIT[:7]}: {changed}"


def test_every_test_in_the_frozen_record_was_at_the_5_percent_level():
    rows = [r for fam in cf.frozen_judgments()["judgments"]["families"].values() for r in fam.values()]
    assert rows and {r["alpha"] for r in rows} == {0.05}


def test_the_freeze_check_fails_on_a_changed_margin(monkeypatch):
    """The check above is not vacuous: a margin widened after the freeze changes the record it compares."""
    from skipnet.experiments import transformers
    monkeypatch.setattr(transformers, "EQUIV_MARGIN", transformers.EQUIV_MARGIN * 10)
    now = json.loads(json.dumps(_script("frozen_judgments").judgments(controls=False)))
    stored = cf.frozen_judgments()["judgments"]
    with pytest.raises(AssertionError):
        _close(now["families"]["transformers"], stored["families"]["transformers"], "transformers")


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git history")
def test_the_frozen_tag_names_the_frozen_commit():
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "-q", f"{cf.FROZEN_TAG}^{{commit}}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("the clone has no tags")
    assert out.stdout.strip() == cf.FROZEN_COMMIT


# -- what "confirmed" means ---------------------------------------------------------------------------------------
def _family(name, claims):
    fam = Family(name)
    for key, (a, b, kw) in claims.items():
        fam.add(key, a, b, key, **kw)
    return fam


UP5 = [0.5, 0.3, 0.7, 0.2, 0.4]                  # five seeds all leaning up: an exact test cannot decide them


def test_a_lean_up_reads_confirmed_open_or_otherwise_by_the_fresh_outcome():
    rng = np.random.default_rng(0)
    explore = _family("x", {"a": (UP5, 0.0, {})})
    assert explore["a"].outcome == NOT_DETECTED and cf.lean(explore["a"]) == HIGHER
    up = list(0.5 + rng.random(10))
    down = [-x for x in up]
    mixed = [x * (-1) ** i for i, x in enumerate(up)]
    fresh = {"up": _family("x", {"a": (up, 0.0, {})}), "down": _family("x", {"a": (down, 0.0, {})}),
             "mixed": _family("x", {"a": (mixed, 0.0, {})})}
    assert fresh["up"]["a"].outcome == HIGHER and fresh["down"]["a"].outcome == LOWER
    assert cf.reading(explore["a"], fresh["up"]["a"]) == cf.CONFIRMED
    assert cf.reading(explore["a"], fresh["down"]["a"]) == cf.OTHERWISE
    assert cf.reading(explore["a"], fresh["mixed"]["a"]) == cf.OPEN
    assert cf.reading(explore["a"], None) == cf.NOT_RUN


def test_a_claim_within_its_margin_leans_equivalent_and_a_detected_difference_is_otherwise():
    small = [0.01, -0.02, 0.015, 0.0, -0.005]
    explore = _family("x", {"a": (small, 0.0, {"margin": 0.1})})
    assert cf.lean(explore["a"]) == EQUIVALENT
    tight = _family("x", {"a": ([0.01, -0.01] * 5, 0.0, {"margin": 0.1})})
    assert tight["a"].outcome == EQUIVALENT and cf.reading(explore["a"], tight["a"]) == cf.CONFIRMED
    far = _family("x", {"a": ([1.0 + 0.1 * i for i in range(10)], 0.0, {"margin": 0.1})})
    assert far["a"].outcome == HIGHER and cf.reading(explore["a"], far["a"]) == cf.OTHERWISE


def test_a_difference_inside_the_margin_says_that_the_equivalence_passes_too():
    """The frozen protocol decides a difference first; the words and the table then say that the equivalence test
    passed as well, so a precise 'equivalent' is not shown as a reversal."""
    explore = _family("x", {"a": ([0.01, -0.02, 0.015, 0.0, -0.005], 0.0, {"margin": 0.1})})
    tiny = _family("x", {"a": ([0.010 + 0.001 * i for i in range(10)], 0.0, {"margin": 0.1})})
    c = tiny["a"]
    assert c.outcome == HIGHER and c.p_equiv_adj < 0.05
    assert cf.reading(explore["a"], c) == cf.OTHERWISE
    assert "inside the ±0.10 margin, whose equivalence test also passes" in cf.fresh_words(explore["a"], c)
    assert "(equivalence also passes" in cf.side_by_side(explore, tiny)
    far = _family("x", {"a": ([1.0 + 0.1 * i for i in range(10)], 0.0, {"margin": 0.1})})
    assert "margin" not in cf.fresh_words(explore["a"], far["a"])


def test_holm_within_the_fresh_family_decides_the_reading():
    """Ten fresh seeds all agreeing decide one claim alone (p = 2/1024) but not a family of 100 (adjusted 0.20)."""
    explore = _family("x", {"a": (UP5, 0.0, {})})
    up = [1.0 + 0.1 * i for i in range(10)]
    alone = _family("x", {"a": (up, 0.0, {})})
    crowd = _family("x", {**{"a": (up, 0.0, {})}, **{f"z{i}": ([0.1, -0.1] * 5, 0.0, {}) for i in range(99)}})
    assert cf.reading(explore["a"], alone["a"]) == cf.CONFIRMED
    assert cf.reading(explore["a"], crowd["a"]) == cf.OPEN


def test_side_by_side_shows_both_sets_of_seeds_and_tallies():
    explore = _family("demo", {"a": (UP5, 0.0, {}), "b": ([-x for x in UP5], 0.0, {})})
    confirm = _family("demo", {"a": ([1.0 + 0.1 * i for i in range(10)], 0.0, {}), "b": ([0.1, -0.1] * 5, 0.0, {})})
    table = cf.side_by_side(explore, confirm)
    rows = table.splitlines()
    assert len(rows) == 4 and "(5 seeds)" in rows[2] and "(10 seeds)" in rows[2]
    assert rows[2].endswith(f"| {cf.CONFIRMED} |") and rows[3].endswith(f"| {cf.OPEN} |")
    pending = cf.side_by_side(explore, None, pending="2 of 5 sweeps stored").splitlines()
    assert "2 of 5 sweeps stored" in pending[2] and pending[2].endswith(f"| {cf.NOT_RUN} |")
    counts = cf.tally(explore, confirm)
    assert counts[cf.CONFIRMED] == ["a"] and counts[cf.OPEN] == ["b"]
    assert cf.tally_words(counts) == "1 confirmed, 1 open"
    with pytest.raises(ValueError, match="keys must be claims"):
        cf.side_by_side(explore, confirm, keys=["c"])


def test_the_words_follow_the_reading(tmp_path):
    explore = _family("demo", {"a": (UP5, 0.0, {}), "b": ([-x for x in UP5], 0.0, {}),
                               "c": ([0.01, -0.02, 0.015, 0.0, -0.005], 0.0, {"margin": 0.1})})
    confirm = _family("demo", {"a": ([1.0 + 0.1 * i for i in range(10)], 0.0, {}),
                               "b": ([1.0 + 0.1 * i for i in range(10)], 0.0, {}),
                               "c": ([0.01, -0.01] * 5, 0.0, {"margin": 0.1})})
    ex, co = explore.results(), confirm.results()
    assert cf.fresh_words(ex["a"], co["a"]).startswith("confirmed on 10 fresh seeds: higher in 10 of 10")
    assert cf.fresh_words(ex["b"], co["b"]).startswith("decided otherwise on 10 fresh seeds: higher in 10 of 10")
    assert cf.fresh_words(ex["c"], co["c"]).startswith("confirmed on 10 fresh seeds: equivalent within ±0.10")
    assert cf.fresh_words(ex["a"], None, pending="later") == "later"
    (tmp_path / "s1.confirm.json").write_text("{}")
    v = cf.page_values("d", explore, None, ["s1", "s2"], data_dir=tmp_path)
    assert v["d_fresh_state"] == "not yet run (1 of 2 sweeps rerun on the fresh seeds so far)"
    assert v["d_fresh_a"] == cf.NOT_RUN and cf.FROZEN_COMMIT[:7] in v["d_fresh_frozen"]
    assert v["d_fresh_a_reading"] == cf.NOT_RUN and v["d_fresh_family"] == v["d_fresh_state"]
    v = cf.page_values("d", explore, confirm, ["s1"], keys=["a", "b"], data_dir=tmp_path)
    assert v["d_fresh_state"] == "of the 2 claims, 1 confirmed, 1 decided otherwise"
    assert (v["d_fresh_a_reading"], v["d_fresh_b_reading"]) == (cf.CONFIRMED, cf.OTHERWISE)
    # the whole family, beyond the keys the answer names, with each claim that did not confirm named
    assert v["d_fresh_family"] == "of the 3 claims, 2 confirmed, 1 decided otherwise (not confirmed: b)"
    assert v["d_fresh_table"].count("\n") == 3 and set(v) >= {"d_fresh_a", "d_fresh_b", "d_fresh_c"}


def test_a_claim_the_fresh_family_lacks_is_open_not_pending():
    explore = _family("demo", {"a": (UP5, 0.0, {}), "b": (UP5, 0.0, {})})
    confirm = _family("demo", {"a": ([1.0 + 0.1 * i for i in range(10)], 0.0, {})})
    rows = cf.side_by_side(explore, confirm).splitlines()
    assert cf.NO_ROW in rows[3] and rows[3].endswith(f"| {cf.OPEN} |")
    assert cf.tally(explore, confirm)[cf.OPEN] == ["b"]
    v = cf.page_values("d", explore, confirm, [], data_dir=Path("."))
    assert v["d_fresh_b_reading"] == cf.OPEN and cf.NO_ROW in v["d_fresh_b"]


def test_a_verdict_reads_by_its_lean():
    assert cf.verdict_reading("wrong", "wrong", "open") == cf.CONFIRMED
    assert cf.verdict_reading("wrong", "open", "open") == cf.OPEN
    assert cf.verdict_reading("wrong", "holds", "open") == cf.OTHERWISE
    assert cf.verdict_reading("wrong", None, "open") == cf.NOT_RUN


def test_confirmatory_waits_for_every_file(tmp_path):
    (tmp_path / "a.confirm.json").write_text("{}")
    assert cf.missing(["a", "b"], data_dir=tmp_path) == ["b"]
    assert cf.confirmatory(lambda: "built", ["a", "b"], data_dir=tmp_path) is None
    assert cf.confirmatory(lambda: "built", ["a"], data_dir=tmp_path) == "built"


# -- where the confirmatory files came from ----------------------------------------------------------------------
CONFIRM_FILES = sorted(DATA.glob(f"*.{cf.TAG}.json"))


@pytest.mark.data
@pytest.mark.parametrize("path", CONFIRM_FILES, ids=[p.name for p in CONFIRM_FILES])
def test_each_confirmatory_file_ran_the_fresh_seeds_at_the_frozen_commit(path):
    sweeps = _script("sweeps")
    name = path.name[:-len(f".{cf.TAG}.json")]
    record, explore = load_result(path), load_result(DATA / f"{name}.json")
    made = record["made_with"]
    assert made["commit"] == cf.FROZEN_COMMIT and made["dirty"] is False
    assert made["cpu_capability"] and made["threads"] == 1
    assert sorted(sweeps.seeds_of(record)) == list(cf.SEEDS)
    assert not sweeps.used_seeds(name, explore) & set(sweeps.used_seeds(name, record))
    words, stored = record["command"].split(), explore["command"].split()
    assert ["--tag", cf.TAG] in [words[i:i + 2] for i in range(len(words) - 1)]
    assert words[1] == stored[1]                                   # the same script
    assert (format_seeds(cf.SEEDS).replace(" ", ",") in record["command"]        # run on the fresh seeds
            or all(str(s) in words for s in cf.SEEDS))


@pytest.mark.data
def test_the_frozen_judgments_were_made_at_the_frozen_commit():
    made = cf.frozen_judgments()["made_with"]
    assert made["commit"] == cf.FROZEN_COMMIT and made["dirty"] is False
