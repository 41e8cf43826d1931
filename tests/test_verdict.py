"""The closing chapter's verdicts follow from the stored sweeps through the inference protocol, and change when
the data would.

Each rule is checked four ways: its verdict and lean on the stored data (fixed here, so a regenerated sweep that
stops supporting them fails); its deciding statistics recomputed independently from the raw records (pairs matched
by seed here, p-values by enumerating every sign pattern, intervals by scipy's t, TOST by enumerated one-sided sign patterns, Holm by its definition);
its negative controls, where it must give the other answer; and its decisions on synthetic seeds enough to decide.
"""
import copy
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from skipnet.experiments import verdict as vd
from skipnet.experiments import verdict_controls as vc

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "book" / "data"
CHAPTER = ROOT / "book" / "verdict.md"

# five seeds can never reach p < 0.05 with an exact test (three even less): every verdict is open on the stored data
EXPECTED = {key: vd.OPEN for key in ("highway", "identity", "overfitting", "noise", "rnn", "messy")}
LEAN = {"highway": vd.QUALIFIED, "identity": vd.QUALIFIED, "overfitting": vd.WRONG, "noise": vd.QUALIFIED,
        "rnn": vd.QUALIFIED, "messy": vd.WRONG}


@pytest.fixture(scope="module")
def stored():
    return vd.load_stored(DATA)


@pytest.fixture(scope="module")
def verdicts(stored):
    return vd.judge_all(stored)


def sign_flip_p(d):
    """Two-sided p of the paired sign-flip test by enumerating all 2^n sign patterns."""
    d = np.asarray(d, dtype=np.float64)
    obs = abs(d.mean())
    hits = sum(abs(np.mean(d * s)) >= obs - 1e-12 for s in itertools.product((1.0, -1.0), repeat=d.size))
    return hits / 2 ** d.size


def one_sided_sign_flip_p(d, greater):
    """One-sided p of the sign-flip test of the mean, by enumerating all 2^n sign patterns."""
    d = np.asarray(d, dtype=np.float64)
    means = [np.mean(d * s) for s in itertools.product((1.0, -1.0), repeat=d.size)]
    obs = d.mean()
    return (sum(m >= obs - 1e-12 for m in means) if greater else sum(m <= obs + 1e-12 for m in means)) / 2 ** d.size


def tost_p(d, margin):
    """TOST as two one-sided sign-flip tests, of the mean above -margin and below margin."""
    d = np.asarray(d, dtype=np.float64)
    return max(one_sided_sign_flip_p(d + margin, True), one_sided_sign_flip_p(d - margin, False))


def check(c, a_by_seed, b_by_seed, margin=None):
    """The comparison ``c`` is the paired one of the two ``{seed: value}`` dicts, matched by seed here."""
    assert set(a_by_seed) == set(b_by_seed)
    seeds = sorted(a_by_seed)
    d = np.array([a_by_seed[s] for s in seeds], dtype=float) - np.array([b_by_seed[s] for s in seeds], dtype=float)
    assert c.n == len(seeds)
    assert c.mean == pytest.approx(d.mean(), abs=1e-12)
    assert c.p == pytest.approx(sign_flip_p(d), abs=1e-12)
    if np.ptp(d) > 0:
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
        assert c.ci == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)
        if margin is not None:
            assert c.p_equiv == pytest.approx(tost_p(d, margin), rel=1e-9, abs=1e-12)
    return d


def test_every_source_is_stored():
    for names in vd.SOURCES.values():
        for name in names:
            assert (DATA / f"{name}.json").exists(), name


def test_the_verdicts_and_leans_on_the_stored_sweeps(verdicts):
    assert {k: v.verdict for k, v in verdicts.items()} == EXPECTED
    assert {k: v.lean for k, v in verdicts.items()} == LEAN
    assert list(verdicts) == list(EXPECTED)                    # the order of the thread's claims
    for v in verdicts.values():
        assert v.verdict in vd.VERDICTS and v.lean in vd.VERDICTS
        assert all(isinstance(x, (int, float, str)) for x in v.numbers.values()), v.key
        assert f'lean to "{v.lean}"' in v.reason                 # an open verdict says where the seeds lean


