"""Mean-field predictions for the gradient at initialization: the chi of Poole et al. (2016) and Schoenholz et
al. (2017), for the chi phase diagram of *The gradient highway*.

In a wide network with weights ``W ~ N(0, g^2 / n)`` and zero biases, the pre-activations of layer ``l`` are
Gaussian with variance ``q_l``. Backpropagation through a plain layer ``h_{l+1} = W phi(h_l)`` multiplies the
squared gradient norm by

    chi(q) = g^2 E[phi'(h)^2],   h ~ N(0, q),

and the forward pass maps ``q -> g^2 E[phi(h)^2]``. At the fixed point ``q*`` of that map, chi < 1 means the gradient
vanishes exponentially toward the input, chi > 1 that it explodes; chi = 1 is the critical line (ReLU: g = sqrt 2,
He init; tanh: g = 1; the sigmoid: g near 10). A pre-activation residual block ``h + s W phi(h)`` instead multiplies
the squared gradient by ``1 + s^2 chi(q_l)`` and adds ``s^2 g^2 E[phi^2]`` to the variance: a sum, not a product.

:func:`predicted_log_ratio` iterates these maps from the stem's variance and returns the predicted
``log10 ||dL/dx_0|| / ||dL/dx_L||``, the quantity :func:`skipnet.experiments.highway.chi_phase` measures.
Expectations are Gauss-Hermite quadrature (exact to ~1e-10 for these smooth integrands; ReLU's kink is handled
by its closed forms).
"""
from __future__ import annotations

import math

import numpy as np

from skipnet.config import check_choice, check_float, check_int

__all__ = ["ACTIVATIONS", "VARIANTS", "moments", "chi", "fixed_point_chi", "critical_gain", "predicted_profile",
           "predicted_log_ratio"]

ACTIVATIONS = ("sigmoid", "tanh", "relu")
VARIANTS = ("plain", "residual", "branch/sqrt(L)")
_Z, _W = np.polynomial.hermite_e.hermegauss(121)
_W = _W / _W.sum()


def _phi(act: str, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if act == "sigmoid":
        s = 0.5 * (1 + np.tanh(u / 2))
        return s, s * (1 - s)
    if act == "tanh":
        t = np.tanh(u)
        return t, 1 - t * t
    raise ValueError(act)


def moments(act: str, q: float) -> tuple[float, float]:
    """``(E[phi(h)^2], E[phi'(h)^2])`` for ``h ~ N(0, q)``."""
    check_choice("activation", act, ACTIVATIONS)
    if act == "relu":
        return q / 2, 0.5
    f, df = _phi(act, math.sqrt(max(q, 0.0)) * _Z)
    return float(_W @ (f * f)), float(_W @ (df * df))


def chi(act: str, gain: float, q: float) -> float:
    """``g^2 E[phi'(h)^2]`` at variance ``q``: the factor by which one plain layer scales the squared gradient."""
    return gain ** 2 * moments(act, q)[1]


def fixed_point_chi(act: str, gain: float, q0: float = 1.0, iterations: int = 500) -> float:
    """chi at the fixed point of ``q -> g^2 E[phi^2]`` (for ReLU, chi = g^2 / 2 at any q)."""
    q = q0
    for _ in range(iterations):
        q_new = gain ** 2 * moments(act, q)[0]
        if not 1e-300 < q_new < 1e300:
            break
        if abs(q_new - q) < 1e-12 * max(1.0, q):
            q = q_new
            break
        q = q_new
    return chi(act, gain, q)


def critical_gain(act: str, low: float = 0.1, high: float = 100.0) -> float:
    """The gain at which the fixed-point chi of a plain stack is 1 (bisection in log gain)."""
    lo, hi = math.log(low), math.log(high)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if fixed_point_chi(act, math.exp(mid)) < 1:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def predicted_profile(act: str, gain: float, n_blocks: int, variant: str = "plain", q0: float = 1.0) -> np.ndarray:
    """Mean-field ``log10 ||dL/dx_l|| / ||dL/dx_L||`` for l = 0 ... L (the last entry is 0), for ``n_blocks`` blocks
    of weight gain ``gain``; ``q0`` is the variance of the stream entering the first block.

    plain: ``x <- W phi(x)``; residual: ``x <- x + W phi(x)``; branch/sqrt(L): ``x <- x + W phi(x) / sqrt(L)``.
    """
    check_choice("activation", act, ACTIVATIONS)
    check_choice("variant", variant, VARIANTS)
    check_float("gain", gain, 0, 1e3, low_open=True)
    n_blocks = check_int("n_blocks", n_blocks, 1, 100_000)
    s2 = 1.0 / n_blocks if variant == "branch/sqrt(L)" else 1.0
    q, steps = float(q0), []
    for _ in range(n_blocks):
        e_phi2, e_dphi2 = moments(act, q)
        c = gain ** 2 * e_dphi2
        if variant == "plain":
            steps.append(0.5 * math.log10(c) if c > 0 else -math.inf)
            q = gain ** 2 * e_phi2
        else:
            steps.append(0.5 * math.log10(1 + s2 * c))
            q = q + s2 * gain ** 2 * e_phi2
        q = min(max(q, 1e-300), 1e300)
    return np.concatenate([np.cumsum(steps[::-1])[::-1], [0.0]])


def predicted_log_ratio(act: str, gain: float, n_blocks: int, variant: str = "plain", q0: float = 1.0) -> float:
    """Mean-field ``log10 ||dL/dx_0|| / ||dL/dx_L||``: the first entry of :func:`predicted_profile`."""
    return float(predicted_profile(act, gain, n_blocks, variant, q0)[0])
