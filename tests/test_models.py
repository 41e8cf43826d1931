"""Invariants of the plain and residual networks (models.py)."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from skipnet.branch import StochasticDepth
from skipnet.models import (ACTIVATIONS, NORMS, PLACEMENTS, ModelConfig, PlainBlock, ResidualBlock, build_model)
from skipnet.probes.lesions import lesioned_blocks

CNN = dict(arch="cnn", depth=14, width=8)
MLP = dict(arch="mlp", n_blocks=6, width=16, in_shape=(64,))


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def _inputs(base, n=5):
    return torch.randn(n, *((1, 8, 8) if base["arch"] == "cnn" else (64,)))


@pytest.mark.parametrize("base", [CNN, MLP], ids=["cnn", "mlp"])
@pytest.mark.parametrize("norm,activation,placement", [
    (n, a, o) for n, a, o in itertools.product(NORMS, ACTIVATIONS, PLACEMENTS)])
def test_plain_and_residual_differ_only_in_the_skip(base, norm, activation, placement):
    cfg = ModelConfig(**base, norm=norm, activation=activation, placement=placement)
    plain = build_model(cfg.with_(residual=False), seed=0)
    resid = build_model(cfg.with_(residual=True), seed=0)
    assert n_params(plain) == n_params(resid)
    for (na, a), (nb, b) in zip(plain.named_parameters(), resid.named_parameters()):
        assert na == nb and torch.equal(a, b)
    assert all(isinstance(b, PlainBlock) for b in plain.blocks)
    assert all(isinstance(b, ResidualBlock) for b in resid.blocks)


@pytest.mark.parametrize("base", [CNN, MLP], ids=["cnn", "mlp"])
def test_a_residual_block_is_post_of_branch_plus_shortcut_and_a_plain_one_post_of_branch(base):
    """Computed from the parts, independently of ``forward``: a block that dropped the add, or added the
    input instead of the shortcut, fails."""
    for residual in (True, False):
        net = build_model(**base, residual=residual, seed=3).eval()
        with torch.no_grad():
            states = net.blocks_forward(net.embed(_inputs(base)))
            for block, x, y in zip(net.blocks, states, states[1:]):
                f = block.branch(x)
                expected = block.post(f + block.shortcut(x)) if residual else block.post(f)
                assert torch.equal(y, expected)
                assert f.abs().max() > 0
                if x.shape == y.shape:                 # not the bare branch, nor (for a plain block) branch + input
                    assert not torch.equal(y, block.post(f) if residual else block.post(f + x))


@pytest.mark.parametrize("base", [CNN, MLP], ids=["cnn", "mlp"])
def test_blocks_forward_walks_the_same_stream_as_forward(base):
    net = build_model(**base, seed=2).eval()
    x = _inputs(base, 4)
    with torch.no_grad():
        states = net.blocks_forward(net.embed(x))
        assert len(states) == len(net.blocks) + 1
        assert torch.equal(net.readout(states[-1]), net(x))
        tail = net.blocks_forward(states[3], start=3)
        assert torch.equal(tail[-1], states[-1])


@pytest.mark.parametrize("base", [CNN, MLP], ids=["cnn", "mlp"])
@pytest.mark.parametrize("init,placement", [("zero_gamma", "post"), ("zero_gamma", "relu_only_pre"),
                                            ("zero_last", "pre"), ("rezero", "pre"), ("rezero", "post")])
def test_a_zeroed_branch_is_exactly_the_identity(base, init, placement):
    net = build_model(**base, init=init, placement=placement, seed=1).eval()
    with torch.no_grad():
        states = net.blocks_forward(net.embed(_inputs(base)))
        for block, x, y in zip(net.blocks, states, states[1:]):
            f = block.branch(x)
            assert torch.equal(f, torch.zeros_like(f))
            if placement == "post":            # the stream after a ReLU is non-negative: act(x + 0) == x
                assert (x >= 0).all()
            assert torch.equal(y, block.shortcut(x))
            if x.shape == y.shape:
                assert torch.equal(y, x)       # the identity map, to the bit


def test_fixup_starts_as_identity_without_normalization():
    net = build_model(arch="cnn", depth=20, width=8, norm="none", init="fixup", seed=0)
    x = torch.randn(3, 8, 8, 8).relu()
    with torch.no_grad():
        b = net.blocks[0]
        assert torch.equal(b(x), x)


def test_fixup_rescales_the_inner_branch_weights_by_L_to_the_minus_half():
    """Fixup (Zhang et al. 2019) with m = 2 layers a branch: the first layer's He init times L^(-1/(2m-2)) = L^-1/2."""
    for depth in (20, 56):
        cfg = ModelConfig(arch="cnn", depth=depth, width=8, norm="none")
        std = build_model(cfg, seed=0)
        fix = build_model(cfg.with_(init="fixup"), seed=0)
        L = cfg.n_blocks
        for bs, bf in zip(std.blocks, fix.blocks):
            w_std, w_fix = bs.branch.weights[0].weight, bf.branch.weights[0].weight
            assert torch.allclose(w_fix, w_std * L ** -0.5, rtol=1e-6, atol=0)
            assert torch.equal(bf.branch.weights[-1].weight, torch.zeros_like(bf.branch.weights[-1].weight))