def test_one_holm_family_over_every_rule(stored, verdicts):
    family = vd.verdict_family(stored)
    claims = [(k, name, c) for k, v in verdicts.items() for name, c in v.claims.items()]
    assert len(family) == len(claims) == 14
    raw = np.array([c.p for _, _, c in claims])
    order = np.argsort(raw, kind="stable")
    adj, running = np.empty(raw.size), 0.0
    for k, i in enumerate(order):                              # Holm by its definition
        running = max(running, (raw.size - k) * raw[i])
        adj[i] = min(1.0, running)
    assert [c.p_adj for _, _, c in claims] == pytest.approx(adj.tolist())
    table = family.table()
    assert table.count("\n") == len(claims) + 1
    for _, _, c in claims:
        assert c.claim in table


# -- the deciding statistics, recomputed from the raw records (pairs matched by seed here) ------------------------
def test_highway_speedup_is_the_censored_log_ratio_paired_by_seed(stored, verdicts):
    conv = stored["highway_convergence"]
    steps = {res: {r["seed"]: (r["steps_to"]["0.1"] or r["budget"]) for r in conv
                   if r["depth"] == 56 and r["residual"] == res} for res in (False, True)}
    v = verdicts["highway"]
    d = check(v.claims["speed"], {s: math.log10(x) for s, x in steps[False].items()},
              {s: math.log10(x) for s, x in steps[True].items()}, margin=math.log10(vd.SPEED_MARGIN))
    assert v.numbers["speedup"] == pytest.approx(10 ** d.mean())
    proj = {res: {r["seed"]: r["epoch_loss"][-1] for r in stored["highway_intervention"]
                  if r["mode"] == "project" and r["residual"] == res} for res in (False, True)}
    check(v.claims["intervention"], {s: math.log10(x) - 1 for s, x in proj[False].items()},
          {s: math.log10(x) for s, x in proj[True].items()})
    assert v.numbers["plain_reached"] == sum(r["status"] == "reached 0.1" for r in conv
                                             if r["depth"] == 56 and not r["residual"])
    assert f"at least {10 ** d.mean():.0f}x" in v.measure and f"p = {v.claims['speed'].p:.3f}" in v.measure
    assert f"adjusted {v.claims['speed'].p_adj:.3f}" in v.measure


def test_highway_never_calls_a_large_speedup_wrong(stored):
    """Review A4: at the easiest target the old rule said 'wrong' for a speed-up of about 37x."""
    for target in (1.0, 0.5, 0.2, 0.1):
        v = vd.judge_highway(stored["highway_convergence"], stored["highway_intervention"], target=target)
        assert v.numbers["speedup"] > 10 and vd.WRONG not in (v.verdict, v.lean), target


def test_highway_rejects_a_target_that_was_not_stored(stored):
    with pytest.raises(ValueError, match="target"):
        vd.judge_highway(stored["highway_convergence"], stored["highway_intervention"], target=0.3)


def test_identity_contrasts_are_log_losses_paired_by_seed(stored, verdicts):
    def loss(name, depth):
        return {r["seed"]: math.log10(r["train_loss"]) for r in stored[name]["runs"]
                if r["depth"] == depth and r["init"] == "standard"}
    v = verdicts["identity"]
    long_ = check(v.claims["long"], loss("identity_zero_gamma_long", 56), loss("identity_zero_gamma_long", 20),
                  margin=math.log10(vd.DEPTH_MARGIN))
    short = check(v.claims["short"], loss("identity_zero_gamma", 56), loss("identity_zero_gamma", 20))
    assert f"{10 ** short.mean():.1f}x after" in v.measure and f"{10 ** long_.mean():.2f}x after" in v.measure
    assert f"p = {v.claims['long'].p:.3f}" in v.measure


def _gap_at(evals, level):
    """The gap where the training loss first reaches ``level``, interpolated in log(loss) (written out here)."""
    for k, e in enumerate(evals):
        if e["train_loss"] <= level:
            g1 = e["test_loss"] - e["train_loss"]
            if k == 0 or evals[k - 1]["train_loss"] <= level:
                return g1
            p = evals[k - 1]
            t = math.log(p["train_loss"] / level) / math.log(p["train_loss"] / e["train_loss"])
            return (p["test_loss"] - p["train_loss"]) * (1 - t) + g1 * t
    return None


