"""The book's inference protocol: how a claim over seeds is tested, corrected and put into words.

Every chapter states its claims through this module, so that its prose cannot say more than its statistics.

* :func:`compare` is a paired comparison over seeds (``a[i]`` and ``b[i]`` come from the same seed). It returns
  the mean difference ``a - b`` with its 95 % interval (Student t), the count of seeds in each direction, and a
  two-sided p-value from the exact sign-flip permutation test of the mean difference (every one of the 2^n sign
  patterns, through ``scipy.stats.permutation_test``), a test that needs no normality and is exact at small n. Its
  smallest possible p-value is 2 / 2^n: five seeds can never reach p < 0.05 (0.0625 at best), six can (0.031).
* "No difference" is never read from a large p. It can be said only through an equivalence test against a margin
  stated in advance: two one-sided exact sign-flip tests (TOST) at the same level, of the mean difference above
  ``-margin`` and below ``margin``; otherwise the sentence is "not detected" with the interval. The equivalence test
  is of the same kind as the difference test, so it is no easier to pass (one-sided smallest p 1 / 2^n).
* A chapter declares its :class:`Family` of tests; the p-values are Holm-adjusted within it (the adjusted p of the
  k-th smallest of m p-values is the running maximum of (m - k + 1) p), and :meth:`Family.table` lists the family:
  claim, test, n, effect with interval, raw and adjusted p, and the outcome.
* :attr:`Comparison.sentence` is the only wording a chapter glues for a claim: it is chosen here from the outcome.

A decision rule that reads these outcomes must meet its negative control (a case where it has to give the other
answer); see :mod:`skipnet.experiments.verdict` and ``tests/test_verdict.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = ["ALPHA", "SIGN_FLIP", "TOST", "HIGHER", "LOWER", "EQUIVALENT", "NOT_DETECTED", "OUTCOMES",
           "Comparison", "compare", "holm", "Family", "min_p"]

ALPHA = 0.05
SIGN_FLIP = "exact sign-flip permutation test, paired, two-sided"
TOST = "two one-sided exact sign-flip tests (TOST)"
HIGHER, LOWER, EQUIVALENT, NOT_DETECTED = "higher", "lower", "equivalent", "not detected"
OUTCOMES = (HIGHER, LOWER, EQUIVALENT, NOT_DETECTED)
_EXACT_MAX_N = 20          # 2^20 sign patterns; beyond that a Monte Carlo permutation test with a fixed seed


def min_p(n: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can give with ``n`` seeds: 2 / 2^n."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return min(1.0, 2.0 / 2 ** n)


def _as_differences(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape) if np.ndim(b) == 0 else \
        np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair seed by seed: a has {a.size} values, b has {b.size}")
    if a.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 seeds, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite (a diverged run is a result to report, not a number to average)")
    return a - b


def _sign_flip_p(d: np.ndarray, alternative: str = "two-sided") -> float:
    if np.all(d == 0):
        return 1.0
    exact = d.size <= _EXACT_MAX_N
    res = stats.permutation_test((d,), np.mean, permutation_type="samples", alternative=alternative,
                                 n_resamples=np.inf if exact else 100_000, rng=np.random.default_rng(0))
    return float(min(1.0, res.pvalue))


def _t_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    m, n = float(d.mean()), d.size
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        return m, m
    h = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return m - h, m + h


def _tost_p(d: np.ndarray, margin: float) -> float:
    """p of TOST: the larger of the two one-sided exact sign-flip tests of mean > -margin (on d + margin) and
    mean < margin (on d - margin), so that "no difference" meets the same kind of test, and the same small-n
    floor (one-sided 1 / 2^n), as a difference."""
    return max(_sign_flip_p(d + margin, "greater"), _sign_flip_p(d - margin, "less"))


@dataclass(frozen=True)
class Comparison:
    """One paired claim over seeds, with its test, effect, interval and (once in a family) adjusted p.

    ``scale`` and ``unit`` only format the sentence (100 and "points" print accuracy differences in points)."""
    claim: str
    n: int
    mean: float
    ci: tuple[float, float]
    higher: int                   # seeds with a > b
    lower: int                    # seeds with a < b
    p: float
    test: str = SIGN_FLIP
    margin: float | None = None
    p_equiv: float | None = None
    p_adj: float | None = None
    p_equiv_adj: float | None = None
    alpha: float = ALPHA
    scale: float = 1.0
    unit: str = ""
    fmt: str = ".2f"
    differences: tuple = field(default=(), repr=False)

    @property
    def ties(self) -> int:
        return self.n - self.higher - self.lower

    @property
    def p_used(self) -> float:
        """The p-value the outcome is decided on: Holm-adjusted once in a family, raw before."""
        return self.p if self.p_adj is None else self.p_adj

    @property
    def outcome(self) -> str:
        """``higher`` / ``lower`` (a detected difference of a - b), ``equivalent`` (TOST within the margin), or
        ``not detected``."""
        if self.p_used < self.alpha:
            return HIGHER if self.mean > 0 else LOWER
        pe = self.p_equiv if self.p_equiv_adj is None else self.p_equiv_adj
        if pe is not None and pe < self.alpha:
            return EQUIVALENT
        return NOT_DETECTED

    @property
    def detected(self) -> bool:
        return self.outcome in (HIGHER, LOWER)

    def _num(self, x: float) -> str:
        s = format(self.scale * x, self.fmt)
        return "0" if float(s) == 0 else s

    @property
    def effect(self) -> str:
        """``-16.2 points, 95 % interval [-22.0, -10.4]``."""
        unit = f" {self.unit}" if self.unit else ""
        lo, hi = self.ci
        return f"{self._num(self.mean)}{unit}, 95 % interval [{self._num(lo)}, {self._num(hi)}]"

    @property
    def sentence(self) -> str:
        """The words a chapter may use for this claim, chosen by the outcome."""
        o = self.outcome
        if o in (HIGHER, LOWER):
            k = self.higher if o == HIGHER else self.lower
            return f"{o} in {k} of {self.n} seeds, mean difference {self.effect}"
        if o == EQUIVALENT:
            unit = f" {self.unit}" if self.unit else ""
            return (f"equivalent within ±{self._num(self.margin)}{unit} ({self.n} seeds), mean difference "
                    f"{self.effect}")
        lean = (f"higher in {self.higher}, lower in {self.lower}" if self.higher and self.lower else
                f"higher in {self.higher}" if self.higher else f"lower in {self.lower}")
        floor = (f"; {self.n} seeds cannot reach the {self.alpha:.0%} level (an exact test's smallest p is "
                 f"{min_p(self.n):.3f})" if min_p(self.n) >= self.alpha else "")
        return f"not detected ({lean} of {self.n} seeds), mean difference {self.effect}{floor}"

    def row(self) -> dict:
        return {"claim": self.claim, "test": self.test + (f"; {TOST}, margin {self._num(self.margin)}"
                                                         if self.margin is not None else ""),
                "n": self.n, "effect": self.effect, "p": self.p, "p_adj": self.p_adj,
                "p_equiv": self.p_equiv, "outcome": self.outcome}


def compare(a: Sequence[float], b: Sequence[float] | float, claim: str = "", *, margin: float | None = None,
            alpha: float = ALPHA, scale: float = 1.0, unit: str = "", fmt: str = ".2f") -> Comparison:
    """Paired comparison of ``a`` against ``b`` over seeds (``b`` may be one number: a one-sample comparison).

    ``margin`` (in the units of a - b, stated before the data are seen) adds an equivalence test (TOST), the only
    way the outcome can read ``equivalent``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if margin is not None and not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a positive number, got {margin!r}")
    d = _as_differences(a, b)
    return Comparison(claim=claim, n=int(d.size), mean=float(d.mean()), ci=_t_interval(d, 0.95),
                      higher=int((d > 0).sum()), lower=int((d < 0).sum()), p=_sign_flip_p(d), margin=margin,
                      p_equiv=None if margin is None else _tost_p(d, margin), alpha=alpha, scale=scale, unit=unit,
                      fmt=fmt, differences=tuple(float(x) for x in d))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: sort the m p-values, multiply the k-th smallest (k from 1) by m - k + 1,
    take the running maximum, cap at 1, and return them in the input order."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size and (np.any(p < 0) or np.any(p > 1) or not np.isfinite(p).all()):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, (m - k) * p[i])
        adj[i] = min(1.0, running)
    return adj.tolist()


