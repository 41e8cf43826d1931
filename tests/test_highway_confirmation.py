"""*The gradient highway* says what survived the confirmation on fresh seeds: its answer in brief states no claim of
the chapter's family without that claim's fresh-seeds reading, the confirmatory family is the exploratory one's
analysis on the ``.confirm.json`` files, and the words the page glues follow the reading."""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import jupytext
import pytest

from skipnet import confirmation as cf
from skipnet.reading import answer_box
from skipnet import store
from skipnet.experiments import degradation as dg
from skipnet.experiments import highway_trained as hwt

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "highway.md"
PREFIX = "hw"

#: How the answer in brief would state each claim of the family: a sentence that matches one of these states it.
CLAIM_WORDS = {
    "degradation": r"plain-56 [^.]*above plain-20|deeper plain network[^.]* above",
    "skip_56": r"plain-56 [^.]*above residual-56|skip's effect at 56",
    "steps_slope": r"\bsteps\b[^.]*\bgrow",
    "lars": r"same fraction of its weights|LARS",
    "equalize": r"explosion (removed|at the start)|removing the explosion|scaled to the top layer",
    "project": r"initial norm|holding the weights",
    "lars_residual": r"residual-56 [^.]*relative steps|residual twin",
    "lars_matched": r"evening out the layers|equal relative steps",
    "lars_vs_small_lr": r"smaller (steps|learning rate)",
    "lam_max": r"curvature|Hessian|eigenvalue",
}




def sentences(box: str) -> list[str]:
    """The box's sentences: its numbered items, each split at a full stop that ends a sentence (a glue's format spec,
    ``:.4f``, never does)."""
    items = re.split(r"^\d+\.\s+", box, flags=re.M)
    return [s for item in items for s in re.split(r"(?<=[.!?])\s+(?=[A-Z*])", " ".join(item.split())) if s]


def stated_without_reading(box: str) -> dict[str, list[str]]:
    """``{claim key: [sentences that state it without its glue hw_fresh_<key>]}`` (empty: every claim carries it)."""
    out: dict[str, list[str]] = {}
    for s in sentences(box):
        for key, words in CLAIM_WORDS.items():
            if re.search(words, s) and not re.search(r"\{glue:text\}`" + f"{PREFIX}_fresh_{key}" + r"(_reading)?`", s):
                out.setdefault(key, []).append(s)
    return out


def glued_keys(box: str) -> set[str]:
    names = {n.removesuffix("_reading") for n in re.findall(r"\{glue:text\}`" + PREFIX + r"_fresh_(\w+)`", box)}
    return names - {"state", "frozen", "n", "table"}


def answer_keys() -> tuple[str, ...]:
    """The page's ``ANSWER_KEYS``: the claims its side-by-side table and tally cover."""
    code = "\n".join(c.source for c in jupytext.read(PAGE).cells if c.cell_type == "code")
    m = re.search(r"^ANSWER_KEYS = (\(.*?\))", code, flags=re.M)
    assert m, "the page names no ANSWER_KEYS"
    return tuple(ast.literal_eval(m.group(1)))


def _family_keys() -> set[str]:
    return set(hwt.chapter_family().results())


@pytest.fixture(scope="module")
def page() -> str:
    return PAGE.read_text()


# -- (a) the answer in brief carries each claim's fresh-seeds reading ------------------------------------------------
def test_the_claim_words_cover_the_family_and_catch_a_bare_claim():
    """The check below can fail: a box sentence stating a claim with no glue is caught, one with it passes."""
    assert set(CLAIM_WORDS) == _family_keys()
    bare = "1. The steps plain networks need grow faster with depth than a residual network's.\n"
    assert stated_without_reading(bare) == {"steps_slope": [bare[3:].strip()]}
    glued = ("1. On the stored seeds the steps grow faster (confirmation: {glue:text}`hw_fresh_steps_slope`).\n"
             "2. Its smallest p-value is {glue:text}`main_p_floor:.4f`; LARS lowers it.\n")
    assert stated_without_reading(glued) == {"lars": ["Its smallest p-value is {glue:text}`main_p_floor:.4f`; LARS "
                                                      "lowers it."]}


