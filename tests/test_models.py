"""Invariants of the plain and residual networks (models.py)."""
import itertools

import pytest
import torch

from skipnet.models import (ModelConfig, build_model, deleted_blocks, ORDERS, SHORTCUTS, NORMS, ACTIVATIONS)

CNN = dict(arch="cnn", depth=14, width=8)
MLP = dict(arch="mlp", depth=6, width=16, in_shape=(64,))


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("base", [CNN, MLP], ids=["cnn", "mlp"])
@pytest.mark.parametrize("norm,activation,order", [
    (n, a, o) for n, a, o in itertools.product(NORMS, ACTIVATIONS, ORDERS)])
def test_plain_and_residual_differ_only_in_the_skip(base, norm, activation, order):
    cfg = ModelConfig(**base, norm=norm, activation=activation, order=order)
    plain = build_model(cfg.with_(residual=False), seed=0)
    resid = build_model(cfg.with_(residual=True), seed=0)
    assert n_params(plain) == n_params(resid)
    for (na, a), (nb, b) in zip(plain.named_parameters(), resid.named_parameters()):
        assert na == nb and torch.equal(a, b)


@pytest.mark.parametrize("base", [CNN, MLP], ids=["cnn", "mlp"])
@pytest.mark.parametrize("init,order", [("zero_gamma", "post"), ("zero_gamma", "relu_only_pre"),
                                        ("zero_last", "pre"), ("rezero", "pre"), ("rezero", "post")])
def test_a_zeroed_branch_is_exactly_the_identity(base, init, order):
    net = build_model(**base, init=init, order=order, seed=1).eval()
    x = torch.randn(5, *((1, 8, 8) if base["arch"] == "cnn" else (64,)))
    with torch.no_grad():
        traces = net.trace(x)
        for t in traces:
            assert torch.equal(t.branch, torch.zeros_like(t.branch))
            block_input = t.input
            if order == "post":            # the stream after a ReLU is non-negative: act(x + 0) == x
                assert (block_input >= 0).all()
            assert torch.allclose(t.output, t.shortcut, atol=0, rtol=0)
            if t.input.shape == t.output.shape:
                assert torch.equal(t.output, t.input)       # the identity map, to the bit


def test_fixup_starts_as_identity_without_normalization():
    net = build_model(arch="cnn", depth=20, width=8, norm="none", init="fixup", seed=0)
    x = torch.randn(3, 8, 8, 8).relu()
    with torch.no_grad():
        b = net.blocks[0]
        assert torch.equal(b(x), x)


def test_option_a_shortcut_subsamples_and_zero_pads():
    net = build_model(**CNN, seed=0)
    first_down = net.blocks[2]                     # depth 14: n = 2 blocks a stage
    assert first_down.stride == 2 and first_down.c_out == 2 * first_down.c_in
    x = torch.randn(2, 8, 8, 8)
    s = first_down.shortcut(x)
    assert s.shape == (2, 16, 4, 4)
    assert torch.equal(s[:, :8], x[:, :, ::2, ::2]) and torch.equal(s[:, 8:], torch.zeros(2, 8, 4, 4))


def test_cnn_depth_counts_weight_layers():
    for depth in (8, 20, 56):
        net = build_model(arch="cnn", depth=depth, width=4)
        assert len(net.main_layers()) == depth


def test_trace_agrees_with_forward():
    net = build_model(**CNN, seed=2).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        traces = net.trace(x)
        assert torch.allclose(net.readout(traces[-1].output), net(x))


def test_deleting_blocks_restores_and_keeps_shapes():
    for residual in (True, False):
        net = build_model(**CNN, residual=residual, seed=0).eval()
        x = torch.randn(4, 1, 8, 8)
        with torch.no_grad():
            before = net(x)
            with deleted_blocks(net, [0, 2, 5]):
                during = net(x)
                assert net.blocks[2].deleted
            after = net(x)
        assert torch.equal(before, after) and not torch.equal(before, during)
        assert not any(b.deleted for b in net.blocks)
    with pytest.raises(ValueError, match="block indices"):
        with deleted_blocks(net, [99]):
            pass