def test_option_a_shortcut_subsamples_and_zero_pads():
    net = build_model(**CNN, seed=0)
    first_down = net.blocks[2]                     # depth 14: n = 2 blocks a stage
    assert first_down.stride == 2 and first_down.c_out == 2 * first_down.c_in
    x = torch.randn(2, 8, 8, 8)
    s = first_down.shortcut(x)
    assert s.shape == (2, 16, 4, 4)
    assert torch.equal(s[:, :8], x[:, :, ::2, ::2]) and torch.equal(s[:, 8:], torch.zeros(2, 8, 4, 4))


def test_depth_counts_weight_layers_and_n_blocks_counts_blocks():
    for depth in (8, 20, 56):
        cfg = ModelConfig(arch="cnn", depth=depth, width=4)
        net = build_model(cfg)
        assert len(net.main_layers()) == depth and len(net.blocks) == cfg.n_blocks == (depth - 2) // 2
        assert ModelConfig(arch="cnn", n_blocks=cfg.n_blocks, width=4).depth == depth
    for n, m in ((3, 1), (5, 2)):
        cfg = ModelConfig(arch="mlp", n_blocks=n, block_layers=m, width=4, in_shape=(8,))
        assert len(build_model(cfg).blocks) == n and cfg.depth == n * m + 2 == len(build_model(cfg).main_layers())
    cfg = ModelConfig(arch="cnn", depth=20)
    assert cfg.with_(depth=56).n_blocks == 27 and cfg.with_(n_blocks=3).depth == 8


def test_lesioned_blocks_leave_the_model_unchanged_and_keep_shapes():
    for residual in (True, False):
        net = build_model(**CNN, residual=residual, seed=0).eval()
        x = torch.randn(4, 1, 8, 8)
        with torch.no_grad():
            before = net(x)
            blocks = lesioned_blocks(net, [0, 2, 5])
            during = net.readout(net.blocks_forward(net.embed(x), blocks=blocks)[-1])
            after = net(x)
        assert torch.equal(before, after) and not torch.equal(before, during)
        assert list(net.blocks) != blocks and all(b is c for i, (b, c) in enumerate(zip(net.blocks, blocks))
                                                  if i not in (0, 2, 5))
    with pytest.raises(ValueError, match="block indices"):
        lesioned_blocks(net, [99])


def test_deleting_a_residual_block_keeps_its_shortcut_and_a_plain_block_passes_its_input():
    for residual in (True, False):
        net = build_model(**CNN, residual=residual, seed=0).eval()
        x = torch.randn(4, 8, 8, 8).relu()
        with torch.no_grad():
            block, deleted = net.blocks[2], lesioned_blocks(net, [2])[2]          # the first downsampling block
            expected = block.post(block.shortcut(x)) if residual else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 8))
            assert torch.equal(deleted(x), expected)


def test_deleting_a_zeroed_residual_block_changes_nothing():
    net = build_model(**CNN, init="zero_gamma", seed=0).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        deleted = net.readout(net.blocks_forward(net.embed(x), blocks=lesioned_blocks(net, range(6)))[-1])
        assert torch.equal(deleted, net(x))


