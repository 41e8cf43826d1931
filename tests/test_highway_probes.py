"""The probes and theory added for *The gradient highway*'s rigor pass, each against an independent reference:
the Hessian's extreme eigenvalues against a dense eigendecomposition, the mean-field chi against Monte Carlo and
closed forms, the post-addition ReLU mask against a hand-written loop, the chi networks against the theory."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skipnet.data import load_digits
from skipnet.experiments import highway as hw
from skipnet.experiments import highway_chi as hwc
from skipnet.experiments.degradation import DEGRADATION_MODEL, intervention_run, steps_to
from skipnet.models import build_model
from skipnet.probes import meanfield as mf
from skipnet.probes.hessian import hessian_extremes, hvp_operator, lanczos_extremes
from skipnet.probes.jacobian import post_relu_pass_through


def tiny_net():
    return build_model(arch="mlp", n_blocks=2, width=6, block_layers=1, in_shape=(4,), n_classes=3, norm="none",
                       activation="tanh", seed=0).double()


def tiny_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (32,), generator=g)


def dense_hessian(net, X, y):
    hvp, n = hvp_operator(net, X, y)
    return torch.stack([hvp(e) for e in torch.eye(n, dtype=torch.float64)]), n


# -- Hessian ---------------------------------------------------------------------------------------------------
def test_hvp_matches_finite_differences_of_the_gradient():
    net, (X, y) = tiny_net(), tiny_batch()
    hvp, n = hvp_operator(net, X, y)
    params = [p for p in net.parameters() if p.dim() > 1]
    v = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hv = hvp(v)                                                             # before the weights are moved

    def grad_at(shift):
        with torch.no_grad():
            i = 0
            for p in params:
                p.add_(shift[i:i + p.numel()].view_as(p))
                i += p.numel()
        loss = torch.nn.functional.cross_entropy(net(X), y)
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])
        with torch.no_grad():
            i = 0
            for p in params:
                p.sub_(shift[i:i + p.numel()].view_as(p))
                i += p.numel()
        return g

    eps = 1e-5
    fd = (grad_at(eps * v) - grad_at(-eps * v)) / (2 * eps)
    assert torch.allclose(hv, fd, atol=1e-7)


def test_lanczos_extremes_match_a_dense_eigendecomposition():
    net, (X, y) = tiny_net(), tiny_batch()
    H, n = dense_hessian(net, X, y)
    assert torch.allclose(H, H.T, atol=1e-10)                               # a Hessian is symmetric
    exact = np.linalg.eigvalsh(H.numpy())
    c = hessian_extremes(net, X, y, steps=n, seed=0)                        # full Krylov space: exact
    assert c.lam_max == pytest.approx(exact[-1], rel=1e-8) and c.lam_min == pytest.approx(exact[0], abs=1e-8)
    few = hessian_extremes(net, X, y, steps=12, seed=0)                     # fewer steps: within the bounds
    assert abs(few.lam_max - exact[-1]) <= few.err_max + 1e-9
    assert abs(few.lam_min - exact[0]) <= few.err_min + 1e-9
    assert few.ratio == pytest.approx(abs(few.lam_min / few.lam_max))


def test_lanczos_on_a_known_diagonal_matrix():
    d = torch.tensor([-3.0, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    values, resid = lanczos_extremes(lambda v: d * v, 5, steps=5)
    assert np.allclose(values, d.numpy(), atol=1e-10) and np.all(resid < 1e-8)
    with pytest.raises(ValueError, match="steps"):
        lanczos_extremes(lambda v: d * v, 5, steps=9)


# -- mean field --------------------------------------------------------------------------------------------------
# The references below are independent of the package's quadrature: adaptive Gauss-Kronrod (scipy's quad) over the
# whole line in h, Monte Carlo, and closed forms. The variances span 1e-3 to 1e8: a stack's variance reaches
# thousands in the residual panels of the phase diagram (it grows by up to g^2 a block), and a fixed Gauss-Hermite
# rule in z = h / sqrt(q) fails from q of about 10 on (checked: the old 121-node rule fails all four reference tests).
VARIANCES = (1e-3, 1e-2, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 1e4, 1e6, 1e8)


def sigmoid_np(h):
    return 0.5 * (1 + np.tanh(h / 2))


def quad_expectation(f, q):
    """E[f(h)], h ~ N(0, q), by scipy's adaptive quadrature over each half line (to 1e-12 relative)."""
    from scipy.integrate import quad
    dens = lambda h: math.exp(-h * h / (2 * q) - 0.5 * math.log(2 * math.pi * q))
    g = lambda h: f(h) * dens(h)
    return sum(quad(g, a, b, epsabs=0, epsrel=1e-12, limit=400)[0] for a, b in ((-np.inf, 0), (0, np.inf)))