def test_overfitting_gaps_are_paired_by_seed_not_by_rank(stored, verdicts):
    """N9: pairing plain and residual runs by anything but their seed moves the interval and the p-value."""
    gaps, v = stored["ensemble_gaps"], verdicts["overfitting"]
    for d in (8, 20):
        per = {kind: {r["seed"]: [_gap_at(r["evals"], lv) for lv in (0.1, 0.05, 0.03, 0.02)]
                      for r in gaps[f"{kind}-{d}"]} for kind in ("plain", "residual")}
        ok = [i for i in range(4) if all(per[k][s][i] is not None for k in per for s in per[k])]
        check(v.claims[f"gap{d}"], {s: np.mean([g[i] for i in ok]) for s, g in per["plain"].items()},
              {s: np.mean([g[i] for i in ok]) for s, g in per["residual"].items()}, margin=vd.GAP_MARGIN)
        assert v.claims[f"gap{d}"].effect in v.measure
    final = {kind: {r["seed"]: math.log10(r["evals"][-1]["train_loss"]) for r in gaps[f"{kind}-56"]}
             for kind in ("plain", "residual")}
    check(v.claims["underfit"], {s: x - 1 for s, x in final["plain"].items()}, final["residual"])
    assert f"{v.numbers['plain_deep_loss']:.2f} against {v.numbers['res_deep_loss']:.3f}" in v.measure


def test_noise_contrasts_are_paired_by_seed(stored, verdicts):
    recs = stored["ensemble_noise"]["residual-56"]
    j = recs[0]["no_first"]["ms"].index(6)

    def acc(variant):
        return {r["seed"]: float(np.mean(r["no_first"][variant][j])) for r in recs}
    v = verdicts["noise"]
    check(v.claims["useful"], {r["seed"]: r["no_first"]["intact"] for r in recs}, acc("delete"), margin=vd.NOISE_MARGIN)
    check(v.claims["specific"], acc("other image"), {r["seed"]: r["no_first"]["intact"] for r in recs},
          margin=vd.NOISE_MARGIN)
    d = np.array([acc("other image")[s] - acc("delete")[s] for s in sorted(acc("delete"))])
    assert v.numbers["diff_points"] == pytest.approx(100 * d.mean())
    assert v.numbers["worse_seeds"] == int((d < 0).sum())
    assert f"{v.numbers['other']:.0%} correct, against {v.numbers['intact']:.0%} intact" in v.measure
    assert f"and {v.numbers['delete']:.0%} with them deleted" in v.measure
    assert f"p = {v.claims['specific'].p:.3f}" in v.measure


def test_rnn_lags_are_the_longest_each_seed_solved(stored, verdicts):
    def longest(label, recall=stored["transformers_recall"]):
        out = {}
        for seed in (0, 1, 2):
            solved = {T for T in {r["seq_len"] for r in recall if r["label"] == label}
                      if any(r["solved"] for r in recall if (r["label"], r["seed"], r["seq_len"]) == (label, seed, T))}
            lags = sorted({r["seq_len"] for r in recall if r["label"] == label})
            k = next((i for i, T in enumerate(lags) if T not in solved), len(lags))
            out[seed] = math.log2(lags[k - 1] if k else lags[0] / 2)
        return out
    v = verdicts["rnn"]
    check(v.claims["carousel"], longest("LSTM, no forget gate"), longest("tanh RNN"), margin=vd.LAG_MARGIN)
    race = stored["transformers_race"]
    check(v.claims["forget"], longest("LSTM, forget bias 3", race), longest("LSTM, no forget gate", race))
    assert {v.numbers["race_free"], v.numbers["race_additive"]} == {100} == {v.numbers["race_max_T"]}
    assert v.numbers["race_gated"] == v.numbers["race_gru"] == 40
    best = {s: min(r["train_loss"] for r in stored["transformers_noresid"] if r["seed"] == s and r["n_blocks"] == 6)
            for s in (0, 1, 2)}
    res = {r["seed"]: r["train_loss"] for r in stored["transformers_depth"]
           if r["residual"] and r["n_blocks"] == 6 and r["placement"] == "post"}
    check(v.claims["transformer"], best, res)
    assert f"tanh RNN {v.numbers['tanh']}, LSTM without forget gate {v.numbers['lstm']} (" in v.measure
    assert f"forget bias 3 {v.numbers['race_gated']}, GRU {v.numbers['race_gru']} (" in v.measure
    assert f"stuck in {v.numbers['nr_stuck']} of {v.numbers['nr_runs']} runs" in v.measure


