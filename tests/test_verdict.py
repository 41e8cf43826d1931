"""The closing chapter's verdicts follow from the stored sweeps, and change when the data would.

Each verdict is checked three ways: its value on the stored data (fixed here, so a regenerated sweep that stops
supporting it fails), its deciding numbers recomputed independently from the raw records, and its rule, by
perturbing the data the way a different outcome would look and checking that the verdict moves.
"""
import copy
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from skipnet.experiments import verdict as vd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "book" / "data"
CHAPTER = ROOT / "book" / "verdict.md"

EXPECTED = {"highway": vd.QUALIFIED, "identity": vd.QUALIFIED, "overfitting": vd.WRONG, "noise": vd.WRONG,
            "rnn": vd.QUALIFIED, "messy": vd.WRONG}


@pytest.fixture(scope="module")
def stored():
    return vd.load_stored(DATA)


@pytest.fixture()
def fresh(stored):
    return copy.deepcopy(stored)


def test_every_source_is_stored():
    for names in vd.SOURCES.values():
        for name in names:
            assert (DATA / f"{name}.json").exists(), name


def test_the_verdicts_on_the_stored_sweeps(stored):
    got = {key: v.verdict for key, v in vd.judge_all(stored).items()}
    assert got == EXPECTED
    assert list(got) == list(EXPECTED)                      # the order of the thread's claims


def test_each_verdict_states_its_measurement_with_its_numbers(stored):
    for key, v in vd.judge_all(stored).items():
        assert v.verdict in vd.VERDICTS
        assert v.reason and v.measure
        assert re.search(r"\d", v.measure), key
        assert all(isinstance(x, (int, float, str)) for x in v.numbers.values()), key


# -- the deciding numbers, recomputed from the raw records -------------------------------------------------------
def test_highway_counts_match_the_raw_rows(stored):
    conv = stored["highway_convergence"]
    v = vd.judge_highway(conv, stored["highway_intervention"])
    plain56 = [r for r in conv if r["depth"] == 56 and not r["residual"]]
    res56 = [r for r in conv if r["depth"] == 56 and r["residual"]]
    assert v.numbers["plain_reached"] == sum(r["status"] == "reached 0.1" for r in plain56)
    assert v.numbers["res_reached"] == sum(r["status"] == "reached 0.1" for r in res56)
    assert v.numbers["res_steps"] == np.median([r["steps_to"]["0.1"] for r in res56])
    assert v.numbers["budget"] == max(r["budget"] for r in plain56)


def test_noise_p_value_is_the_paired_t_test(stored):
    v = vd.judge_noise(stored["ensemble_noise"])
    recs = stored["ensemble_noise"]["residual-56"]
    j = recs[0]["no_first"]["ms"].index(6)
    other = [np.mean(r["no_first"]["other image"][j]) for r in recs]
    delete = [np.mean(r["no_first"]["delete"][j]) for r in recs]
    assert v.numbers["p"] == pytest.approx(stats.ttest_rel(other, delete).pvalue, rel=1e-9)
    assert v.numbers["diff_points"] == pytest.approx(100 * np.mean(np.subtract(other, delete)))


def test_messy_medians_match_the_raw_probes(stored):
    v = vd.judge_messy(stored["identity_decode"])
    rows = [r for r in stored["identity_decode"]["runs"] if r["kind"] == "residual" and r["n_blocks"] == 16]
    assert v.numbers["residual_x0"] == pytest.approx(np.median([r["decode"]["16"]["x0"] for r in rows]))
    assert v.numbers["residual_worst"] == pytest.approx(np.median([min(r["decode"]["16"]["writes"]) for r in rows]))


def test_rnn_longest_lag_is_solved_in_every_seed_and_the_next_is_not(stored):
    recall = stored["transformers_recall"]
    v = vd.judge_rnn(recall, stored["transformers_depth"], stored["transformers_noresid"])
    T = v.numbers["tanh"]
    rows = [r for r in recall if r["label"] == "tanh RNN"]
    assert any(all(r["solved"] for r in rows if r["seq_len"] == T and r["lr"] == lr) for lr in {r["lr"] for r in rows})
    longer = [r for r in rows if r["seq_len"] > T]
    assert longer and not any(all(r["solved"] for r in longer if r["lr"] == lr and r["seq_len"] == min(x["seq_len"] for x in longer))
                              for lr in {r["lr"] for r in longer})