class Family:
    """A chapter's family of tests. Add each claim with :meth:`add`; :meth:`results` Holm-adjusts the difference
    p-values (and, separately, the equivalence p-values) within the family."""

    def __init__(self, name: str, alpha: float = ALPHA):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        self.name, self.alpha = name, alpha
        self._items: dict[str, Comparison] = {}

    def add(self, key: str, a, b, claim: str, **kw) -> Comparison:
        if key in self._items:
            raise ValueError(f"the family {self.name!r} already has a claim {key!r}")
        self._items[key] = compare(a, b, claim, alpha=self.alpha, **kw)
        return self[key]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, key: str) -> Comparison:
        return self.results()[key]

    def results(self) -> dict[str, Comparison]:
        keys = list(self._items)
        adj = holm([self._items[k].p for k in keys])
        eq = [k for k in keys if self._items[k].p_equiv is not None]
        eq_adj = dict(zip(eq, holm([self._items[k].p_equiv for k in eq])))
        return {k: replace(self._items[k], p_adj=a, p_equiv_adj=eq_adj.get(k)) for k, a in zip(keys, adj)}

    def table(self) -> str:
        """The family as a Markdown table: claim, test, n, effect with interval, raw and Holm-adjusted p, outcome."""
        def p_str(p):
            return "" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")
        lines = [f"| claim ({self.name}, Holm within {len(self)} tests) | test | n | effect | p | adjusted p | "
                 "outcome |", "|---|---|---|---|---|---|---|"]
        for c in self.results().values():
            r = c.row()
            lines.append(f"| {r['claim']} | {r['test']} | {r['n']} | {r['effect']} | {p_str(r['p'])} | "
                         f"{p_str(r['p_adj'])} | {r['outcome']} |")
        return "\n".join(lines)
