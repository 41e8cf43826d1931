"""What the closing chapter's pages show, built from the verdicts so that nothing on them is typed: the glue
values, the papers' numbers, the six rules as a table, the negative controls as a table, the answer in brief,
and the column where the confirmation on fresh seeds stands once it has run."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

from skipnet import confirmation as cf
from skipnet.experiments import verdict as vd
from skipnet.experiments.verdict_base import OPEN, QUALIFIED, WRONG, Verdict

__all__ = ["NAMES", "CLAIMS", "PAPERS", "RULES", "page_values", "confirmation", "confirmation_cells", "rules_table",
           "controls_table", "seeds_needed", "answer_in_brief", "LEAN_WORDS", "SOURCE_NAMES", "progress",
           "fresh_answer", "verdicts_table", "readings"]

#: Each claim's name in a sentence.
NAMES = {"highway": "the gradient highway", "identity": "the identity argument", "overfitting": "overfitting",
         "noise": "useful noise", "rnn": "the RNN analogy", "messy": "the messy sum"}

#: Each claim: the thread's item it tests (numbered as the thread's page quotes it) and the claim in short.
CLAIMS = {"highway": ("reply 1", "gradients flow easily, so very deep nets train"),
          "identity": ("reply 2", "a block that does nothing is the identity, so depth cannot hurt"),
          "overfitting": ("reply 3", "skips are about overfitting: a simpler model generalizes"),
          "noise": ("follow-up 4", "the inner layers add a useful perturbation (\u201cuseful noise\u201d) to the "
                                   "skip signal"),
          "rnn": ("follow-up 5", "it is like an RNN; LSTMs and GRUs work by their forget gate; Transformers use "
                                 "skips to go deep"),
          "messy": ("the question", "the sum makes everything messy")}

#: What each claim's lean on the stored seeds says in plain words, keyed by (claim, lean). The leans were frozen
#: with the rules (``tests/test_confirmation.py``); a lean that differed would find no words here and fail.
LEAN_WORDS = {("highway", QUALIFIED): "skips make deep networks fast to optimize, and not only by keeping the "
                                      "gradient large",
              ("identity", QUALIFIED): "extra residual blocks stop costing fit once trained long enough (the deeper "
                                       f"net's training loss within a factor {vd.DEPTH_MARGIN:g} of the shallower "
                                       "one's)",
              ("overfitting", WRONG): "the deep plain network underfits rather than overfits (its training loss over "
                                      f"{vd.UNDERFIT_RATIO:g} times its residual twin's; their generalization gaps at "
                                      f"matched training loss within {vd.GAP_MARGIN:g} nats of each other)",
              ("noise", QUALIFIED): "the branches add input-specific corrections, not noise",
              ("rnn", QUALIFIED): "the LSTM's relative is its additive cell: recalling the first token, a task that "
                                  "never rewards forgetting, the forget gate was not needed to carry the signal",
              ("messy", WRONG): "as far as a linear read-out can tell, the sum keeps what went into it readable"}

#: Every stored sweep a verdict reads (each rerun on the fresh seeds).
SOURCE_NAMES = tuple(sorted({n for names in vd.SOURCES.values() for n in names}))

#: The papers' numbers, quoted (their scale: CIFAR-10, ImageNet, translation; far larger and longer trained).
PAPERS = {
    "highway": "ResNet-1202 reaches a training error below 0.1 % on CIFAR-10, while plain-56 trains worse than "
               "plain-20 (the ResNet paper); on ImageNet their BatchNorm plain nets kept healthy gradient norms "
               "(its section 4.1)",
    "identity": "CIFAR-10 test error 8.75 % (ResNet-20), 6.97 % (56), 6.43 % (110), but 7.93 % at 1202 layers, "
                "which the authors put down to overfitting (the ResNet paper)",
    "overfitting": "ImageNet: plain-34 has a higher training error than plain-18 throughout training (the ResNet "
                   "paper's Fig. 4) and a higher top-1 validation error (28.54 % against 27.94 %), so degradation "
                   "is not overfitting; networks fit random labels perfectly (Zhang et al. 2017)",
    "noise": "not tested in the papers; deleting one block of ResNet-110 barely changes CIFAR-10 error "
             "(Veit et al. 2016); block outputs align with the negative gradient (Jastrzebski et al. 2018)",
    "rnn": "the LSTM bridges time lags of more than 1000 steps (Hochreiter and Schmidhuber 1997); a gated "
           "shortcut in ResNet-110 gives 8.70 % error against 6.61 % for the identity (the identity-mappings "
           "paper)",
    "messy": "the stream is the input plus every branch, x_L = x_l + sum of F_i, in pre-activation networks "
             "(the identity-mappings paper, eq. 4); linear probes (Alain and Bengio 2016) and the logit lens and direct logit "
             "attribution of Transformers (nostalgebraist 2020, Elhage et al. 2021) read such streams back",
}

#: The rule of each claim (its function in :mod:`skipnet.experiments.verdict` and ``verdict_rules``).
RULES = {"highway": vd.judge_highway, "identity": vd.judge_identity, "overfitting": vd.judge_overfitting,
         "noise": vd.judge_noise, "rnn": vd.judge_rnn, "messy": vd.judge_messy}


def page_values(stored: dict, data_dir: str | Path) -> dict:
    """Every value the closing chapter's pages glue: per verdict ``v_<key>`` (verdict), ``_lean``, ``_reason``,
    ``_measure``, each claim's sentence and each number; ``d_*`` (the debated section), ``p_*`` (the papers),
    the networks' scale."""
    out = {}
    for key, v in vd.judge_all(stored).items():
        out.update({f"v_{key}": v.verdict, f"v_{key}_lean": v.lean, f"v_{key}_reason": v.reason,
                    f"v_{key}_lean_reason": v.lean_reason[:1].upper() + v.lean_reason[1:],
                    f"v_{key}_name": NAMES[key],
                    f"v_{key}_measure": v.measure, f"v_{key}_thread": CLAIMS[key][0],
                    f"v_{key}_claim": CLAIMS[key][1]})
        out.update({f"v_{key}_{name}_sentence": c.sentence for name, c in v.claims.items()})
        out.update({f"v_{key}_{name}": value for name, value in v.numbers.items()})
    for name, value in vd.debated(stored).items():
        if isinstance(value, dict):
            out.update({f"d_{name}_{sub}": x for sub, x in value.items()})
        else:
            out[f"d_{name}"] = value
    out.update({f"p_{key}": text for key, text in PAPERS.items()})
    out["v_seed_range"] = answer_in_brief(vd.judge_all(stored))["seeds"]
    out.update({f"v_{name}": value for name, value in vd.scale(Path(data_dir)).items()})
    return out


