"""The confirmation on fresh seeds: which commit's rules judge it, which seeds it runs, and each claim's exploratory
and confirmatory results side by side.

The book's claims were found on a few stored seeds (exploration). The rules and analysis that judge them were then
frozen at the commit tagged :data:`FROZEN_TAG` (:data:`FROZEN_COMMIT`), and every sweep a verdict or a chapter's
family reads is rerun at that commit on the fresh seeds :data:`SEEDS` (disjoint from every stored one) into
``<name>.confirm.json``. The same functions judge both sets of files.

The frozen code fixed each claim's *lean* as what a confirmation tests (:func:`lean`, the frozen
``verdict_base._leaning``: its outcome where decided, else equivalent when its mean lies within a stated margin,
else the sign of its mean). The reading below follows that definition; it was written after the tag, before any
family's fresh files were complete. A claim is **confirmed** when its confirmatory outcome, Holm-adjusted within its
family on the fresh seeds, is that lean; **open** when the fresh seeds decide nothing (or lack the comparison);
**decided otherwise** when they decide another answer. Two cautions a reader should know:

- the frozen protocol adjusts a family's difference tests and its equivalence tests in two separate Holm
  corrections, so the chance of at least one false confirmation in a family with margins can approach twice the
  level, 2 x 0.05;
- it decides a difference before an equivalence, so a claim leaning "equivalent" whose fresh seeds detect a
  difference smaller than its margin reads "decided otherwise" even when the equivalence test passes as well: the
  words say so (:func:`fresh_words`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Mapping

from skipnet.experiments.verdict_base import _leaning
from skipnet.inference import EQUIVALENT, HIGHER, LOWER, NOT_DETECTED, Comparison, Family
from skipnet.store import DATA, format_seeds, tagged

__all__ = ["FROZEN_TAG", "FROZEN_COMMIT", "TAG", "SEEDS", "CONFIRMED", "OPEN", "OTHERWISE", "NOT_RUN", "READINGS",
           "lean", "reading", "verdict_reading", "missing", "confirmatory", "side_by_side", "tally", "tally_words",
           "frozen_judgments", "FROZEN_JUDGMENTS", "NO_ROW", "fresh_words", "progress_words", "frozen_words", "page_values"]

FROZEN_TAG = "confirm-frozen"
FROZEN_COMMIT = "5b061a245c0e48c578e9895a4cb358dbe850e42c"
TAG = "confirm"
SEEDS = tuple(range(1000, 1010))
#: What the frozen rules decided on the exploratory sweeps (``scripts/frozen_judgments.py`` at the frozen commit).
FROZEN_JUDGMENTS = DATA / "frozen" / "judgments.json"

CONFIRMED, OPEN, OTHERWISE, NOT_RUN = "confirmed", "open", "decided otherwise", "not yet run"
READINGS = (CONFIRMED, OPEN, OTHERWISE, NOT_RUN)


def lean(c: Comparison) -> str:
    """The answer a claim points to on its seeds: its outcome where decided; else ``equivalent`` when its mean lies
    within its margin (if it has one); else the sign of its mean (``higher`` / ``lower``); a mean of exactly zero
    leans nowhere (``not detected``). It is the frozen rule the closing chapter's verdicts lean by."""
    return _leaning(c)


def reading(explore: Comparison, confirm: Comparison | None) -> str:
    """``confirmed``, ``open``, ``decided otherwise`` or ``not yet run`` (module docstring)."""
    if confirm is None:
        return NOT_RUN
    if confirm.outcome == NOT_DETECTED:
        return OPEN
    return CONFIRMED if confirm.outcome == lean(explore) else OTHERWISE


def verdict_reading(lean_then: str, verdict_now: str | None, open_word: str) -> str:
    """The same reading for a verdict of the closing chapter: its lean on the stored seeds against its verdict on
    the fresh seeds (``open_word`` is the rules' word for an undecided verdict)."""
    if verdict_now is None:
        return NOT_RUN
    if verdict_now == open_word:
        return OPEN
    return CONFIRMED if verdict_now == lean_then else OTHERWISE


def missing(names: Iterable[str], tag: str = TAG, data_dir: str | Path = DATA) -> list[str]:
    """The sweeps among ``names`` with no ``<name>.<tag>.json`` beside them yet."""
    return [n for n in names if not tagged(Path(data_dir) / f"{n}.json", tag).exists()]


