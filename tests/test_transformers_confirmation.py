"""The Transformer chapter says what survived the confirmation on fresh seeds.

The main page's answer in brief states a claim of the chapter's family only beside that claim's fresh-seeds reading
(``tf_fresh_<key>``, glued from :func:`skipnet.confirmation.page_values`), so no sentence of it stays settled when the
fresh seeds leave the claim open or decide it otherwise; the confirmatory family is the exploratory one's function
read on the ``.confirm.json`` files; and the page's words follow the reading when the fresh data disagree.
"""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import jupytext
import pytest

from skipnet import confirmation as cf
from skipnet.reading import answer_box
from skipnet.experiments.transformers import FAMILY_SWEEPS, NORESID_BLOCKS, chapter_family
from skipnet.store import load_sweep

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "transformers.md"
FRESH_SWEEPS = [f"transformers_{name}" for name in FAMILY_SWEEPS]

#: What in a text states each claim of the family: the claim's own glued results, or the words that name it. A new
#: claim of the family must be added here (a test below fails until it is).
STATES = {
    "noresid_post": (r"tf_claim_noresid", r"`x \+` alone", r"skip itself"),
    "warmup": (r"tf_claim_warmup", r"\bwith (a |the )?warm-up\b", r"warm-up (lowers|helps|matters)"),
    "placement": (r"tf_claim_placement", r"\bLayerNorm's place\b", r"\bwhere the LayerNorm goes\b",
                  r"\bpre-LN\)? it trained\b"),
    "pre_post_alike": (r"tf_claim_alike", r"tf_claim_pre_post", r"\balike\b", r"\bequivalent\b"),
    "tanh_lstm": (r"tf_claim_tanh", r"\btanh\b"),
}

#: Leans of the closing chapter's verdicts that the box states, with the words that state them: each must carry the
#: verdict's reading on the fresh seeds (``tf_fresh_<verdict>``).
VERDICT_READINGS = {"rnn": r"RNN analogy"}




def stated_claims(box: str) -> list[str]:
    """The family's claims that ``box`` states (:data:`STATES`), in the family's order."""
    return [key for key, marks in STATES.items() if any(re.search(m, box, flags=re.I) for m in marks)]


def unread_claims(box: str) -> list[str]:
    """Claims that ``box`` states without gluing their fresh-seeds reading."""
    return [key for key in stated_claims(box) if f"{{glue:text}}`tf_fresh_{key}`" not in box]


def _explore_records() -> dict[str, dict]:
    return {name: load_sweep(f"transformers_{name}") for name in FAMILY_SWEEPS}


def _page_answer_keys() -> tuple[str, ...]:
    """``ANSWER_KEYS`` as the page's code defines it (the claims its fresh-seeds table and tally cover)."""
    code = "\n".join(c.source for c in jupytext.read(PAGE).cells if c.cell_type == "code")
    m = re.search(r"^ANSWER_KEYS = (\(.*?\))", code, flags=re.M)
    assert m, "the page's first cell defines ANSWER_KEYS"
    return tuple(ast.literal_eval(m.group(1)))


# -- (a) the answer in brief claims nothing without its fresh-seeds reading ----------------------------------------
@pytest.mark.data
def test_every_claim_of_the_family_has_its_markers():
    assert set(STATES) == set(chapter_family(_explore_records()).results())


def test_the_answer_in_brief_names_the_fresh_reading_of_every_claim_it_states():
    text = PAGE.read_text()
    box = answer_box(text)
    stated = stated_claims(box)
    assert {"noresid_post", "placement"} <= set(stated), stated      # the skip and the LayerNorm's place
    assert unread_claims(box) == [], f"the answer states {unread_claims(box)} without its tf_fresh_<key>"
    named = set(re.findall(r"\{glue:text\}`tf_fresh_(\w+)`", box)) - set(VERDICT_READINGS)
    assert set(named) <= set(STATES), f"unknown claims glued: {sorted(set(named) - set(STATES))}"
    assert re.search(VERDICT_READINGS["rnn"], box) and "{glue:text}`tf_fresh_rnn`" in box, \
        "the RNN analogy's lean is stated without the closing chapter's reading on the fresh seeds"
    assert set(_page_answer_keys()) == set(stated), "the page's table and tally cover the claims its answer states"
    assert not re.search(r"will decide|confirmation decides", text), "a sentence still says a confirmation will decide"


def test_the_check_catches_a_claim_stated_without_its_reading():
    box = answer_box(PAGE.read_text())
    stripped = box.replace("{glue:text}`tf_fresh_placement`", "settled")
    assert unread_claims(stripped) == ["placement"]
    assert unread_claims("Warm-up lowers the loss (test: {glue:text}`tf_claim_warmup`).") == ["warmup"]


