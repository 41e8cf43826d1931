"""Unit tests of the identity chapter's "is the sum messy?" study: the dense network, the linear probes, eq. 4."""
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from skipnet.data import load_digits
from skipnet.dense import DenseConfig, matched_growth
from skipnet.experiments import identity_sum as isum
from skipnet.models import build_model, n_params
from skipnet.probes.branches import shortcut_product_norm
from skipnet.probes.decode import decodability, ridge_r2, stream_and_writes


def test_dense_block_appends_its_branch_and_keeps_its_input():
    net = DenseConfig(n_blocks=4, width=16, growth=5).build(0).eval()
    x = torch.randn(6, 64)
    states = net.blocks_forward(net.embed(x))
    assert [s.shape[1] for s in states] == [16, 21, 26, 31, 36]
    for block, a, b in zip(net.blocks, states, states[1:]):
        assert torch.equal(b[:, :a.shape[1]], a)                           # concatenation: nothing is mixed
        assert torch.equal(b[:, a.shape[1]:], block.branch(a))
    assert net(x).shape == (6, 10) and len(net.main_layers()) == 2 + 2 * 4


def test_dense_parameter_count_in_closed_form_matches_the_network():
    from skipnet.dense import dense_params
    for n, w, g in ((1, 8, 3), (4, 16, 5), (16, 64, 7)):
        assert dense_params(n, w, g) == n_params(DenseConfig(n, w, g).build(0))


def test_matched_growth_matches_the_residual_parameter_count():
    for n_blocks in (8, 16):
        cfgs = isum.decode_configs(n_blocks)
        res, dense = (n_params(cfgs[k].build(0)) for k in ("residual", "dense"))
        assert n_params(cfgs["plain"].build(0)) == res
        assert abs(dense - res) / res < 0.03
        g = cfgs["dense"].growth
        for other in (g - 1, g + 1):                                      # the closest growth, not just a close one
            assert abs(n_params(DenseConfig(n_blocks, 64, other).build(0)) - res) >= abs(dense - res)
    with pytest.raises(ValueError, match="growth"):
        DenseConfig(growth=0)
    with pytest.raises(ValueError, match="kind"):
        isum.decode_row("highway", 4)


def test_ridge_probe_agrees_with_scikit_learn():
    g = torch.Generator().manual_seed(0)
    Z, Zt = torch.randn(200, 12, generator=g), torch.randn(80, 12, generator=g)
    A = torch.randn(12, 3, generator=g)
    Y, Yt = Z @ A + 0.3 * torch.randn(200, 3, generator=g), Zt @ A + 0.3 * torch.randn(80, 3, generator=g)
    r2, P = ridge_r2(Z, Y, Zt, Yt, lam=0.05)
    mu, sd = Z.mean(0), Z.std(0) + 1e-8
    sk = Ridge(alpha=0.05 * 200).fit(((Z - mu) / sd).numpy(), Y.numpy())
    ref = sk.predict(((Zt - mu) / sd).numpy())
    assert np.allclose(P.numpy(), ref, atol=1e-4)
    ss = ((Yt.numpy() - Yt.numpy().mean(0)) ** 2).sum()
    assert r2 == pytest.approx(1 - ((ref - Yt.numpy()) ** 2).sum() / ss, abs=1e-5)
    assert ridge_r2(Z, Z, Zt, Zt, lam=1e-6)[0] > 0.9999                   # a stream that holds the target
    assert ridge_r2(Z, Y, Zt, torch.randn(80, 3, generator=g), lam=0.05)[0] < 0.1


def test_decodability_of_an_untouched_stream_and_of_what_blocks_wrote():
    data = load_digits(flatten=True)
    zero = build_model(arch="mlp", n_blocks=4, width=64, in_shape=(64,), init="zero_last", seed=0)
    d = decodability(zero, data, [4])[4]                                   # x_4 = x_0: everything readable
    assert d["x0"] > 0.999 and d["pixels"] > 0.9 and len(d["writes"]) == 4
    dense = DenseConfig(n_blocks=3, width=32, growth=4).build(0)
    d = decodability(dense, data, [1, 3])
    assert min(d[3]["writes"]) > 0.995 and d[3]["x0"] > 0.995            # concatenation keeps every piece (ridge shrinks a little)
    plain = build_model(arch="mlp", n_blocks=3, width=32, in_shape=(64,), residual=False, seed=0)
    states, writes = stream_and_writes(plain, data.X_test)
    assert all(torch.equal(w, s) for w, s in zip(writes, states[1:]))     # a plain block's write is its output
    with pytest.raises(ValueError, match="layer"):
        decodability(dense, data, [0])