# -- each rule moves with the data --------------------------------------------------------------------------------
def test_highway_rule(fresh):
    conv, inter = fresh["highway_convergence"], fresh["highway_intervention"]
    res = {r["seed"]: r for r in conv if r["depth"] == 56 and r["residual"]}
    for r in conv:
        if r["depth"] == 56 and not r["residual"]:
            r["steps_to"] = dict(res[r["seed"]]["steps_to"])
    assert vd.judge_highway(conv, inter).verdict == vd.WRONG             # plain trains too: the skip is not needed
    conv = copy.deepcopy(vd.load_stored(DATA)["highway_convergence"])
    res_loss = {r["seed"]: r["epoch_loss"][-1] for r in inter if r["mode"] == "project" and r["residual"]}
    for r in inter:
        if r["mode"] == "project" and not r["residual"]:
            r["epoch_loss"][-1] = 2 * res_loss[r["seed"]]
    assert vd.judge_highway(conv, inter).verdict == vd.HOLDS             # a healthy gradient would have sufficed


def test_highway_rejects_a_target_that_was_not_stored(stored):
    with pytest.raises(ValueError, match="target"):
        vd.judge_highway(stored["highway_convergence"], stored["highway_intervention"], target=0.3)


def test_identity_rule(fresh):
    zg, zgl, fit = fresh["identity_zero_gamma"], fresh["identity_zero_gamma_long"], fresh["identity_fit_fair"]
    for r in zgl["runs"]:
        r["depth"] = {20: 56, 56: 20}[r["depth"]]                        # the deeper net loses at the long budget
    assert vd.judge_identity(zg, zgl, fit).verdict == vd.WRONG
    for r in zgl["runs"]:
        r["depth"] = {20: 56, 56: 20}[r["depth"]]
    for r in zg["runs"]:
        r["depth"] = {20: 56, 56: 20}[r["depth"]]                        # and the deeper one wins early too
    assert vd.judge_identity(zg, zgl, fit).verdict == vd.HOLDS


def test_overfitting_rule(fresh):
    gaps = fresh["ensemble_gaps"]
    for a, b in zip(gaps["plain-56"], gaps["residual-56"]):
        a["evals"] = copy.deepcopy(b["evals"])                          # plain-56 fits after all
    assert vd.judge_overfitting(gaps).verdict != vd.WRONG
    for label in ("residual-8", "residual-20"):                          # residual gaps clearly smaller at equal loss
        for k, r in enumerate(gaps[label]):
            for e in r["evals"]:
                e["test_loss"] = e["train_loss"] + 0.001 * (1 + 0.1 * k)
    for label in ("plain-8", "plain-20"):
        for k, r in enumerate(gaps[label]):
            for e in r["evals"]:
                e["test_loss"] = e["train_loss"] + 0.5 + 0.01 * k
    assert vd.judge_overfitting(gaps).verdict == vd.HOLDS
    gaps["plain-56"] = copy.deepcopy(vd.load_stored(DATA)["ensemble_gaps"]["plain-56"])
    assert vd.judge_overfitting(gaps).verdict == vd.OPEN                 # underfits, yet gaps differ at equal loss


def test_noise_rule(fresh):
    noise = fresh["ensemble_noise"]
    for k, r in enumerate(noise["residual-56"]):
        r["no_first"]["other image"] = [[a + 0.05 + 0.001 * k for a in sets] for sets in r["no_first"]["delete"]]
    assert vd.judge_noise(noise).verdict == vd.HOLDS                     # any image's output would serve
    for r in noise["residual-56"]:
        r["no_first"]["other image"] = copy.deepcopy(r["no_first"]["delete"])
    assert vd.judge_noise(noise).verdict == vd.OPEN


