"""The inference protocol against independent computations: the sign-flip p-value by enumerating every sign
pattern, the interval and TOST by the t distribution written out, Holm by its definition, and the sentence a claim
may use chosen by the outcome alone."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from skipnet import inference as I


def enumerated_sign_flip_p(d):
    """Two-sided p of the paired sign-flip test, by enumerating all 2^n sign patterns (shares no code with
    scipy's permutation_test)."""
    d = np.asarray(d, dtype=np.float64)
    obs = abs(d.mean())
    hits = sum(abs(np.mean(d * s)) >= obs - 1e-12 for s in itertools.product((1.0, -1.0), repeat=d.size))
    return hits / 2 ** d.size


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [2, 3, 5, 6, 8, 10])
def test_sign_flip_p_is_the_enumerated_one(seed, n):
    rng = np.random.default_rng(100 * n + seed)
    a = rng.normal(0.3 * (seed % 3), 1.0, n)
    b = rng.normal(0.0, 1.0, n)
    c = I.compare(a, b)
    assert c.p == pytest.approx(enumerated_sign_flip_p(a - b), abs=1e-12)
    assert c.test == I.SIGN_FLIP


def test_five_seeds_cannot_reach_the_five_percent_level():
    """The reviewers' point: all five seeds in one direction give p = 2/32 = 0.0625 with an exact test."""
    a, b = [0.50, 0.60, 0.55, 0.58, 0.61], [0.60, 0.70, 0.66, 0.70, 0.72]
    c = I.compare(a, b, scale=100, unit="points", fmt=".1f")
    assert c.p == pytest.approx(0.0625)
    assert I.min_p(5) == pytest.approx(0.0625) and I.min_p(6) == pytest.approx(0.03125)
    assert c.outcome == I.NOT_DETECTED and c.lower == 5
    assert "not detected (lower in 5 of 5 seeds)" in c.sentence and "cannot reach the 5% level" in c.sentence
    c6 = I.compare(a + [0.52], b + [0.64])
    assert c6.p == pytest.approx(0.03125) and c6.outcome == I.LOWER


@pytest.mark.parametrize("n", [3, 5, 10, 30])
def test_interval_is_the_student_t_interval(n):
    d = np.random.default_rng(n).gamma(2.0, 1.0, n) - 1.5          # skewed differences
    c = I.compare(d, 0.0)
    ref = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert c.ci == pytest.approx((ref.low, ref.high), rel=1e-10)
    se = d.std(ddof=1) / math.sqrt(n)
    assert c.ci[1] - c.ci[0] == pytest.approx(2 * stats.t.ppf(0.975, n - 1) * se, rel=1e-10)
    assert c.mean == pytest.approx(d.mean())


def test_large_n_falls_back_to_a_seeded_monte_carlo_test_close_to_the_t_test():
    d = np.random.default_rng(3).normal(0.25, 1.0, 40)
    c1, c2 = I.compare(d, 0.0), I.compare(d, 0.0)
    assert c1.p == c2.p                                             # reproducible
    assert c1.p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, abs=0.02)


def test_counts_in_each_direction_and_ties():
    c = I.compare([1, 2, 3, 4, 5], [0, 2, 4, 3, 5])
    assert (c.higher, c.lower, c.ties) == (2, 1, 2)


def enumerated_one_sided_p(d, greater):
    """One-sided p of the sign-flip test of the mean, by enumerating all 2^n sign patterns."""
    d = np.asarray(d, dtype=np.float64)
    obs = d.mean()
    means = [np.mean(d * s) for s in itertools.product((1.0, -1.0), repeat=d.size)]
    hits = sum(m >= obs - 1e-12 for m in means) if greater else sum(m <= obs + 1e-12 for m in means)
    return hits / 2 ** d.size


@pytest.mark.parametrize("margin", [0.05, 0.1, 0.3])
@pytest.mark.parametrize("n", [5, 8, 10])
def test_tost_is_the_larger_of_two_one_sided_sign_flip_tests(margin, n):
    d = np.random.default_rng(7 + n).normal(0.02, 0.05, n)
    c = I.compare(d, 0.0, margin=margin)
    expected = max(enumerated_one_sided_p(d + margin, True), enumerated_one_sided_p(d - margin, False))
    assert c.p_equiv == pytest.approx(expected, abs=1e-12)