def confirmatory(build: Callable[[], Family], names: Iterable[str], tag: str = TAG,
                 data_dir: str | Path = DATA) -> Family | None:
    """``build()`` (a family read from the ``tag`` files), or ``None`` while any of ``names`` has none."""
    return None if missing(names, tag, data_dir) else build()


NO_ROW = "no comparison on the fresh seeds"


def _reading(explore: Comparison, confirm: Comparison | None, family: Family | None) -> str:
    """:func:`reading`, where a claim that the fresh family lacks (e.g. a loss level no fresh seed reached) is
    ``open``: the confirmation ran and decided nothing about it."""
    if confirm is None and family is not None:
        return OPEN
    return reading(explore, confirm)


def _inside_margin(c: Comparison) -> bool:
    """A detected difference whose equivalence test passes too (both within the family's Holm corrections)."""
    return (c.outcome in (HIGHER, LOWER) and c.p_equiv_adj is not None and c.p_equiv_adj < c.alpha)


def _p(p: float | None) -> str:
    return "" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _cell(c: Comparison) -> str:
    return f"{c.effect} ({c.n} seeds)"


def side_by_side(explore: Family, confirm: Family | None, keys: Iterable[str] | None = None,
                 pending: str = NOT_RUN) -> str:
    """A Markdown table: each claim's effect and interval on the stored seeds and its lean there, then on the
    fresh seeds its effect, interval, Holm-adjusted p (within the family on the fresh seeds) and outcome, and the
    reading. ``pending`` fills the fresh-seeds cells while the confirmation has not run."""
    ex = explore.results()
    co = confirm.results() if confirm is not None else {}
    keys = list(keys) if keys is not None else list(ex)
    unknown = [k for k in keys if k not in ex]
    if unknown:
        raise ValueError(f"keys must be claims of the family {explore.name!r}; got {unknown}")
    lines = [f"| claim ({explore.name}) | stored seeds: effect | leans | fresh seeds: effect | adjusted p | outcome | "
             "reading |", "|---|---|---|---|---|---|---|"]
    for k in keys:
        e, c = ex[k], co.get(k)
        now = ([_cell(c), _p(c.p_equiv_adj if c.outcome == EQUIVALENT else c.p_adj),
                c.outcome + (f" (equivalence also passes, adjusted p {_p(c.p_equiv_adj)})" if _inside_margin(c) else
                             "")] if c is not None
               else [pending if confirm is None else NO_ROW, "", ""])
        lines.append("| " + " | ".join([e.claim, _cell(e), lean(e)] + now + [_reading(e, c, confirm)]) + " |")
    return "\n".join(lines)


def tally(explore: Family, confirm: Family | None, keys: Iterable[str] | None = None) -> dict[str, list[str]]:
    """``{reading: [claim keys]}`` over ``keys`` (default: the whole family), every reading present."""
    ex = explore.results()
    co = confirm.results() if confirm is not None else {}
    out = {r: [] for r in READINGS}
    for k in (keys if keys is not None else ex):
        out[_reading(ex[k], co.get(k), confirm)].append(k)
    return out


def tally_words(counts: Mapping[str, list[str]]) -> str:
    """``"6 confirmed, 3 open, 1 decided otherwise"`` (readings with no claim left out)."""
    parts = [f"{len(v)} {r}" for r, v in counts.items() if v]
    return ", ".join(parts) if parts else "no claims"


def frozen_judgments(path: str | Path = FROZEN_JUDGMENTS) -> dict:
    """The stored record of what the frozen rules decided on the exploratory sweeps."""
    return json.loads(Path(path).read_text())