def test_messy_contrasts_the_sum_with_its_plain_twin_and_with_the_input_alone(stored, verdicts):
    rows, control = stored["identity_decode"]["runs"], stored["identity_decode_control"]["runs"]

    def probe(kind, f, runs=rows):
        return {r["seed"]: f(r["decode"]["16"]) for r in runs if r["kind"] == kind and r["n_blocks"] == 16}
    v = verdicts["messy"]
    check(v.claims["input"], probe("residual", lambda d: d["x0"]), probe("plain", lambda d: d["x0"]))
    beyond = probe("residual", lambda d: sum(w - x for w, x in zip(d["writes"], d["writes_from_x0"])) / 16, control)
    check(v.claims["beyond"], beyond, {s: 0.0 for s in beyond})
    assert all(b > 0.1 for b in beyond.values())            # the stored read-back: every seed well above the input
    assert v.numbers["residual_x0"] == pytest.approx(np.median(list(probe("residual", lambda d: d["x0"]).values())))
    assert f"{v.numbers['residual_x0']:.0%} of the input's variance" in v.measure
    assert f"against {v.numbers['plain_x0']:.0%} from the plain twin" in v.measure
    assert f"against {v.numbers['residual_from_x0']:.2f} from the input alone" in v.measure


def test_short_cost_is_paired_by_seed(stored):
    short = stored["ensemble_short"]
    normal = {r["seed"]: r["test_acc"] for r in short["normal"]}
    cut = {r["seed"]: r["test_acc"] for r in short["k=13 (paths)"]}
    out = vd.short_cost(short)
    d = np.array([normal[s] - cut[s] for s in sorted(normal)])
    assert out["k"] == 13 and out["seeds"] == 5
    assert out["cost_points"] == pytest.approx(100 * d.mean()) and out["p"] == pytest.approx(sign_flip_p(d))
    assert out["outcome"] == "not detected" and "not detected" in out["sentence"]


# -- negative controls: where each rule must give the other answer ---------------------------------------------------
@pytest.mark.parametrize("control", vc.CONTROLS, ids=lambda c: f"{c.rule}: {c.name}")
def test_each_rule_gives_the_other_answer_on_its_negative_control(stored, verdicts, control):
    v = control.build(stored)
    assert getattr(v, control.field) == control.expected
    assert getattr(verdicts[control.rule], control.field) != control.expected        # the other answer


def test_every_rule_has_a_negative_control():
    assert {c.rule for c in vc.CONTROLS} == set(EXPECTED)


def test_the_plain_twin_passes_the_old_absolute_threshold(stored):
    """Review A1: the plain twin (no sum) reads above R^2 0.5 too, so a threshold cannot be the rule; the
    comparative rule's control above gives it no 'wrong'."""
    v = vd.judge_messy(stored["identity_decode"], stored["identity_decode_control"])
    assert v.numbers["plain_x0"] >= 0.5 and v.numbers["plain_worst"] >= 0.5
    assert v.numbers["residual_from_x0"] >= 0.5            # and so does the input alone: every write is its function


# -- the decisions, on synthetic seeds enough to decide ---------------------------------------------------------------
def _decode(n_seeds, res_x0, plain_x0, writes=0.9, from_x0=0.7):
    runs = []
    for s in range(n_seeds):
        for kind, x0 in (("residual", res_x0), ("plain", plain_x0), ("dense", 0.99)):
            runs.append({"kind": kind, "n_blocks": 4, "seed": s,
                         "decode": {"4": {"x0": x0 + 0.01 * s, "writes": [writes - 0.1 + 0.002 * s, writes],
                                          "writes_from_x0": [from_x0, from_x0 + 0.001 * s], "class_acc": 0.9}}})
    return {"runs": runs}


@pytest.mark.parametrize("terms, expected", [((0.9, 0.6), vd.WRONG), ((0.6, 0.9), vd.HOLDS), ((0.7, 0.7), vd.OPEN),
                                             ((0.9, 0.6, 0.5, 0.8), vd.HOLDS),      # the writes below the input's
                                             ((0.7, 0.7, 0.9, 0.7), vd.OPEN)])      # input kept no better than by the twin
def test_messy_decides_with_ten_seeds(terms, expected):
    d = _decode(10, *terms)
    assert vd.judge_messy(d, d).verdict == expected
    d = _decode(5, *terms)
    assert vd.judge_messy(d, d).verdict == vd.OPEN                                   # five seeds cannot decide