def test_sum_form_holds_for_a_pure_sum_stream_and_not_after_a_relu():
    X = load_digits(flatten=True).X_test[:64]
    for seed in (0, 1):
        pre = build_model(arch="mlp", n_blocks=12, width=32, placement="pre", in_shape=(64,), seed=seed)
        post = build_model(arch="mlp", n_blocks=12, width=32, placement="post", in_shape=(64,), seed=seed)
        assert isum.sum_form_error(pre, X) < 1e-5 and isum.sum_form_error(pre, X, start=5) < 1e-5
        assert isum.sum_form_error(post, X) > 0.01


def test_shortcut_product_norm_is_the_norm_of_the_product():
    base = dict(arch="mlp", n_blocks=6, width=16, in_shape=(64,), shortcut="conv1x1")
    assert shortcut_product_norm(build_model(**base, shortcut_init="identity", seed=0)) == pytest.approx(1.0)
    assert shortcut_product_norm(build_model(**base, shortcut_init="orthogonal", seed=0)) == pytest.approx(1.0)
    net = build_model(**base, seed=0)
    P = torch.eye(16, dtype=torch.float64)
    for b in net.blocks:
        P = b.shortcut.proj.weight.double() @ P
    assert shortcut_product_norm(net) == pytest.approx(float(np.linalg.svd(P.detach().numpy())[1][0]), rel=1e-9)
    assert shortcut_product_norm(net) < 0.1                               # PyTorch's default draw shrinks
    with pytest.raises(ValueError, match="conv1x1"):
        shortcut_product_norm(build_model(arch="mlp", n_blocks=2, width=8, seed=0))


def test_lambda_config_and_row_fields():
    cfg = isum.lambda_config(1.1, 6)
    assert (cfg.shortcut, cfg.shortcut_scale, cfg.n_blocks, cfg.placement) == ("scale", 1.1, 6, "pre")
    assert isum.LAMBDAS[0] < 1 < isum.LAMBDAS[-1] and 1.0 in isum.LAMBDAS