def confirmation(data_dir: str | Path, tag: str = "confirm") -> dict[str, Verdict] | None:
    """The verdicts on the confirmatory sweeps (``<name>.<tag>.json`` beside each exploratory one), judged by the
    same rules; ``None`` while any of them is missing."""
    try:
        stored = vd.load_stored(Path(data_dir), tag=tag)
    except FileNotFoundError:
        return None
    return vd.judge_all(stored)


def progress(data_dir: str | Path) -> str:
    """How far the reruns of the verdicts' sweeps are (:func:`skipnet.confirmation.progress_words`)."""
    return cf.progress_words(SOURCE_NAMES, data_dir=data_dir)


def readings(data_dir: str | Path) -> dict[str, str]:
    """Each verdict's reading on the fresh seeds (``confirmed``, ``open``, ``decided otherwise``, ``not yet run``),
    for a page that states a lean of the closing chapter beside a sentence the verdict word does not judge."""
    explore = vd.judge_all(vd.load_stored(Path(data_dir)))
    fresh = confirmation(data_dir)
    return {k: cf.verdict_reading(v.lean, None if fresh is None else fresh[k].verdict, OPEN)
            for k, v in explore.items()}


def confirmation_cells(explore: dict[str, Verdict], confirmed: dict[str, Verdict] | None,
                       pending: str = cf.NOT_RUN) -> dict[str, str]:
    """The text of the fresh-seeds column for each claim: the verdict of the same rules on the fresh seeds and
    whether it confirms the lean on the stored seeds (``confirmed``, ``open``, ``decided otherwise``), or
    ``pending`` while the confirmation has not finished."""
    if confirmed is None:
        return {key: pending for key in CLAIMS}
    out = {}
    for key in CLAIMS:
        r = cf.verdict_reading(explore[key].lean, confirmed[key].verdict, OPEN)
        out[key] = confirmed[key].verdict if r == cf.OPEN else f"{confirmed[key].verdict} ({r})"
    return out


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def fresh_answer(explore: dict[str, Verdict], confirmed: dict[str, Verdict] | None, pending: str) -> dict[str, str]:
    """The answer in brief's sentences about the fresh seeds: ``state`` (how many leans confirmed, or how far the
    confirmation is) and ``words`` (what the confirmed leans say in plain words, and which are not confirmed; before
    the confirmation, every lean's words, as directions)."""
    words = {k: LEAN_WORDS[(k, v.lean)] for k, v in explore.items()}
    if confirmed is None:
        return {"state": f"the confirmation is not finished ({pending})",
                "words": "Until it is, the leans are directions, not verdicts: in words, "
                         + "; ".join(words[k] for k in CLAIMS) + "."}
    readings = {k: cf.verdict_reading(explore[k].lean, confirmed[k].verdict, OPEN) for k in CLAIMS}
    counts = {r: [k for k in CLAIMS if readings[k] == r] for r in (cf.CONFIRMED, cf.OPEN, cf.OTHERWISE)}
    state = ", ".join(f"{len(ks)} {r}" for r, ks in counts.items() if ks)
    out = [f"What the confirmed leans say: {'; '.join(words[k] for k in counts[cf.CONFIRMED])}."
           if counts[cf.CONFIRMED] else "No lean confirmed."]
    if counts[cf.OPEN]:
        out.append(f"Not decided on the fresh seeds: {_listed([NAMES[k] for k in counts[cf.OPEN]])}.")
    if counts[cf.OTHERWISE]:
        out.append(f"Decided another way than the stored seeds pointed: "
                   f"{_listed([f'{NAMES[k]} ({confirmed[k].verdict})' for k in counts[cf.OTHERWISE]])}.")
    return {"state": f"of the {len(CLAIMS)} leans, {state}", "words": " ".join(out)}


