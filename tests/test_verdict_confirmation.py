"""The closing chapter's fresh-seeds column and answer: they follow the readings of the frozen rules' verdicts."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from skipnet import confirmation as cf
from skipnet.experiments import verdict as vd
from skipnet.experiments import verdict_page as vpage
from skipnet.experiments.verdict_base import HOLDS, OPEN, WRONG
from skipnet.reading import answer_box
from skipnet.store import DATA

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def explore():
    return vd.judge_all(vd.load_stored(DATA))


def test_every_frozen_lean_has_its_words():
    """The plain words of each lean are keyed by the lean the frozen rules gave on the stored seeds."""
    frozen = cf.frozen_judgments()["judgments"]["verdicts"]
    assert {(k, v["lean"]) for k, v in frozen.items()} == set(vpage.LEAN_WORDS)


def test_the_column_and_the_answer_follow_each_reading(explore):
    lean = {k: v.lean for k, v in explore.items()}
    other = {k: (HOLDS if lean[k] == WRONG else WRONG) for k in explore}
    keys = list(vpage.CLAIMS)
    fresh = {k: replace(v, verdict=lean[k]) for k, v in explore.items()}                 # every lean confirmed
    fresh[keys[1]] = replace(explore[keys[1]], verdict=OPEN)                            # one open
    fresh[keys[2]] = replace(explore[keys[2]], verdict=other[keys[2]])                  # one the other way
    cells = vpage.confirmation_cells(explore, fresh)
    assert cells[keys[0]] == f"{lean[keys[0]]} ({cf.CONFIRMED})"
    assert cells[keys[1]] == OPEN
    assert cells[keys[2]] == f"{other[keys[2]]} ({cf.OTHERWISE})"
    answer = vpage.fresh_answer(explore, fresh, "pending")
    assert answer["state"] == f"of the 6 leans, 4 {cf.CONFIRMED}, 1 {cf.OPEN}, 1 {cf.OTHERWISE}"
    words = answer["words"]
    assert vpage.LEAN_WORDS[(keys[0], lean[keys[0]])] in words
    for k in keys[1:3]:                     # a lean that did not confirm is not stated as what confirmed
        said = words.split("Not decided")[0]
        assert vpage.LEAN_WORDS[(k, lean[k])] not in said
    assert vpage.NAMES[keys[1]] in words.split("Not decided")[1]
    assert vpage.NAMES[keys[2]] in words.split("another way")[1]
    table = vpage.verdicts_table(explore, fresh, "pending").splitlines()
    assert len(table) == 8 and table[3].endswith(f"| {cf.OPEN} |") and table[4].endswith(f"| {cf.OTHERWISE} |")


def test_the_readings_a_chapter_glues_are_the_closing_chapters(explore, tmp_path):
    """``readings`` gives each verdict's reading against its lean, as the closing chapter's column does."""
    fresh = vpage.confirmation(DATA)
    expected = {k: cf.verdict_reading(v.lean, None if fresh is None else fresh[k].verdict, OPEN)
                for k, v in explore.items()}
    assert vpage.readings(DATA) == expected
    for n in vpage.SOURCE_NAMES:                                   # no confirmatory files: every reading waits
        (tmp_path / f"{n}.json").write_bytes((DATA / f"{n}.json").read_bytes())
    assert set(vpage.readings(tmp_path).values()) == {cf.NOT_RUN}


def test_before_the_confirmation_every_cell_says_how_far_it_is(explore, tmp_path):
    pending = f"{cf.NOT_RUN} ({vpage.progress(tmp_path)})"
    assert pending == f"{cf.NOT_RUN} (0 of {len(vpage.SOURCE_NAMES)} sweeps rerun on the fresh seeds so far)"
    assert set(vpage.confirmation_cells(explore, None, pending).values()) == {pending}
    answer = vpage.fresh_answer(explore, None, pending)
    assert pending in answer["state"] and "directions, not verdicts" in answer["words"]
    assert vpage.confirmation(tmp_path) is None


def test_the_closing_page_names_the_frozen_commit_and_glues_the_fresh_answer():
    text = (ROOT / "book" / "verdict.md").read_text()
    box = answer_box(text)
    for key in ("brief_frozen", "brief_fresh_state", "brief_fresh_words"):
        assert f"{{glue:text}}`{key}`" in box
    assert "cf.frozen_words()" in text and "vpage.confirmation(" in text
    assert cf.FROZEN_COMMIT[:7] in cf.frozen_words() and cf.FROZEN_TAG in cf.frozen_words()


def test_the_opening_answer_carries_the_fresh_reading_of_each_claim_it_states():
    text = (ROOT / "book" / "intro.md").read_text()
    box = answer_box(text)
    for key in ("degradation", "skip_56", "overfitting", "highway", "identity", "messy"):
        assert f"{{glue:text}}`intro_fresh_{key}`" in box
    assert "stored seeds" in box                     # the claims are stated as what the stored seeds show