def test_the_ablation_control_reads_each_write_from_the_stream_without_it():
    """``writes_ablated[k]`` is the probe from x_L - F_k (recomputed here with sklearn's ridge on the same
    standardized features); only residual streams get it; ``states`` reads x_k, and x_0 is the ``x0`` probe."""
    data = load_digits(flatten=True)
    net = build_model(arch="mlp", n_blocks=3, width=32, in_shape=(64,), seed=0)
    d = decodability(net, data, [3])[3]
    assert len(d["writes_ablated"]) == len(d["states"]) == 3 and d["states"][0] == pytest.approx(d["x0"])
    s_tr, w_tr = stream_and_writes(net, data.X_train)
    s_te, w_te = stream_and_writes(net, data.X_test)
    k = 1
    Z, Zt = (s_tr[3] - w_tr[k]).double().numpy(), (s_te[3] - w_te[k]).double().numpy()
    mu, sd = Z.mean(0), Z.std(0, ddof=1) + 1e-8
    ref = Ridge(alpha=1e-2 * len(Z)).fit((Z - mu) / sd, w_tr[k].double().numpy()).predict((Zt - mu) / sd)
    Y = w_te[k].double().numpy()
    assert d["writes_ablated"][k] == pytest.approx(1 - ((ref - Y) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum(), abs=1e-4)
    plain = build_model(arch="mlp", n_blocks=3, width=32, in_shape=(64,), residual=False, seed=0)
    assert "writes_ablated" not in decodability(plain, data, [3])[3]
    # the input-alone baseline: F_k read from x_0 (sklearn's ridge again), for every kind
    Z, Zt = s_tr[0].double().numpy(), s_te[0].double().numpy()
    mu, sd = Z.mean(0), Z.std(0, ddof=1) + 1e-8
    for k in range(3):
        ref = Ridge(alpha=1e-2 * len(Z)).fit((Z - mu) / sd, w_tr[k].double().numpy()).predict((Zt - mu) / sd)
        Y = w_te[k].double().numpy()
        assert d["writes_from_x0"][k] == pytest.approx(1 - ((ref - Y) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum(),
                                                       abs=1e-4)
    assert len(decodability(plain, data, [3])[3]["writes_from_x0"]) == 3


def test_the_control_can_fail_when_a_write_is_independent_of_the_rest():
    """A term the stream does not predict from elsewhere: x_L = x_0 + F with F independent noise. Read from x_L the
    probe recovers F; read from x_L - F = x_0 it cannot: the control gives a different answer, as it must."""
    g = torch.Generator().manual_seed(0)
    x0, F = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    xL = x0 + F
    with_term = ridge_r2(xL[:300], F[:300], xL[300:], F[300:], lam=1e-4)[0]
    without = ridge_r2((xL - F)[:300], F[:300], (xL - F)[300:], F[300:], lam=1e-4)[0]
    assert with_term > 0.3 and without < 0.05 and with_term - without > 0.3


def test_spearman_averages_ties_and_the_bootstrap_interval_is_reported():
    rows = [{"lam": lam, "n_blocks": n, "seed": 0, "test_err": 0.02 * (1 + (1 - lam) * n)}
            for lam in (0.5, 0.8, 1.0) for n in (4, 8, 16)]
    b = isum.lambda_boundary(rows, n_boot=200)
    from scipy.stats import spearmanr
    below = sorted(k for k in b["ratio"] if k[0] < 1)
    assert b["rho"]["L"] == pytest.approx(spearmanr([b["ratio"][k] for k in below], [k[1] for k in below]).statistic)
    assert b["rho"]["L(1-lambda)"] == pytest.approx(1.0)                  # the error was built from L(1 - lambda)
    lo, hi = b["rho_diff_boot"]["ci"]
    assert lo <= b["rho_diff_boot"]["median"] <= hi and b["rho_diff_boot"]["n"] > 100


def test_readback_and_variant_figures_and_tables_render():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skipnet.experiments.identity_variants import best_lr
    from skipnet.plotting.identity_sum import plot_readback
    from skipnet.plotting.identity_variants import plot_shortcut_diagram
    from skipnet.tables import best_lr_table_md, readback_control_md
    dec = {"writes": [0.9, 0.8], "writes_ablated": [0.85, 0.78], "states": [0.95, 0.9], "x0": 0.95}
    rows = [{"kind": "residual", "n_blocks": 2, "seed": 0, "test_err": 0.03, "decode": {"2": dec}},
            {"kind": "plain", "n_blocks": 2, "seed": 0, "test_err": 0.04,
             "decode": {"2": {k: v for k, v in dec.items() if k != "writes_ablated"}}}]
    assert len(plot_readback(rows, 2).lines) == 4
    md = readback_control_md(rows)
    assert "0.050" in md and "(no sum)" in md
    assert len(plot_shortcut_diagram().patches) >= 6 * 3
    b = best_lr([{"key": k, "lr": lr, "seed": 0, "test_err": e} for k, lr, e in
                 (("identity", 0.1, 0.02), ("identity", 0.02, 0.05), ("x", 0.1, 0.5), ("x", 0.02, 0.04))])
    md = best_lr_table_md(b, {"identity": "identity", "x": "x"}, {"identity": 6.37, "x": None})
    assert "| x | 4.0 | 50.0 | 0.02 | 2.0 | fail |" in md
    plt.close("all")


def test_confirmation_seeds_is_the_exact_floor():
    from skipnet.experiments.identity_sum import confirmation_seeds
    from skipnet.inference import min_p
    assert confirmation_seeds(1) == 6                 # 2/2^5 = 0.0625, 2/2^6 = 0.031
    n = confirmation_seeds(9)
    assert 9 * min_p(n) < 0.05 <= 9 * min_p(n - 1)
    assert confirmation_seeds(1, one_sided=True) == 5   # a TOST's one-sided 1/2^5 = 0.031
    assert confirmation_seeds(2, one_sided=True) == 6   # Holm over two equivalences: 2/2^6 = 0.031
    assert confirmation_seeds(18) == 10