# -- the words a page uses -----------------------------------------------------------------------------------------
def fresh_words(explore: Comparison, confirm: Comparison | None, pending: str = NOT_RUN) -> str:
    """One claim's result on the fresh seeds in words: ``confirmed on 10 fresh seeds: higher in 10 of 10, adjusted
    p 0.020``, ``open on 10 fresh seeds: higher in 7, lower in 3, adjusted p 0.688``, ``decided otherwise on 10
    fresh seeds: lower in 9 of 10, adjusted p 0.040``, or ``pending`` while it has not run."""
    r = reading(explore, confirm)
    if confirm is None:
        return pending
    c, n = confirm, confirm.n
    if c.outcome == EQUIVALENT:
        how = f"equivalent within ±{c._num(c.margin)}{' ' + c.unit if c.unit else ''}, adjusted p {_p(c.p_equiv_adj)}"
    elif c.outcome in (HIGHER, LOWER):
        how = f"{c.outcome} in {c.higher if c.outcome == HIGHER else c.lower} of {n}, adjusted p {_p(c.p_adj)}"
        if _inside_margin(c):
            how += (f"; a difference inside the ±{c._num(c.margin)}{' ' + c.unit if c.unit else ''} margin, whose "
                    f"equivalence test also passes (adjusted p {_p(c.p_equiv_adj)})")
    else:
        how = (f"higher in {c.higher}, lower in {c.lower}" if c.higher and c.lower else
               f"higher in {c.higher}" if c.higher else f"lower in {c.lower}" if c.lower else "no difference in any")
        how += f", adjusted p {_p(c.p_adj)}"
    return f"{r} on {n} fresh seeds: {how}"


def progress_words(names: Iterable[str], tag: str = TAG, data_dir: str | Path = DATA) -> str:
    """``all 5 sweeps rerun on the fresh seeds`` or ``3 of 5 sweeps rerun on the fresh seeds so far``."""
    names = list(names)
    done = len(names) - len(missing(names, tag, data_dir))
    if done == len(names):
        return f"all {len(names)} sweeps rerun on the fresh seeds"
    return f"{done} of {len(names)} sweeps rerun on the fresh seeds so far"


def frozen_words() -> str:
    """``commit 5b061a2 (tag confirm-frozen), fresh seeds 1000-1009``."""
    return f"commit {FROZEN_COMMIT[:7]} (tag {FROZEN_TAG}), fresh seeds {format_seeds(SEEDS)}"


def page_values(prefix: str, explore: Family, confirm: Family | None, names: Iterable[str],
                keys: Iterable[str] | None = None, data_dir: str | Path = DATA) -> dict[str, str]:
    """What a chapter's page glues about its confirmation, each under ``<prefix>_fresh_...``: ``state`` (the tally
    over ``keys``, or how far the reruns are), ``family`` (the tally over the whole family, naming each claim that
    did not confirm), ``frozen`` (:func:`frozen_words`), ``n`` (the fresh seeds), one
    :func:`fresh_words` per claim (``<prefix>_fresh_<key>``, every claim of the family), its reading alone
    (``<prefix>_fresh_<key>_reading``: ``confirmed``, ``open``, ...) and ``table``
    (:func:`side_by_side` over ``keys``, default the whole family)."""
    names = list(names)
    ex = explore.results()
    keys = list(keys) if keys is not None else list(ex)
    pending = f"{NOT_RUN} ({progress_words(names, data_dir=data_dir)})"
    co = confirm.results() if confirm is not None else {}
    out = {f"{prefix}_fresh_frozen": frozen_words(), f"{prefix}_fresh_n": str(len(SEEDS)),
           f"{prefix}_fresh_table": side_by_side(explore, confirm, keys, pending=pending)}
    if confirm is None:
        out[f"{prefix}_fresh_state"] = out[f"{prefix}_fresh_family"] = pending
    else:
        out[f"{prefix}_fresh_state"] = f"of the {len(keys)} claims, {tally_words(tally(explore, confirm, keys))}"
        counts = tally(explore, confirm)
        unsettled = [ex[k].claim for k in counts[OPEN] + counts[OTHERWISE]]
        out[f"{prefix}_fresh_family"] = (f"of the {len(ex)} claims, {tally_words(counts)}"
                                         + (f" (not confirmed: {'; '.join(unsettled)})" if unsettled else ""))
    for k in ex:
        missing_row = confirm is not None and k not in co
        out[f"{prefix}_fresh_{k}"] = (f"{OPEN} ({NO_ROW})" if missing_row else
                                      fresh_words(ex[k], co.get(k), pending=NOT_RUN))
        out[f"{prefix}_fresh_{k}_reading"] = _reading(ex[k], co.get(k), confirm)
    return out