REFERENCE = {   # (phi^2, phi'^2) written independently of the package's formulas
    "sigmoid": (lambda h: sigmoid_np(h) ** 2, lambda h: (sigmoid_np(h) * sigmoid_np(-h)) ** 2),
    "tanh": (lambda h: math.tanh(h) ** 2, lambda h: 1 / math.cosh(min(abs(h), 150.0)) ** 4),
}


def test_gaussian_expectation_against_closed_forms_over_the_whole_range():
    """Closed forms whose integrands are the shapes that matter: a step (the probit Phi, like a saturating
    activation), a spike of width 1 (Phi', like phi'), and polynomials (the identity activation: E[h^2] = q)."""
    from scipy.special import ndtr
    for q in VARIANCES:
        e = lambda f: mf.gaussian_expectation(f, q)
        assert e(lambda h: h * h) == pytest.approx(q, rel=1e-12), q
        assert e(lambda h: h ** 4) == pytest.approx(3 * q * q, rel=1e-12), q
        # E[Phi(h)^2] = P(z1 <= h, z2 <= h) = 1/4 + arcsin(q / (1 + q)) / (2 pi)
        assert e(lambda h: ndtr(h) ** 2) == pytest.approx(0.25 + math.asin(q / (1 + q)) / (2 * math.pi), rel=1e-12), q
        # E[Phi'(h)^2] = E[exp(-h^2)] / (2 pi) = 1 / (2 pi sqrt(1 + 2q)): falls like 1 / sqrt(q)
        spike = e(lambda h: np.exp(-h * h) / (2 * math.pi))
        assert spike == pytest.approx(1 / (2 * math.pi * math.sqrt(1 + 2 * q)), rel=1e-12), q
    assert mf.gaussian_expectation(lambda h: np.cos(h) + 1, 0.0) == 2.0          # q = 0: the point mass at 0


def test_moments_against_quadrature_and_monte_carlo_over_the_whole_range():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(1_000_000)
    for act in ("sigmoid", "tanh"):
        for q in VARIANCES:
            got = mf.moments(act, q)
            ref = [quad_expectation(f, q) for f in REFERENCE[act]]
            assert got == pytest.approx(ref, rel=1e-9), (act, q, got, ref)
            if q <= 1e4:                                   # Monte Carlo, to five standard errors
                h = math.sqrt(q) * z
                f = sigmoid_np(h) if act == "sigmoid" else np.tanh(h)
                df = f * (1 - f) if act == "sigmoid" else 1 - f * f
                for m, x in zip(got, (f * f, df * df)):
                    assert abs(m - x.mean()) < 5 * x.std() / math.sqrt(len(x)), (act, q, m, x.mean())
    # tanh: E[phi'^2] falls like (4/3) / sqrt(2 pi q) (the integral of sech^4 is 4/3), E[phi^2] rises to 1
    assert mf.moments("tanh", 1e6)[1] * math.sqrt(2 * math.pi * 1e6) == pytest.approx(4 / 3, rel=1e-5)
    for q in VARIANCES:                                    # ReLU: closed forms, and Monte Carlo
        h = math.sqrt(q) * z
        assert mf.moments("relu", q) == (q / 2, 0.5)
        assert np.mean(np.maximum(h, 0) ** 2) == pytest.approx(q / 2, rel=1e-2)
    assert mf.moments("tanh", 0.0) == (0.0, 1.0) and mf.moments("sigmoid", 0.0) == (0.25, 0.0625)
    assert mf.chi("tanh", 3.0, 100.0) == pytest.approx(9 * quad_expectation(REFERENCE["tanh"][1], 100.0), rel=1e-9)


def reference_fixed_point(act, gain):
    """q* of q -> g^2 E[phi^2] by iterating the map with scipy-quadrature moments, then the root polished."""
    from scipy.optimize import brentq
    F = lambda q: gain ** 2 * quad_expectation(REFERENCE[act][0], q)
    q = 1.0
    for _ in range(60):
        q = F(q)
    return brentq(lambda x: F(x) - x, 0.5 * q, 2 * q, xtol=1e-14, rtol=1e-13)