def test_rnn_rule(fresh):
    recall, depth, nr = fresh["transformers_recall"], fresh["transformers_depth"], fresh["transformers_noresid"]
    for r in recall:
        if r["label"] == "LSTM (forget gate)":
            r["solved"] = True
    assert vd.judge_rnn(recall, depth, nr).verdict == vd.HOLDS          # the forget gate no longer costs
    nr[0]["stuck"] = False
    assert vd.judge_rnn(recall, depth, nr).verdict == vd.WRONG          # a deep stack without skips that trains


def test_messy_rule(fresh):
    dec = fresh["identity_decode"]
    for r in dec["runs"]:
        if r["kind"] == "residual":
            for d in r["decode"].values():
                d["x0"], d["writes"] = 0.1, [0.1 for _ in d["writes"]]
    assert vd.judge_messy(dec).verdict == vd.HOLDS                       # the sum would have hidden its terms


def test_debated_numbers(stored):
    d = vd.debated(stored)
    assert d["len_trained"] < d["len_fresh_batch"] < d["len_fresh_off"] < d["len_typical"] + 1e-9
    assert 0 <= d["cos_fresh_positive"] < d["cos_positive"] <= 1
    assert d["short"]["seeds"] >= 3


# -- the chapter -----------------------------------------------------------------------------------------------------
def _prose(text: str) -> str:
    """The chapter's Markdown outside code cells, front matter, directive options, math and roles."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    text = re.sub(r"```\{code-cell\}.*?\n```", "", text, flags=re.S)
    text = re.sub(r"```\{literalinclude\}.*?\n```", "", text, flags=re.S)
    text = re.sub(r"^:[a-z]+:.*$", "", text, flags=re.M)
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]+\$", "", text, flags=re.S)
    return re.sub(r"\{[a-z:]+\}`[^`]*`", "", text)


def test_the_chapter_types_no_measured_number():
    prose = _prose(CHAPTER.read_text())
    # allowed: the thread's "1 + 1" and "var1", the 8x8 digits, the exercises' own thresholds, the chi = 1 line,
    # section and exercise numbers, and the names of networks and data sets
    allowed = {"1 + 1", "var1", "8x8", "0.1", "5 %", "1 %", "chi = 1"}
    for token in allowed:
        prose = prose.replace(token, "")
    prose = re.sub(r"^## \d\.|^\| \d \||Exercise \d", "", prose, flags=re.M)
    prose = re.sub(r"\b(plain|residual|ResNet|CIFAR)-\d+", "", prose)
    assert re.findall(r"\d", prose) == [], re.findall(r".{30}\d.{30}", prose)


def test_the_table_has_one_row_per_claim_with_everything_glued():
    text = CHAPTER.read_text()
    claims = [line for line in text.splitlines() if re.match(r"\| \d \| .*\{ref\}", line)]
    whys = [line for line in text.splitlines() if re.match(r"\| \d \| \{glue:text\}`v_\w+_reason`", line)]
    assert len(claims) == len(whys) == len(EXPECTED)
    for key, claim, why in zip(EXPECTED, claims, whys):
        for part in (f"v_{key}`", f"v_{key}_measure"):
            assert part in claim, (key, part)
        for part in (f"v_{key}_reason", f"p_{key}"):
            assert part in why, (key, part)


def test_the_glossary_is_used_from_every_chapter():
    terms = re.search(r"```\{glossary\}\n(.*?)\n```", CHAPTER.read_text(), re.S).group(1)
    names = {line.strip().lower() for line in terms.splitlines() if line and not line.startswith(" ")}
    assert len(names) >= 15
    for chapter in ("intro", "highway", "identity", "ensemble", "transformers"):
        used = re.findall(r"\{term\}`([^`]+)`", (ROOT / "book" / f"{chapter}.md").read_text())
        assert used, chapter
        for u in used:
            target = re.search(r"<([^>]+)>", u)
            assert (target.group(1) if target else u).strip().lower() in names, (chapter, u)