# -- (b) the confirmatory family is the same function on the fresh seeds -------------------------------------------
@pytest.mark.data
def test_the_confirmatory_family_builds_from_the_confirm_files_with_every_fresh_seed():
    absent = cf.missing(FRESH_SWEEPS)
    if absent:
        pytest.skip(f"the confirmation has not rerun {', '.join(absent)} yet")
    records = {name: load_sweep(f"transformers_{name}", cf.TAG) for name in FAMILY_SWEEPS}
    fresh = cf.confirmatory(lambda: chapter_family(records), FRESH_SWEEPS)
    explore = chapter_family(_explore_records())
    assert fresh is not None and list(fresh.results()) == list(explore.results())
    reads = {"noresid_post": ("depth", "initctl"), "warmup": ("warmup",), "placement": ("warmup",),
             "pre_post_alike": ("depth",), "tanh_lstm": ("recall",)}
    assert set(reads) == set(explore.results())
    for key, c in fresh.results().items():
        seeds = set.intersection(*({r["seed"] for r in records[name]["data"]} for name in reads[key]))
        assert seeds == set(cf.SEEDS), f"{key}: the sweeps it reads hold seeds {sorted(seeds)}"
        assert c.n == len(cf.SEEDS), f"{key}: {c.n} paired seeds, {len(cf.SEEDS)} fresh seeds run"


# -- (c) the page's words follow the reading -----------------------------------------------------------------------
def _on_fresh_seeds(records: dict[str, dict]) -> dict[str, dict]:
    """The stored records as if run on the fresh seeds: fresh seed i repeats stored seed i mod k, so every paired
    difference keeps its sign and ten of them can be decided."""
    out = {}
    for name, rec in records.items():
        stored = sorted({r["seed"] for r in rec["data"]})
        rows = [{**r, "seed": fresh} for i, fresh in enumerate(cf.SEEDS)
                for r in rec["data"] if r["seed"] == stored[i % len(stored)]]
        out[name] = {**copy.deepcopy(rec), "data": rows}
        out[name]["config"]["seeds"] = list(cf.SEEDS)
    return out


def _flip_noresid(records: dict[str, dict]) -> dict[str, dict]:
    """The skip's claim reversed: the encoder without skips and its matched control trade their final losses, seed
    by seed (no other claim reads either arm)."""
    out = copy.deepcopy(records)
    arm = lambda name, label: {r["seed"]: r for r in out[name]["data"] if (r["label"], r["n_blocks"]) ==
                               (label, NORESID_BLOCKS)}
    plain, ctl = arm("depth", "no residual"), arm("initctl", "post-LN")
    assert plain and set(plain) == set(ctl)
    for s in plain:
        plain[s]["train_loss"], ctl[s]["train_loss"] = ctl[s]["train_loss"], plain[s]["train_loss"]
    return out


@pytest.mark.data
def test_the_pages_words_follow_the_reading_when_the_fresh_seeds_disagree():
    stored = _explore_records()
    explore = chapter_family(stored)
    keys = _page_answer_keys()
    same = cf.page_values("tf", explore, chapter_family(_on_fresh_seeds(stored)), FRESH_SWEEPS, keys)
    flipped = chapter_family(_flip_noresid(_on_fresh_seeds(stored)))
    assert flipped["noresid_post"].mean == pytest.approx(-chapter_family(_on_fresh_seeds(stored))["noresid_post"].mean)
    words = cf.page_values("tf", explore, flipped, FRESH_SWEEPS, keys)
    assert same["tf_fresh_noresid_post"].startswith(f"{cf.CONFIRMED} on {len(cf.SEEDS)} fresh seeds")
    assert words["tf_fresh_noresid_post"].startswith((cf.OTHERWISE, cf.OPEN)), words["tf_fresh_noresid_post"]
    assert words["tf_fresh_placement"] == same["tf_fresh_placement"]          # the other claim reads as before
    counts = cf.tally(explore, flipped, keys)
    assert "noresid_post" in counts[cf.OTHERWISE] + counts[cf.OPEN] and "noresid_post" not in counts[cf.CONFIRMED]
    assert words["tf_fresh_state"] == f"of the {len(keys)} claims, {cf.tally_words(counts)}"
    row = next(line for line in words["tf_fresh_table"].splitlines() if explore["noresid_post"].claim in line)
    assert row.endswith((f"| {cf.OTHERWISE} |", f"| {cf.OPEN} |"))