def test_noise_decides_with_ten_seeds(stored):
    recs = stored["ensemble_noise"]["residual-56"]
    noise = {"residual-56": [dict(copy.deepcopy(recs[s % 5]), seed=s) for s in range(10)]}
    for s, r in enumerate(noise["residual-56"]):
        r["no_first"]["intact"] += 0.001 * s                                         # distinct seeds
    assert vd.judge_noise(noise).verdict == vd.QUALIFIED


# -- the sensitivity table ------------------------------------------------------------------------------------------
def test_sensitivity_rows_recomputed(stored):
    rows = vc.sensitivity(stored)
    keys = {(r["rule"], r["constant"], r["value"]) for r in rows}
    assert len(keys) == len(rows)
    for rule, consts in vc.CONSTANTS.items():
        for name, (default, values) in consts.items():
            assert {(rule, name, x) for x in values} <= keys and default in values
    row = {(r["rule"], r["constant"], r["value"]): r for r in rows}
    # noise at m = 1: both contrasts by hand; every raw p of the family is >= 1/16, so Holm keeps all open
    recs = stored["ensemble_noise"]["residual-56"]
    j = recs[0]["no_first"]["ms"].index(1)
    spec = np.mean([np.mean(r["no_first"]["other image"][j]) - r["no_first"]["intact"] for r in recs])
    useful = np.mean([r["no_first"]["intact"] - np.mean(r["no_first"]["delete"][j]) for r in recs])
    lean = vd.QUALIFIED if useful > vd.NOISE_MARGIN and spec < -vd.NOISE_MARGIN else None
    assert row[("noise", "m", 1)]["lean"] == lean and row[("noise", "m", 1)]["verdict"] == vd.OPEN
    # highway at the easiest target: plain slower in every seed (censored), intervention ratio above 10
    conv = stored["highway_convergence"]
    st = {res: {r["seed"]: r["steps_to"]["1"] or r["budget"] for r in conv if r["depth"] == 56 and r["residual"] == res}
          for res in (False, True)}
    assert all(st[False][s] > 1.5 * st[True][s] for s in st[True])
    assert row[("highway", "target", 1.0)]["lean"] == vd.QUALIFIED
    # alpha 0.10: the smallest adjusted p is 14 x 1/16 > 0.10, and no rule's contrasts reach a decided verdict
    assert all(r["verdict"] == vd.OPEN for r in rows if r["constant"] == "alpha")
    table = vc.sensitivity_table(rows)
    assert "| noise | m | 1: open (qualified); 2:" in table and "**6**: open (qualified)" in table
    assert table.count("\n") + 1 == 2 + len({(r["rule"], r["constant"]) for r in rows})


def test_debated_numbers(stored):
    d = vd.debated(stored)
    assert d["len_trained"] < d["len_fresh_batch"] < d["len_fresh_off"] < d["len_typical"] + 1e-9
    assert 0 <= d["cos_fresh_positive"] < d["cos_positive"] <= 1
    assert d["short"] == vd.short_cost(stored["ensemble_short"])


