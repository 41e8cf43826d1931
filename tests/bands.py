"""How a live training is compared with a stored sweep made on another machine.

Training is chaotic: on another CPU (another vector ISA, another BLAS kernel) the same seed is, in effect, another
seed. So a live run is never compared with a stored number bit for bit, or within a band narrower than the spread
between seeds. It is compared with the span of the stored seeds, widened by that span itself on each side:

    band = [min - R, max + R],   R = max - min   (in log space for quantities that vary over orders of magnitude)

For n independent seeds from a normal distribution the range R is about 2.3 sigma (n = 5) or 1.7 sigma (n = 3), so
the band reaches about 3.5 sigma (n = 5) or 2.6 sigma (n = 3) beyond the mean: a fresh seed falls outside it with
probability below 1 % (n = 3) or 0.05 % (n = 5), while a code change that moves the result by more than the spread
between seeds lands outside. ``floor`` keeps a minimal width where the stored seeds happen to agree (accuracy
quantized by 359 test images, a loss that is exactly chance).
"""
from __future__ import annotations

import math
from typing import Iterable

__all__ = ["seed_band", "assert_in_seed_band"]


def seed_band(stored: Iterable[float], log: bool = False, floor: float = 0.0) -> tuple[float, float]:
    values = [float(v) for v in stored]
    if len(values) < 2:
        raise ValueError(f"a seed band needs at least two stored seeds, got {len(values)}")
    if log:
        if min(values) <= 0:
            raise ValueError("log bands need positive values")
        lo, hi = math.log(min(values)), math.log(max(values))
        r = max(hi - lo, floor)
        return math.exp(lo - r), math.exp(hi + r)
    lo, hi = min(values), max(values)
    r = max(hi - lo, floor)
    return lo - r, hi + r


def assert_in_seed_band(live: float, stored: Iterable[float], log: bool = False, floor: float = 0.0,
                        what: str = "value") -> None:
    stored = list(stored)
    lo, hi = seed_band(stored, log, floor)
    assert lo <= live <= hi, (f"live {what} {live:.4g} outside the band [{lo:.4g}, {hi:.4g}] of the stored seeds "
                              f"{[round(float(v), 4) for v in stored]}")