def verdicts_table(explore: dict[str, Verdict], confirmed: dict[str, Verdict] | None, pending: str) -> str:
    """Each claim's verdict and lean on the stored seeds beside its verdict on the fresh seeds and the reading."""
    lines = ["| claim | stored seeds: verdict (lean) | fresh seeds: verdict (lean) | reading |", "|---|---|---|---|"]
    for k in CLAIMS:
        e = explore[k]
        if confirmed is None:
            now, r = pending, cf.NOT_RUN
        else:
            c = confirmed[k]
            now, r = f"{c.verdict} ({c.lean})", cf.verdict_reading(e.lean, c.verdict, OPEN)
        lines.append(f"| {NAMES[k]} | {e.verdict} ({e.lean}) | {now} | {r} |")
    return "\n".join(lines)


def _rule_sentence(func) -> str:
    doc = inspect.getdoc(func) or ""
    m = re.search(r"Rule: (.*?)(?:\n\n|\Z)", doc, re.S)
    if not m:
        raise ValueError(f"{func.__name__} has no 'Rule:' paragraph in its docstring")
    return " ".join(m.group(1).split())


def _contrast_sentence(func) -> str:
    """The docstring's paragraphs between the claim (the first) and the rule."""
    paragraphs = (inspect.getdoc(func) or "").split("\n\n")
    middle = [p for p in paragraphs[1:] if not p.startswith("Rule:")]
    return " ".join(" ".join(middle).split())


def rules_table() -> str:
    """The six rules as a Markdown table, read from their docstrings (what each contrasts and how it decides)."""
    lines = ["| | claim | rule (`verdict.py`) | what it compares | how it decides |", "|---|---|---|---|---|"]
    for i, (key, func) in enumerate(RULES.items(), 1):
        lines.append(f"| {i} | {CLAIMS[key][1]} ({CLAIMS[key][0]}) | `{func.__name__}` | "
                     f"{_contrast_sentence(func).replace('|', '/')} | {_rule_sentence(func).replace('|', '/')} |")
    return "\n".join(lines)


def controls_table(rows: list[dict]) -> str:
    """The negative controls (:func:`skipnet.experiments.verdict_controls.run_controls`) as a Markdown table."""
    lines = ["| rule | negative control | its verdict (lean) | must be | on the stored data (lean) | passes |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['rule']} | {r['control']} | {r['verdict']} ({r['lean']}) | {r['field']}: "
                     f"{r['expected']} | {r['stored_verdict']} ({r['stored_lean']}) | "
                     f"{'yes' if r['passes'] else 'no'} |")
    return "\n".join(lines)


def seeds_needed(m: int, alpha: float = 0.05, dissenters: int = 0) -> int:
    """The fewest seeds with which the exact sign-flip test can decide a comparison in a Holm family of ``m``,
    when ``dissenters`` seeds go against the others by the smallest amounts: the sign patterns at least as extreme
    as the observed one are then those that flip any of the dissenters back, so the smallest two-sided p is
    2 * 2^dissenters / 2^n, and it must reach alpha / m."""
    if m < 1 or dissenters < 0:
        raise ValueError(f"m must be at least 1 and dissenters at least 0, got m={m}, dissenters={dissenters}")
    n = dissenters + 1
    while 2 * 2 ** dissenters / 2 ** n > alpha / m:
        n += 1
    return n


def answer_in_brief(verdicts: dict[str, Verdict]) -> dict[str, str]:
    """The closing chapter's answer in brief, as sentences built from the verdicts: how many are decided, what
    the undecided ones lean to (claims named in words, grouped by lean), and how many seeds they rest on."""
    n_open = sum(v.verdict == OPEN for v in verdicts.values())
    decided = [f"{NAMES[k]}: {v.verdict}" for k, v in verdicts.items() if v.verdict != OPEN]
    state = (f"{n_open} of the {len(verdicts)} verdicts are {OPEN}"
             + (f" (decided: {'; '.join(decided)})" if decided else ""))
    groups: dict[str, list[str]] = {}
    for k, v in verdicts.items():
        if v.verdict == OPEN:
            groups.setdefault(v.lean, []).append(NAMES[k])

    def listed(items):
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    leans = "; ".join(f"{listed(items)} toward \u201c{lean}\u201d" for lean, items in groups.items())
    ns = [c.n for v in verdicts.values() for c in v.claims.values()]
    seeds = f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)} to {max(ns)}"
    m = sum(len(v.claims) for v in verdicts.values())
    return {"state": state, "leans": leans, "seeds": seeds, "family": str(m),
            "needed": str(seeds_needed(m)), "needed_one": str(seeds_needed(m, dissenters=1))}