# -- the chapter -----------------------------------------------------------------------------------------------------
def _prose(text: str) -> str:
    """The chapter's Markdown outside code cells, front matter, directive options, math and roles."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    text = re.sub(r"```\{code-cell\}.*?\n```", "", text, flags=re.S)
    text = re.sub(r"```\{literalinclude\}.*?\n```", "", text, flags=re.S)
    text = re.sub(r"^:[a-z]+:.*$", "", text, flags=re.M)
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]+\$", "", text, flags=re.S)
    return re.sub(r"\{[a-z:]+\}`[^`]*`", "", text)


PAGES = [CHAPTER, *sorted((ROOT / "book" / "verdict").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_chapter_types_no_measured_number(page):
    prose = _prose(page.read_text())
    # allowed: the thread's "1 + 1" and "var1", the 8x8 digits, the exercises' own thresholds, the chi = 1 line,
    # the thread's item numbers, section and exercise numbers, and the names of networks and data sets
    allowed = {"1 + 1", "var1", "8x8", "0.1", "5 %", "1 %", "chi = 1"}
    for token in allowed:
        prose = prose.replace(token, "")
    prose = re.sub(r"\b(replies|reply|follow-ups|follow-up) \d( (to|and) \d)?", "", prose, flags=re.I)
    prose = re.sub(r"^## \d\.|^\| \d \||Exercise \d", "", prose, flags=re.M)
    prose = re.sub(r"\b(plain|residual|ResNet|CIFAR)-\d+", "", prose)
    assert re.findall(r"\d", prose) == [], re.findall(r".{30}\d.{30}", prose)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_verdict_is_typed(page):
    """A verdict word in the prose only inside quotation marks or italics (a rule's possible answers, the reader's
    prediction); every verdict on the page is glued from the rules."""
    prose = _prose(page.read_text())
    prose = re.sub(r'\*[^*]+\*|"[^"\n]*"|\u201c[^\u201d]*\u201d', "", prose)
    typed = re.findall(r".{0,40}\b(?:holds|wrong|(?:is|are|stays|remains) open)\b.{0,20}", prose)
    assert typed == [], typed


def test_the_table_has_one_row_per_claim_with_everything_glued():
    text = CHAPTER.read_text()
    claims = [line for line in text.splitlines() if re.match(r"\| \d \| .*\{ref\}", line)]
    whys = [line for line in text.splitlines() if re.match(r"\| \d \| \{glue:text\}`v_\w+_lean_reason`", line)]
    assert len(claims) == len(whys) == len(EXPECTED)
    for key, claim, why in zip(EXPECTED, claims, whys):
        for part in (f"v_{key}`", f"v_{key}_lean", f"v_{key}_claim", f"v_{key}_thread", f"c_{key}`"):
            assert part in claim, (key, part)
        assert f"v_{key}_lean_reason" in why, key
    rules = (ROOT / "book" / "verdict" / "rules.md").read_text()
    for key in EXPECTED:
        assert f"{{glue:text}}`p_{key}`" in rules and f"v_{key}_measure" not in text, key


def test_the_glossary_is_in_the_sidebar_and_every_term_used_is_defined():
    from skipnet import reading
    assert "book/glossary" in reading.toc(ROOT)["reference"]
    terms = re.search(r"```\{glossary\}\n(.*?)\n```", (ROOT / "book" / "glossary.md").read_text(), re.S).group(1)
    names = {line.strip().lower() for line in terms.splitlines() if line and not line.startswith(" ")}
    assert len(names) >= 30
    pages = sorted((ROOT / "book").rglob("*.md"))
    for chapter in ("intro", "highway", "identity", "ensemble", "transformers", "verdict"):
        assert re.search(r"\{term\}`", (ROOT / "book" / f"{chapter}.md").read_text()), chapter
    for page in pages:
        for u in re.findall(r"\{term\}`([^`]+)`", page.read_text()):
            target = re.search(r"<([^>]+)>", u)
            assert (target.group(1) if target else u).strip().lower() in names, (page.name, u)


def test_a_confirmation_is_read_by_the_same_call_and_judged_by_the_same_rules(tmp_path):
    """``load_stored(dir, tag)`` reads ``<name>.<tag>.json``; a missing confirmation is an error that names it."""
    import shutil
    names = sorted({n for ns in vd.SOURCES.values() for n in ns})
    for n in names:
        shutil.copy(DATA / f"{n}.json", tmp_path / f"{n}.confirm.json")
    confirm = vd.load_stored(tmp_path, tag="confirm")
    assert {k: v.verdict for k, v in vd.judge_all(confirm).items()} == \
           {k: v.verdict for k, v in vd.judge_all(vd.load_stored(DATA)).items()}
    (tmp_path / f"{names[0]}.confirm.json").unlink()
    with pytest.raises(FileNotFoundError, match=f"{names[0]}.*confirm"):
        vd.load_stored(tmp_path, tag="confirm")


@pytest.mark.parametrize("m, dissenters", [(1, 0), (6, 0), (14, 0), (14, 1), (14, 2), (25, 1)])
def test_seeds_needed_is_the_fewest_with_which_the_exact_test_decides(m, dissenters):
    """With n seeds of which ``dissenters`` go the other way by the smallest amounts, the protocol's exact test
    times m (Holm's first step) reaches 0.05 at n = seeds_needed and not at n - 1."""
    from skipnet.experiments.verdict_page import seeds_needed
    from skipnet.inference import compare

    def holm_p(n):
        d = np.r_[1.0 + 0.01 * np.arange(n - dissenters), -0.001 * np.arange(1, dissenters + 1)]
        return compare(d, 0.0, "x").p * m
    n = seeds_needed(m, dissenters=dissenters)
    assert holm_p(n) <= 0.05 < holm_p(n - 1)