def test_stochastic_depth_survival_falls_linearly_and_scales_every_branch_at_test_time():
    """Huang et al. (2016): block l of L survives with p_l = 1 - (l / L) p_L; at test time its branch is
    scaled by p_l. A uniform schedule, or a test-time forward without the scaling, fails."""
    p, L = 0.5, MLP["n_blocks"]
    net = build_model(**MLP, drop_prob=p, seed=0)
    x = torch.randn(8, 16)
    net.eval()
    for l, block in enumerate(net.blocks, start=1):
        assert isinstance(block.branch, StochasticDepth)
        assert block.branch.survival == pytest.approx(1 - p * l / L)
        with torch.no_grad():
            assert torch.allclose(block(x), x + (1 - p * l / L) * block.branch.inner(x), atol=1e-6, rtol=0)
    net.train()
    torch.manual_seed(0)
    last = net.blocks[-1]
    outs = [bool(torch.equal(last(x), x)) for _ in range(400)]
    assert 0.4 < sum(outs) / len(outs) < 0.6                        # dropped about half the time at p_L = 0.5
    first = net.blocks[0]
    outs = [bool(torch.equal(first(x), x)) for _ in range(400)]
    assert 0.02 < sum(outs) / len(outs) < 0.2                       # p_1 = 1 - 0.5/6: dropped ~8 % of the time


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
    x = torch.randn(3, 16)
    g = torch.sigmoid(torch.tensor(-6.0))
    net = build_model(**MLP, shortcut="shortcut_gate", gate_bias=-6.0, init="zero_last", seed=0).eval()
    with torch.no_grad():
        assert torch.allclose(net.blocks[0](x), (1 - g) * x, atol=1e-6)
    net = build_model(**MLP, shortcut="exclusive_gate", gate_bias=-6.0, seed=0).eval()
    block = net.blocks[0]
    with torch.no_grad():
        assert torch.allclose(block(x), (1 - g) * x + g * block.branch.inner(x), atol=1e-6)


def test_scaled_shortcut_and_branch_scale():
    net = build_model(**MLP, shortcut="scale", shortcut_scale=0.5, branch_scale=0.5, seed=0).eval()
    block, x = net.blocks[1], torch.randn(4, 16)
    with torch.no_grad():
        unscaled = build_model(**MLP, seed=0).eval().blocks[1].branch(x)
        assert torch.allclose(block(x), 0.5 * x + 0.5 * unscaled, atol=1e-6)


def test_branch_scale_one_over_sqrt_blocks():
    cfg = ModelConfig(**MLP, branch_scale="1/sqrt(L)")
    assert cfg.branch_multiplier == pytest.approx(1 / math.sqrt(6))


def test_autograd_matches_finite_differences():
    torch.manual_seed(0)
    net = build_model(arch="mlp", n_blocks=3, width=5, in_shape=(4,), n_classes=3, norm="layer",
                      activation="tanh", seed=0).double()
    x = torch.randn(6, 4, dtype=torch.double)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss_fn = lambda: torch.nn.functional.cross_entropy(net(x), y)
    w = net.blocks[1].branch.weights[0].weight
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


def test_one_builder_for_every_config():
    from skipnet.recurrent import RecurrentConfig, RecurrentNet
    from skipnet.transformer import TinyTransformer, TransformerConfig
    for cfg, kind in ((ModelConfig(**MLP), "ResidualNet"), (TransformerConfig(n_blocks=2), TinyTransformer),
                      (RecurrentConfig(width=8), RecurrentNet)):
        a, b = build_model(cfg, seed=4), cfg.build(seed=4)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        c = cfg.build(seed=5)
        assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
        assert type(a).__name__ == (kind if isinstance(kind, str) else kind.__name__)


@pytest.mark.parametrize("fields,name", [
    (dict(depth=21), "depth must be 6n\\+2"),
    (dict(depth=2), "depth must be an integer between 8 and"),
    (dict(depth=20.0), "depth must be an integer"),
    (dict(arch="mlp", n_blocks=0, in_shape=(64,)), "n_blocks must be an integer between 1 and"),
    (dict(arch="mlp", n_blocks=5000, in_shape=(64,)), "n_blocks must be an integer between 1 and"),
    (dict(arch="cnn", depth=20, n_blocks=5), "does not match"),
    (dict(width=0), "width must be an integer between 1 and"),
    (dict(width=8.5), "width must be an integer"),
    (dict(norm="group"), "norm must be one of"),
    (dict(activation="swish"), "activation must be one of"),
    (dict(placement="sideways"), "placement must be one of"),
    (dict(shortcut="magic"), "shortcut must be one of"),
    (dict(init="lucky"), "init must be one of"),
    (dict(arch="rnn"), "arch must be one of"),
    (dict(branch_scale=-1.0), "branch_scale must be"),
    (dict(drop_prob=1.0), "drop_prob must be a number in"),
    (dict(residual=False, shortcut="conv1x1"), "shortcut='conv1x1' needs residual=True"),
    (dict(init="zero_gamma", norm="none"), "init='zero_gamma' needs a norm"),
    (dict(init="fixup"), "init='fixup' replaces normalization"),
])
def test_invalid_parameters_raise_a_named_value_error(fields, name):
    with pytest.raises(ValueError, match=name):
        ModelConfig(**fields)