def test_deleting_a_zeroed_residual_block_changes_nothing():
    net = build_model(**CNN, init="zero_gamma", seed=0).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad(), deleted_blocks(net, range(len(net.blocks))):
        deleted = net(x)
    with torch.no_grad():
        assert torch.equal(deleted, net(x))


def test_stochastic_depth_scales_the_branch_at_test_time():
    net = build_model(**MLP, drop_prob=0.5, seed=0)
    last = net.blocks[-1]
    assert last.survival == pytest.approx(0.5)
    x = torch.randn(8, 16)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(last(x), x + 0.5 * last.branch(x))
    net.train()
    torch.manual_seed(0)
    outs = {bool(torch.equal(last(x), x)) for _ in range(40)}
    assert outs == {True, False}                   # sometimes skipped, sometimes not


def test_dropout_shortcut_is_an_unscaled_mask():
    net = build_model(**MLP, shortcut="dropout", init="zero_last", seed=0)
    b = net.blocks[0]
    x = torch.ones(2000, 16)
    b.train()
    y = b(x)                                       # branch is zero: y = mask * x
    assert set(y.unique().tolist()) <= {0.0, 1.0}   # never 2.0, as nn.Dropout's 1/(1-p) would give
    assert abs(y.mean().item() - 0.5) < 0.02
    b.eval()
    assert torch.allclose(b(x), 0.5 * x)


def test_gates_start_at_sigmoid_of_their_bias():
    net = build_model(**MLP, shortcut="shortcut_gate", gate_bias=-6.0, init="zero_last", seed=0).eval()
    x = torch.randn(3, 16)
    with torch.no_grad():
        g = torch.sigmoid(torch.tensor(-6.0))
        assert torch.allclose(net.blocks[0](x), (1 - g) * x, atol=1e-6)


def test_branch_scale_one_over_sqrt_blocks():
    cfg = ModelConfig(**MLP, branch_scale="1/sqrt(L)")
    assert cfg.branch_multiplier == pytest.approx(1 / 6 ** 0.5)


def test_autograd_matches_finite_differences():
    torch.manual_seed(0)
    net = build_model(arch="mlp", depth=3, width=5, in_shape=(4,), n_classes=3, norm="layer",
                      activation="tanh", seed=0).double()
    x = torch.randn(6, 4, dtype=torch.double)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss_fn = lambda: torch.nn.functional.cross_entropy(net(x), y)
    w = net.blocks[1].weights[0].weight
    g, = torch.autograd.grad(loss_fn(), [w])
    eps = 1e-6
    for idx in [(0, 0), (2, 3), (4, 1)]:
        with torch.no_grad():
            w[idx] += eps
            up = loss_fn().item()
            w[idx] -= 2 * eps
            down = loss_fn().item()
            w[idx] += eps
        assert abs((up - down) / (2 * eps) - g[idx].item()) < 1e-7


@pytest.mark.parametrize("fields,name", [
    (dict(depth=21), "depth must be 6n\\+2"),
    (dict(depth=2), "depth must be 6n\\+2"),
    (dict(arch="mlp", depth=0, in_shape=(64,)), "depth must be between 1 and"),
    (dict(arch="mlp", depth=5000, in_shape=(64,)), "depth must be between 1 and"),
    (dict(width=0), "width must be an integer between 1 and"),
    (dict(width=8.5), "width must be an integer"),
    (dict(norm="group"), "norm must be one of"),
    (dict(activation="swish"), "activation must be one of"),
    (dict(order="sideways"), "order must be one of"),
    (dict(shortcut="magic"), "shortcut must be one of"),
    (dict(init="lucky"), "init must be one of"),
    (dict(arch="rnn"), "arch must be one of"),
    (dict(branch_scale=-1.0), "branch_scale must be"),
    (dict(drop_prob=1.0), "drop_prob must be in"),
    (dict(residual=False, shortcut="conv1x1"), "shortcut='conv1x1' needs residual=True"),
    (dict(init="zero_gamma", norm="none"), "init='zero_gamma' needs a norm"),
    (dict(init="fixup"), "init='fixup' replaces normalization"),
])
def test_invalid_parameters_raise_a_named_value_error(fields, name):
    with pytest.raises(ValueError, match=name):
        ModelConfig(**fields)