def test_every_claim_the_answer_states_carries_its_fresh_seeds_reading(page):
    box = answer_box(page)
    assert stated_without_reading(box) == {}, "a claim is stated without its glued reading on the fresh seeds"
    keys = glued_keys(box)
    assert keys, "the answer in brief names no claim's fresh-seeds reading"
    assert keys <= _family_keys(), f"glued readings of no claim of the family: {sorted(keys - _family_keys())}"


def test_the_tally_and_side_by_side_table_cover_the_claims_the_answer_names(page):
    keys = answer_keys()
    assert set(keys) == glued_keys(answer_box(page))
    assert f"{{glue:text}}`{PREFIX}_fresh_state`" in answer_box(page)
    fresh = page.split("## On fresh seeds", 1)[1].split("## What we could not settle", 1)[0]
    assert f"{{glue:text}}`{PREFIX}_fresh_frozen`" in fresh and f"{{glue:text}}`{PREFIX}_fresh_state`" in fresh
    assert f'display(Markdown(fresh["{PREFIX}_fresh_table"]))' in fresh


def test_no_sentence_still_waits_for_the_confirmation(page):
    """Each 'until a confirmation decides' was replaced by the state of the confirmation, glued."""
    for path in (PAGE, ROOT / "book" / "highway" / "training.md"):
        text = " ".join(path.read_text().split())
        assert not re.search(r"until (a|the) confirmation|waits? for (a|the) confirmation|will decide", text), path


# -- (b) the confirmatory family: the same function on the fresh seeds -----------------------------------------------
def _need_fresh():
    gone = cf.missing(hwt.FAMILY_SWEEPS)
    if gone:
        pytest.skip(f"the confirmation has not stored these sweeps on the fresh seeds yet: {', '.join(gone)}")


def _fresh_steps_seeds() -> int:
    """Fresh seeds whose plain and residual networks both reached a loss of 0.5 at every depth of the plain fit."""
    rows = store.load_sweep("highway_convergence", cf.TAG)["data"]
    depths = dg.convergence_fit(rows, 0.5, min_depth=hwt.FAMILY_FIT_MIN_DEPTH)["depths"]
    reached = {(r["seed"], r["residual"], r["depth"]) for r in rows if r["steps_to"]["0.5"] is not None}
    return sum(all((s, net, d) in reached for net in (False, True) for d in depths) for s in cf.SEEDS)


@pytest.mark.data
def test_the_confirmatory_family_is_the_same_analysis_on_the_fresh_seeds():
    _need_fresh()
    explore, confirm = hwt.chapter_family(), hwt.chapter_family(cf.TAG)
    assert confirm.name == explore.name and list(confirm.results()) == list(explore.results())
    for key, c in confirm.results().items():
        want = _fresh_steps_seeds() if key == "steps_slope" else len(cf.SEEDS)
        assert c.n == want, f"{key}: {c.n} fresh seeds paired, expected {want}"
    assert cf.confirmatory(lambda: hwt.chapter_family(cf.TAG), hwt.FAMILY_SWEEPS) is not None


def test_the_page_waits_for_every_sweep_of_the_family(tmp_path):
    for name in hwt.FAMILY_SWEEPS[:-1]:
        (tmp_path / f"{name}.{cf.TAG}.json").write_text("{}")
    assert cf.missing(hwt.FAMILY_SWEEPS, data_dir=tmp_path) == [hwt.FAMILY_SWEEPS[-1]]
    explore = hwt.chapter_family()
    v = cf.page_values(PREFIX, explore, None, hwt.FAMILY_SWEEPS, keys=answer_keys(), data_dir=tmp_path)
    n = len(hwt.FAMILY_SWEEPS)
    assert v[f"{PREFIX}_fresh_state"] == f"{cf.NOT_RUN} ({n - 1} of {n} sweeps rerun on the fresh seeds so far)"
    assert all(v[f"{PREFIX}_fresh_{k}"] == cf.NOT_RUN for k in explore.results())


