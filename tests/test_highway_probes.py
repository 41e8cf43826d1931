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
def test_chi_closed_forms_and_monte_carlo():
    assert mf.fixed_point_chi("relu", 2.0) == pytest.approx(2.0)            # chi = g^2 / 2 for ReLU
    assert mf.critical_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-6)   # He init is critical
    # tanh: q* = 0 for g <= 1, so chi = g^2 there; critical at g = 1 (slowly: the approach to q* = 0 is polynomial)
    assert mf.fixed_point_chi("tanh", 0.5) == pytest.approx(0.25, rel=1e-3)
    assert 0.98 < mf.critical_gain("tanh") < 1.03
    rng = np.random.default_rng(0)
    z = rng.standard_normal(2_000_000)
    for act, q in (("sigmoid", 0.7), ("tanh", 2.0)):
        f = 1 / (1 + np.exp(-math.sqrt(q) * z)) if act == "sigmoid" else np.tanh(math.sqrt(q) * z)
        df = f * (1 - f) if act == "sigmoid" else 1 - f ** 2
        e_phi2, e_dphi2 = mf.moments(act, q)
        assert e_phi2 == pytest.approx(np.mean(f ** 2), rel=3e-3) and e_dphi2 == pytest.approx(np.mean(df ** 2), rel=3e-3)
    assert mf.fixed_point_chi("sigmoid", 1.0) == pytest.approx(0.0557, abs=2e-3)


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
            r = hw.chi_network(act, "plain", gain, 64, seed)
            pred = r["predicted"][0]
            assert abs(r["log_ratio"] - pred) < max(0.5, 0.2 * abs(pred)), (act, gain, seed, r["log_ratio"], pred)
    crit = hw.chi_network("relu", "plain", math.sqrt(2), 64, 0)["log_ratio"]
    assert abs(crit) < 1.0                                                    # He init: neither vanishes nor explodes


def test_chi_network_gain_scales_the_block_weights_only():
    a = build_model(hw.chi_config("relu", "plain", 4), seed=0)
    r = hw.chi_network("relu", "plain", math.sqrt(2), 4, 0)                  # the default gain: unchanged network
    ref = hw.gradient_profile(hw.chi_config("relu", "plain", 4), 0)
    assert r["log_ratio"] == pytest.approx(math.log10(ref.act_ratio), abs=1e-9)
    assert len(r["profile"]) == 5 and r["profile"][-1] == 0
    assert a.blocks[0].branch.weights[0].weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.1)
    with pytest.raises(ValueError, match="gain"):
        hw.chi_network(gain=0.0)
    with pytest.raises(ValueError, match="n_blocks"):
        hw.chi_network(n_blocks=1000)
    with pytest.raises(ValueError, match="activation"):
        hw.chi_network(activation="gelu")


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
