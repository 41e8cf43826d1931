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
``log10 ||dL/dx_0|| / ||dL/dx_L||``, the quantity :func:`skipnet.experiments.highway_chi.chi_phase` measures.
Expectations are composite Gauss-Legendre quadrature in ``h`` (:func:`gaussian_expectation`), with panels scaled
to the narrower of the two widths in the integrand: the Gaussian's (``sqrt q``) and the activation's (about 1). A
fixed Gauss-Hermite rule in ``z = h / sqrt q`` cannot do this: for large ``q``, ``phi'(h)^2`` is a spike of width
about ``1 / sqrt q`` in ``z``, narrower than the rule's node spacing, and the rule collapses onto its central nodes
(121 nodes: ``E[tanh'(h)^2]`` frozen at 0.114 for every ``q`` above about 100, where the exact value falls like
``1 / sqrt q``). ReLU has closed forms.
"""
from __future__ import annotations

import math

import numpy as np

from skipnet.checks import check_choice, check_float, check_int

__all__ = ["ACTIVATIONS", "VARIANTS", "MAX_VARIANCE", "gaussian_expectation", "moments", "chi", "fixed_point_variance",
           "fixed_point_chi", "critical_gain", "predicted_profile", "predicted_log_ratio"]

ACTIVATIONS = ("sigmoid", "tanh", "relu")
VARIANTS = ("plain", "residual", "branch/sqrt(L)")
MAX_VARIANCE = 1e300                 # predicted_profile clips the variance to [1e-300, 1e300]

# Quadrature: the Gaussian is integrated out to _Z_MAX standard deviations (the mass beyond is 4e-33). The
# activations' features lie within |h| < _H_FLAT: beyond it, sigmoid, tanh and their squares are constant to double
# precision (e^-40 = 4e-18) and their derivatives vanish, so there only the Gaussian needs resolving. Panels are
# min(1, sqrt q) wide in h inside the core (the Gaussian and the activation both resolved; the activations' poles lie
# at least pi / 2 from the real axis, so 10 Gauss-Legendre nodes a panel are exact to rounding) and one standard
# deviation wide in the tails: at most 104 panels of 10 nodes, whatever q.
_Z_MAX = 12.0
_H_FLAT = 40.0
_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)


def _panels(a: float, b: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [a, b] cut into panels of at most ``width``."""
    n = max(1, math.ceil((b - a) / width - 1e-9))
    edges = np.linspace(a, b, n + 1)
    half, mid = np.diff(edges)[:, None] / 2, (edges[:-1] + edges[1:])[:, None] / 2
    return (mid + half * _GL_X).ravel(), (half * _GL_W).ravel()


def _nodes(q: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``h`` and weights ``w`` with ``sum w f(h) = E[f(h)]``, ``h ~ N(0, q)``, for f flat beyond |h| = 40."""
    s = math.sqrt(q)
    core = min(_Z_MAX, _H_FLAT / s)                        # the core, in standard deviations
    z, w = _panels(-core, core, min(1.0, 1.0 / s))          # panel: min(1, sqrt q) in h
    if core < _Z_MAX:                                      # the flat tails, one standard deviation a panel
        zt, wt = _panels(core, _Z_MAX, 1.0)
        z, w = np.concatenate([-zt[::-1], z, zt]), np.concatenate([wt[::-1], w, wt])
    w = w * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return s * z, w


def gaussian_expectation(f, q: float) -> float:
    """``E[f(h)]`` for ``h ~ N(0, q)``, for a vectorized ``f`` that is smooth on the scale of 1 (analytic within
    about pi / 2 of the real axis) and constant beyond ``|h| = 40``, as sigmoid and tanh and their derivatives are.
    Exact to about 1e-14 relative for ``q`` from 0 to 1e300; ``q = 0`` gives ``f(0)``."""
    q = _check_q(q)
    if q == 0:
        return float(f(np.zeros(1))[0])
    h, w = _nodes(q)
    return float(w @ f(h))


def _check_q(q) -> float:
    return check_float("q (the pre-activation variance)", q, 0.0, MAX_VARIANCE)


def _phi(act: str, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``phi(u)`` and ``phi'(u)``, the derivative from ``e = exp(-|u|)`` (no cancellation in the tails)."""
    if act == "sigmoid":
        e = np.exp(-np.abs(u))
        return np.where(u >= 0, 1.0, e) / (1 + e), e / (1 + e) ** 2
    e = np.exp(-2 * np.abs(u))
    return np.tanh(u), 4 * e / (1 + e) ** 2


def moments(act: str, q: float) -> tuple[float, float]:
    """``(E[phi(h)^2], E[phi'(h)^2])`` for ``h ~ N(0, q)``, ``q`` in [0, 1e300] (ReLU: ``(q / 2, 1 / 2)``)."""
    check_choice("activation", act, ACTIVATIONS)
    q = _check_q(q)
    if act == "relu":
        return q / 2, 0.5
    if q == 0:
        f, df = _phi(act, np.zeros(1))
        return float(f[0] ** 2), float(df[0] ** 2)
    h, w = _nodes(q)
    f, df = _phi(act, h)
    return float(w @ (f * f)), float(w @ (df * df))


def chi(act: str, gain: float, q: float) -> float:
    """``g^2 E[phi'(h)^2]`` at variance ``q``: the factor by which one plain layer scales the squared gradient."""
    gain = check_float("gain", gain, 0.0, 1e3)
    return gain ** 2 * moments(act, q)[1]


def fixed_point_variance(act: str, gain: float) -> float:
    """The attracting fixed point ``q*`` of ``q -> g^2 E[phi(h)^2]`` for sigmoid and tanh (zero biases).

    The map is concave in ``q`` and ``E[phi^2] < 1``, so ``F(q) / q - 1`` falls through zero once: the fixed point
    is found by bisection in ``log q``, not by iterating the map (which approaches ``q* = 0`` only polynomially at
    tanh's critical gain). tanh: ``q* = 0`` for ``g <= 1`` (``tanh(h)^2 < h^2``, so ``F(q) < g^2 q <= q``). ReLU has
    no finite attracting fixed point except at ``g = sqrt 2``, where every ``q`` is one: refused.
    """
    check_choice("activation", act, ("sigmoid", "tanh"))
    gain = check_float("gain", gain, 0.0, 1e3, low_open=True)
    if act == "tanh" and gain <= 1.0:
        return 0.0
    lo, hi = math.log(1e-300), math.log(gain ** 2)          # F(q) / q > 1 at lo, < 1 at hi (E[phi^2] < 1)
    while hi - lo > 1e-15 * max(1.0, abs(hi)):
        mid = 0.5 * (lo + hi)
        if gain ** 2 * moments(act, math.exp(mid))[0] > math.exp(mid):
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def fixed_point_chi(act: str, gain: float) -> float:
    """chi at the fixed point ``q*`` of ``q -> g^2 E[phi^2]`` (:func:`fixed_point_variance`); ReLU: ``g^2 / 2`` at any
    ``q``; tanh: ``g^2`` for ``g <= 1`` (``q* = 0``)."""
    check_choice("activation", act, ACTIVATIONS)
    gain = check_float("gain", gain, 0.0, 1e3, low_open=True)
    if act == "relu":
        return gain ** 2 / 2
    return chi(act, gain, fixed_point_variance(act, gain))


def critical_gain(act: str, low: float = 0.1, high: float = 100.0) -> float:
    """The gain at which the fixed-point chi of a plain stack is 1 (bisection in log gain between ``low`` and
    ``high``, which must bracket it): ReLU sqrt 2, tanh 1, the sigmoid about 10.15."""
    check_choice("activation", act, ACTIVATIONS)
    high = check_float("high", high, 0.0, 1e3, low_open=True)
    low = check_float("low", low, 0.0, high, low_open=True, high_open=True)
    lo, hi = math.log(low), math.log(high)
    if not fixed_point_chi(act, low) < 1 <= fixed_point_chi(act, high):
        raise ValueError(f"low and high must bracket the critical gain of {act} (chi < 1 at low, >= 1 at high); "
                         f"got low={low!r}, high={high!r}")
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
    q0 = check_float("q0 (the variance entering the first block)", q0, 0.0, MAX_VARIANCE)
    s2 = 1.0 / n_blocks if variant == "branch/sqrt(L)" else 1.0
    q, steps = q0, []
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