# -- (c) the page's words follow the reading -------------------------------------------------------------------------
def _fresh_copy(record: dict) -> dict:
    """The exploratory record on ten "fresh" seeds 1000-1009: each stored seed's rows again, in turn."""
    out = copy.deepcopy(record)
    stored = sorted({r["seed"] for r in record["data"]})
    out["data"] = [dict(r, seed=fresh) for fresh, s in zip(cf.SEEDS, stored * len(cf.SEEDS))
                   for r in copy.deepcopy(record["data"]) if r["seed"] == s]
    return out


def _flip_lars_vs_small_lr(ctrl: dict, inter: dict) -> dict:
    """Every smaller-learning-rate SGD run of plain-56 moved to the other side of its seed's LARS-like run, by as
    much as the best of them was above it: the claim's sign flips, seed by seed, and nothing else it reads changes."""
    lars = {r["seed"]: r["epoch_loss"][-1] for r in inter["data"] if r["mode"] == "lars" and not r["residual"]}
    best = {}
    for r in ctrl["data"]:
        if r["mode"] == "sgd" and not r["residual"]:
            best[r["seed"]] = min(best.get(r["seed"], float("inf")), r["epoch_loss"][-1])
    for r in ctrl["data"]:
        if r["mode"] == "sgd" and not r["residual"]:
            s = r["seed"]
            r["epoch_loss"] = r["epoch_loss"][:-1] + [lars[s] - (best[s] - lars[s]) + (r["epoch_loss"][-1] - best[s])]
    return ctrl


@pytest.mark.data
def test_the_glued_words_follow_the_reading_when_a_claim_turns(monkeypatch):
    load = store.load_sweep
    fresh = {name: _fresh_copy(load(name)) for name in hwt.FAMILY_SWEEPS}
    fresh["highway_intervention_control"] = _flip_lars_vs_small_lr(fresh["highway_intervention_control"],
                                                                   fresh["highway_intervention"])

    def load_fake(name, tag=None, data_dir=store.DATA):
        return copy.deepcopy(fresh[name]) if tag == cf.TAG else load(name, tag, data_dir)

    monkeypatch.setattr(store, "load_sweep", load_fake)
    explore, confirm = hwt.chapter_family(), hwt.chapter_family(cf.TAG)
    ex, co = explore.results(), confirm.results()
    assert ex["lars_vs_small_lr"].mean < 0 < co["lars_vs_small_lr"].mean                 # the sign flipped
    assert co["degradation"].mean == pytest.approx(ex["degradation"].mean)               # the others did not
    keys = answer_keys()
    v = cf.page_values(PREFIX, explore, confirm, hwt.FAMILY_SWEEPS, keys=keys)
    words = v[f"{PREFIX}_fresh_lars_vs_small_lr"]
    assert words.startswith((cf.OTHERWISE, cf.OPEN)), words
    assert words.startswith(cf.OTHERWISE)                # ten seeds all turned: the exact test decides it
    assert v[f"{PREFIX}_fresh_degradation"].startswith(cf.CONFIRMED)       # ten unturned seeds confirm their lean
    row = next(line for line in v[f"{PREFIX}_fresh_table"].splitlines() if hwt.SMALL_LR_VS_LARS in line)
    assert row.endswith(f"| {cf.OTHERWISE} |")
    assert f"1 {cf.OTHERWISE}" in v[f"{PREFIX}_fresh_state"] and f"of the {len(keys)} claims" in v[
        f"{PREFIX}_fresh_state"]