# -- options of the identity chapter's reruns -----------------------------------------------------------------
def test_projection_shortcut_starts_at_identity_or_orthogonal_and_keeps_the_branch_draws():
    base = ModelConfig(**MLP, shortcut="conv1x1")
    nets = {init: build_model(base.with_(shortcut_init=init), seed=0) for init in ("default", "identity", "orthogonal")}
    for block in nets["identity"].blocks:
        assert torch.equal(block.shortcut.proj.weight, torch.eye(16))
    for block in nets["orthogonal"].blocks:
        W = block.shortcut.proj.weight
        assert torch.allclose(W @ W.T, torch.eye(16), atol=1e-5)
    for block in nets["default"].blocks:                                  # PyTorch's own draw: far from orthogonal
        W = block.shortcut.proj.weight
        assert W.std().item() == pytest.approx(1 / math.sqrt(3 * 16), rel=0.25)
    for a, b in zip(nets["default"].blocks, nets["identity"].blocks):     # same branch weights: one draw sequence
        for p, q in zip(a.branch.parameters(), b.branch.parameters()):
            assert torch.equal(p, q)
    x = torch.randn(4, 16)
    block = nets["identity"].blocks[0].eval()
    assert torch.allclose(block.shortcut(x), x)


def test_identity_projection_in_a_cnn_keeps_the_first_channels_at_a_stage_change():
    net = build_model(**CNN, shortcut="conv1x1", shortcut_init="identity", seed=0).eval()
    block = next(b for b in net.blocks if b.c_out > b.c_in)
    x = torch.randn(2, block.c_in, 8, 8)
    out = block.shortcut(x)                                             # (2, c_out, 4, 4)
    assert torch.equal(out[:, :block.c_in], x[:, :, ::2, ::2]) and torch.all(out[:, block.c_in:] == 0)


def test_final_norm_and_zero_head():
    post = ModelConfig(**MLP, placement="post")
    assert isinstance(build_model(post, seed=0).final_norm, torch.nn.Identity)
    with_norm = build_model(post.with_(final_norm=True), seed=0)
    assert isinstance(with_norm.final_norm, torch.nn.BatchNorm1d) and isinstance(with_norm.final_act, torch.nn.Identity)
    pre = ModelConfig(**MLP, placement="pre")
    a, b = build_model(pre, seed=0), build_model(pre.with_(final_norm=True), seed=0)   # pre already has one
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    x = torch.randn(8, 64)
    assert torch.equal(a.eval()(x), b.eval()(x))
    zero = build_model(post.with_(zero_head=True), seed=0).eval()
    logits = zero(x)
    assert torch.all(logits == 0)
    assert F.cross_entropy(logits, torch.zeros(8, dtype=torch.long)).item() == pytest.approx(math.log(10))


@pytest.mark.parametrize("fields,name", [
    (dict(shortcut_init="identity"), "shortcut_init='identity' needs shortcut='conv1x1'"),
    (dict(shortcut="conv1x1", shortcut_init="eye"), "shortcut_init must be one of"),
    (dict(shortcut="scale", shortcut_scale=2.5), "shortcut_scale must be a number in"),
    (dict(final_norm=1), "final_norm must be True or False"),
    (dict(zero_head="yes"), "zero_head must be True or False"),
])
def test_rerun_options_are_validated(fields, name):
    with pytest.raises(ValueError, match=name):
        ModelConfig(**fields)


def test_shortcut_scale_above_one_scales_the_shortcut():
    net = build_model(**MLP, shortcut="scale", shortcut_scale=1.2, seed=0).eval()
    x = torch.randn(3, 16)
    assert torch.allclose(net.blocks[0].shortcut(x), 1.2 * x)


def test_as_dict_leaves_out_the_rerun_options_at_their_defaults():
    cfg = ModelConfig(**MLP)
    d = cfg.as_dict()
    assert not {"shortcut_init", "final_norm", "zero_head"} & set(d)
    assert ModelConfig(**d) == cfg
    set_ = ModelConfig(**MLP, shortcut="conv1x1", shortcut_init="identity", final_norm=True).as_dict()
    assert set_["shortcut_init"] == "identity" and set_["final_norm"] is True and "zero_head" not in set_
    assert ModelConfig(**set_) == ModelConfig(**MLP, shortcut="conv1x1", shortcut_init="identity", final_norm=True)