def test_fixed_point_chi_and_critical_gains_against_references():
    for act, gain in (("sigmoid", 0.5), ("sigmoid", 1.0), ("sigmoid", 4.0), ("sigmoid", 10.0), ("sigmoid", 16.0),
                      ("tanh", 1.2), ("tanh", 5 / 3), ("tanh", 4.0), ("tanh", 16.0)):
        q = reference_fixed_point(act, gain)
        assert mf.fixed_point_variance(act, gain) == pytest.approx(q, rel=1e-9), (act, gain)
        chi_ref = gain ** 2 * quad_expectation(REFERENCE[act][1], q)
        assert mf.fixed_point_chi(act, gain) == pytest.approx(chi_ref, rel=1e-8), (act, gain)
    # tanh with zero biases: q* = 0 up to g = 1 (tanh(h)^2 < h^2), so chi = g^2 there, critical at exactly 1
    for gain in (0.25, 0.5, 0.9, 1.0):
        assert mf.fixed_point_variance("tanh", gain) == 0
        assert mf.fixed_point_chi("tanh", gain) == pytest.approx(gain ** 2)
    assert mf.fixed_point_chi("tanh", 1.001) > 1
    assert mf.critical_gain("tanh") == pytest.approx(1.0, abs=1e-6)
    assert mf.fixed_point_chi("relu", 2.0) == pytest.approx(2.0)                # chi = g^2 / 2 for ReLU
    assert mf.critical_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-12)   # He init is critical
    # the sigmoid: the gain at which the reference chi crosses 1 (q* about 39, where a fixed rule has failed)
    from scipy.optimize import brentq
    crit = brentq(lambda g: g * g * quad_expectation(REFERENCE["sigmoid"][1], reference_fixed_point("sigmoid", g)) - 1,
                  9.0, 11.0, xtol=1e-9)
    assert mf.critical_gain("sigmoid") == pytest.approx(crit, rel=1e-7) and round(crit, 2) == 10.15


def test_mean_field_refuses_bad_input_by_name():
    for q in (-1.0, math.nan, math.inf, "1"):
        with pytest.raises(ValueError, match=r"^q \(the pre-activation variance\) must be"):
            mf.moments("tanh", q)
    with pytest.raises(ValueError, match="^activation must be one of"):
        mf.moments("gelu", 1.0)
    with pytest.raises(ValueError, match="^gain must be"):
        mf.chi("tanh", -1.0, 1.0)
    with pytest.raises(ValueError, match="^gain must be"):
        mf.fixed_point_chi("sigmoid", math.nan)
    with pytest.raises(ValueError, match="^activation must be one of 'sigmoid', 'tanh'"):
        mf.fixed_point_variance("relu", 2.0)                       # no finite attracting fixed point
    with pytest.raises(ValueError, match="^q0 .* must be"):
        mf.predicted_profile("tanh", 1.0, 4, q0=-1.0)
    with pytest.raises(ValueError, match="^low and high must bracket"):
        mf.critical_gain("sigmoid", low=0.5, high=2.0)
    with pytest.raises(ValueError, match="^low must be"):
        mf.critical_gain("sigmoid", low=3.0, high=2.0)


def test_predicted_profile_of_a_saturating_residual_stack_against_quadrature():
    """tanh, residual, gain 8: the variance grows past 1000 within 16 blocks; every block's factor
    0.5 log10(1 + g^2 E[phi'^2]) and variance step g^2 E[phi^2] recomputed with scipy's quadrature."""
    gain, L, q = 8.0, 16, 1.0
    steps = []
    for _ in range(L):
        steps.append(0.5 * math.log10(1 + gain ** 2 * quad_expectation(REFERENCE["tanh"][1], q)))
        q += gain ** 2 * quad_expectation(REFERENCE["tanh"][0], q)
    assert q > 500
    ref = np.concatenate([np.cumsum(steps[::-1])[::-1], [0.0]])
    assert np.allclose(mf.predicted_profile("tanh", gain, L, "residual", q0=1.0), ref, rtol=1e-9, atol=0)