def test_equivalence_is_no_easier_to_reach_than_a_difference():
    """Five seeds all well inside the margin: one-sided p = 1/32 each way, so TOST passes alone but not once Holm
    has two equivalence claims to adjust; ten seeds pass."""
    five = I.compare([0.001, -0.002, 0.0, 0.001, 0.002], 0.0, margin=1.0)
    assert five.p_equiv == pytest.approx(1 / 32) and five.outcome == I.EQUIVALENT
    f = I.Family("two equivalences")
    f.add("a", [0.001, -0.002, 0.0, 0.001, 0.002], 0.0, "a", margin=1.0)
    f.add("b", [0.002, -0.001, 0.0, 0.001, 0.003], 0.0, "b", margin=1.0)
    assert all(c.outcome == I.NOT_DETECTED for c in f.results().values())
    ten = I.compare(np.linspace(-0.01, 0.01, 10), 0.0, margin=1.0)
    assert ten.p_equiv == pytest.approx(1 / 1024) and ten.outcome == I.EQUIVALENT


def test_no_difference_is_said_only_through_an_equivalence_margin():
    d = np.random.default_rng(11).normal(0.0, 0.01, 10)
    without = I.compare(d, 0.0)
    assert without.outcome == I.NOT_DETECTED and "equivalent" not in without.sentence
    assert "95 % interval [" in without.sentence
    within = I.compare(d, 0.0, margin=0.05)
    assert within.outcome == I.EQUIVALENT and within.sentence.startswith("equivalent within ±0.05")
    too_tight = I.compare(d, 0.0, margin=0.001)
    assert too_tight.outcome == I.NOT_DETECTED


def test_a_detected_difference_names_its_direction_count_and_interval():
    a = np.linspace(0.1, 0.2, 10)
    c = I.compare(a, 0.3, scale=100, unit="points", fmt=".0f")
    assert c.outcome == I.LOWER
    assert c.sentence.startswith("lower in 10 of 10 seeds, mean difference -15 points, 95 % interval [")
    assert I.compare(0.3 + a, 0.3).outcome == I.HIGHER


def test_holm_matches_its_definition():
    p = [0.01, 0.04, 0.03, 0.005]
    assert I.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0, 0.2, rng.integers(1, 9))
        m, order = len(p), np.argsort(p)
        expected = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        out = np.empty(m)
        out[order] = expected
        assert I.holm(p) == pytest.approx(out.tolist())
    assert I.holm([]) == []


def test_holm_rejects_what_is_not_a_p_value():
    with pytest.raises(ValueError, match="p-values"):
        I.holm([0.1, 1.5])


def test_a_family_adjusts_within_itself_and_the_adjustment_can_undo_a_raw_detection():
    f = I.Family("demo")
    six_up = [1, 2, 3, 4, 5, 6]
    f.add("clear", six_up, 0, "six seeds, all higher")                     # raw p = 0.03125
    f.add("noise", [1, -1, 2, -2, 1, 0.5], 0, "mixed", margin=5)
    r = f.results()
    assert r["clear"].p == pytest.approx(0.03125) and r["clear"].p_adj == pytest.approx(0.0625)
    assert r["clear"].outcome == I.NOT_DETECTED                              # Holm over 2 tests
    assert I.compare(six_up, 0).outcome == I.HIGHER                          # alone it is detected
    assert r["noise"].outcome == I.EQUIVALENT
    table = f.table()
    assert table.count("\n") == 3 and "Holm within 2 tests" in table and "0.031 | 0.062" in table
    with pytest.raises(ValueError, match="already has a claim 'clear'"):
        f.add("clear", six_up, 0, "again")


@pytest.mark.parametrize("kwargs, match", [
    (dict(a=[1.0], b=[0.0]), "at least 2 seeds"),
    (dict(a=[1.0, 2.0], b=[0.0, 1.0, 2.0]), "pair seed by seed"),
    (dict(a=[1.0, float("nan")], b=[0.0, 0.0]), "finite"),
    (dict(a=[1.0, 2.0], b=0.0, margin=-1.0), "margin must be a positive number"),
    (dict(a=[1.0, 2.0], b=0.0, alpha=1.5), "alpha must be in"),
])
def test_bad_input_names_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        I.compare(**kwargs)


def test_all_zero_differences_are_not_detected():
    c = I.compare([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert c.p == 1.0 and c.outcome == I.NOT_DETECTED and c.ci == (0.0, 0.0)