def test_predicted_profiles():
    L = 40
    p = mf.predicted_profile("relu", 2.0, L, "plain")
    assert p[-1] == 0 and p[0] == pytest.approx(L / 2 * math.log10(2.0))   # (L/2) log10 chi, exactly
    assert np.all(np.diff(p) < 0)
    r = mf.predicted_profile("relu", 1.0, L, "residual", q0=1.0)             # residual ReLU: 1 + chi_b = 1.5 a block
    assert r[0] == pytest.approx(L / 2 * math.log10(1.5))
    s = mf.predicted_log_ratio("relu", 1.0, L, "branch/sqrt(L)")
    assert s == pytest.approx(L / 2 * math.log10(1 + 0.5 / L))              # bounded: -> log10(e) / 4
    with pytest.raises(ValueError, match="variant"):
        mf.predicted_profile("relu", 1.0, 3, "dense")


def test_chi_networks_follow_the_mean_field_in_the_plain_stack():
    """Plain stacks of 64 blocks: measured log-ratio within 20 % (or 0.5 decade) of (sum of) log10 chi / 2."""
    for act, gain in (("tanh", 0.5), ("tanh", 2.0), ("relu", 2.0), ("relu", 1.0), ("sigmoid", 1.0)):
        for seed in (0, 1, 2):
            r = hwc.chi_network(act, "plain", gain, 64, seed)
            pred = r["predicted"][0]
            assert abs(r["log_ratio"] - pred) < max(0.5, 0.2 * abs(pred)), (act, gain, seed, r["log_ratio"], pred)
    crit = hwc.chi_network("relu", "plain", math.sqrt(2), 64, 0)["log_ratio"]
    assert abs(crit) < 1.0                                                    # He init: neither vanishes nor explodes


def test_saturating_residual_stacks_approach_the_mean_field_with_width():
    """The mean field is the infinite-width limit. Residual stacks whose variance grows into the thousands, at
    widths 64 and 256, 3 seeds: the mean ratio measured / predicted is near 1 at width 256 (measured: 0.94 to
    1.04; the width-1024 ratios are 0.99 to 1.01) and no farther from 1 than at width 64, where the largest cell
    falls short most (tanh, gain 16, 128 blocks: 0.75 at width 64, 0.94 at 256). A mean field wrong at large
    variance gives ratios of 0.3 to 0.5 at every width."""
    ratios = {}
    for act, gain, depth in (("tanh", 8.0, 64), ("tanh", 16.0, 128), ("sigmoid", 16.0, 64)):
        for width in (64, 256):
            runs = [hwc.chi_network(act, "residual", gain, depth, s, width=width) for s in (0, 1, 2)]
            assert runs[0]["predicted"][0] > 2
            ratios[act, gain, width] = np.mean([r["log_ratio"] for r in runs]) / runs[0]["predicted"][0]
        wide, narrow = ratios[act, gain, 256], ratios[act, gain, 64]
        assert 0.85 < wide < 1.15 and abs(wide - 1) < abs(narrow - 1) + 0.05, (act, gain, ratios)
    assert ratios["tanh", 16.0, 64] < 0.9 < ratios["tanh", 16.0, 256]       # the width-64 shortfall closes
    assert hwc.stem_variance("tanh", width=64) > hwc.stem_variance("tanh", width=256)   # Glorot: fan-in + fan-out
    with pytest.raises(ValueError, match="^width must be"):
        hwc.chi_network("tanh", "residual", 1.0, 4, 0, width=0)


def test_chi_network_gain_scales_the_block_weights_only():
    a = build_model(hwc.chi_config("relu", "plain", 4), seed=0)
    r = hwc.chi_network("relu", "plain", math.sqrt(2), 4, 0)                  # the default gain: unchanged network
    ref = hw.gradient_profile(hwc.chi_config("relu", "plain", 4), 0)
    assert r["log_ratio"] == pytest.approx(math.log10(ref.act_ratio), abs=1e-9)
    assert len(r["profile"]) == 5 and r["profile"][-1] == 0
    assert a.blocks[0].branch.weights[0].weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.1)
    with pytest.raises(ValueError, match="gain"):
        hwc.chi_network(gain=0.0)
    with pytest.raises(ValueError, match="n_blocks"):
        hwc.chi_network(n_blocks=1000)
    with pytest.raises(ValueError, match="activation"):
        hwc.chi_network(activation="gelu")


# -- the post-addition ReLU ---------------------------------------------------------------------------------------
def test_post_relu_pass_through_matches_a_hand_loop():
    net = build_model(DEGRADATION_MODEL.with_(depth=20), seed=0).eval()
    X = load_digits().X_train[:32]
    got = post_relu_pass_through(net, X)
    assert len(got) == 3
    with torch.no_grad():
        h, masks = net.embed(X), []
        for b in net.blocks:
            pre = b.branch(h) + b.shortcut(h)
            masks.append(pre > 0)
            h = torch.relu(pre)
    for stage, (per_block, through) in enumerate(got):
        ms = masks[3 * stage:3 * stage + 3]
        assert per_block == pytest.approx(np.mean([m.float().mean().item() for m in ms]))
        assert through == pytest.approx((ms[0] & ms[1] & ms[2]).float().mean().item())
        assert through <= min(m.float().mean().item() for m in ms)


def test_zero_branches_pass_every_positive_entry():
    net = build_model(DEGRADATION_MODEL.with_(depth=20, init="zero_gamma"), seed=0).eval()
    X = load_digits().X_train[:32]
    with torch.no_grad():
        positive = (net.embed(X) > 0).float().mean().item()
    per_block, through = post_relu_pass_through(net, X)[0]
    assert per_block == pytest.approx(positive) and through == pytest.approx(positive)   # the identity, masked once


# -- the convergence-rate and intervention helpers ----------------------------------------------------------------
def test_steps_to_uses_a_running_mean():
    loss = [2.0, 2.0, 0.1, 2.0, 0.1, 0.1, 0.1]
    assert steps_to(loss, 0.5, 1) == 3                                     # one noisy batch counts without a window
    assert steps_to(loss, 0.5, 3) == 7                                     # the mean of 3 steps must be below
    assert steps_to(loss, 0.05, 3) is None


def test_projection_holds_every_bn_weight_at_its_initial_norm():
    r = intervention_run("project", depth=8, residual=False, seed=0, epochs=1)
    assert r["growth_first"] == pytest.approx(1.0, abs=1e-5) and r["growth_low_median"] == pytest.approx(1.0, abs=1e-5)
    s = intervention_run("sgd", depth=8, residual=False, seed=0, epochs=1)
    assert s["ratio_first_step"] == pytest.approx(r["ratio_first_step"])    # same first step: raw gradients
    assert s["growth_first"] != pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="mode"):
        intervention_run("adam", depth=8)


def test_one_backward_gives_the_same_norms_as_the_two_probes():
    from skipnet.probes.gradients import layer_and_stream_grad_norms, layer_grad_norms
    from skipnet.probes.jacobian import stream_gradients
    for cfg in (hw.PROFILE_MODEL.with_(n_blocks=6, norm="batch"), DEGRADATION_MODEL.with_(depth=8)):
        net = build_model(cfg, seed=0).double()
        ds = load_digits(flatten=cfg.arch == "mlp")
        X, y = ds.X_train[:32].double(), ds.y_train[:32]
        w, a = layer_and_stream_grad_norms(net, X, y)
        assert np.allclose(w, layer_grad_norms(net, X, y), rtol=1e-10)
        assert np.allclose(a, [g.norm().item() for g in stream_gradients(net, X, y)], rtol=1e-10)


def test_equalize_removes_the_explosion_of_the_first_step_only():
    """'equalize' multiplies each layer's gradient by a factor fixed at the first step: the RAW first-step ratio is
    SGD's (same network, nothing updated yet), while the exploding lowest layer's steps, scaled down, grow its
    weights far less than SGD's do."""
    from skipnet.experiments.degradation import intervention_run
    sgd = intervention_run("sgd", depth=20, residual=False, seed=0, epochs=1)
    eq = intervention_run("equalize", depth=20, residual=False, seed=0, epochs=1)
    assert eq["status"] == "finished"
    assert eq["ratio_first_step"] == pytest.approx(sgd["ratio_first_step"], rel=1e-6)
    assert sgd["ratio_first_step"] > 2                                       # there is an explosion to remove
    assert eq["growth_first"] - 1 < 0.5 * (sgd["growth_first"] - 1)
    with pytest.raises(ValueError, match="mode"):
        intervention_run("nope", depth=8)


def test_partial_norm_centres_or_scales_only():
    from skipnet.experiments.highway import _PartialNorm
    x = torch.randn(64, 5, dtype=torch.float64) * 3 + 2
    c, r = _PartialNorm("center")(x), _PartialNorm("scale")(x)
    assert torch.allclose(c.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(c.std(0), x.std(0))                                     # the spread is kept
    assert torch.allclose(r.pow(2).mean(0), torch.ones(5, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(r / x, (r / x)[0].expand_as(r))                          # one factor a unit
    with pytest.raises(ValueError):
        _PartialNorm("both")
