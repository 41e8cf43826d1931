"""The chapter *An ensemble of relatively shallow paths*: probes against independent references
(enumeration vs closed form, path gradients vs autograd), lesion and reordering invariants, the
stored sweeps and the figures."""
import itertools
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skipnet.experiments import ensemble as E
from skipnet.models import build_model, deleted_blocks
from skipnet.plotting import ensemble as P
from skipnet.probes.lesions import (LesionEvaluator, lesioned_accuracy, random_subsets, random_swap_order,
                                    reordered_blocks, single_deletion_accuracies, swappable_groups, block_signature)
from skipnet.probes.paths import (PathGraph, binomial_length_counts, effective_mean_length, enumerate_paths,
                                  enumerated_length_counts, gradient_by_length, gradient_window, path_share)
from skipnet.store import load_result
from skipnet.train import History

DATA = Path(__file__).resolve().parents[1] / "book" / "data"
SMALL = dict(arch="cnn", depth=14, width=4)          # 6 blocks: 64 paths


# -- paths ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(0, 15))
def test_enumerated_path_lengths_equal_the_binomial_closed_form(n):
    enum = enumerated_length_counts(n)
    assert enum.sum() == 2 ** n
    assert np.array_equal(enum, binomial_length_counts(n))
    assert np.array_equal(enum, [math.comb(n, k) for k in range(n + 1)])


def test_enumeration_lists_every_path_once_and_refuses_huge_n():
    paths = enumerate_paths(3)
    assert len(paths) == len(set(paths)) == 8 and (0, 0, 0) in paths and (1, 1, 1) in paths
    with pytest.raises(ValueError, match="n must be between 0 and 20"):
        enumerated_length_counts(21)


def test_path_gradients_add_up_to_the_autograd_gradient(digits):
    net = build_model(**SMALL, seed=1).eval()
    X, y = digits.X_train[:48], digits.y_train[:48]
    graph = PathGraph(net, X, y)
    assert graph.n == 6
    total = sum(graph.gradient([i for i, b in enumerate(p) if b]) for p in itertools.product((0, 1), repeat=6))
    h0 = net.embed(X).detach().requires_grad_(True)
    h = h0
    for block in net.blocks:
        h = block(h)
    ref, = torch.autograd.grad(F.cross_entropy(net.readout(h), y), h0)
    assert torch.allclose(total, ref, atol=1e-6 * ref.abs().max().item() + 1e-9)
    # and no single path is the whole gradient
    assert not torch.allclose(graph.gradient([]), ref, atol=1e-3 * ref.abs().max().item())


def test_path_gradients_need_a_residual_network(digits):
    with pytest.raises(ValueError, match="residual"):
        PathGraph(build_model(**SMALL, residual=False, seed=0), digits.X_train[:8], digits.y_train[:8])


def test_gradient_weights_against_a_closed_form():
    # magnitude r^k per path: weights C(n,k) r^k normalized = Binomial(n, r/(1+r)), mean n r/(1+r)
    n, r = 27, 0.1
    ks = list(range(n + 1))
    w = gradient_by_length(n, ks, [r ** k for k in ks])
    assert w.sum() == pytest.approx(1.0)
    assert effective_mean_length(ks, w) == pytest.approx(n * r / (1 + r))
    assert effective_mean_length(ks, gradient_by_length(n, ks, [1.0] * (n + 1))) == pytest.approx(n / 2)


def test_gradient_window_and_path_share():
    assert gradient_window([0.0, 0.05, 0.5, 0.4, 0.05, 0.0], 0.9) == (2, 3)
    assert gradient_window([0.25] * 4, 1.0) == (0, 3)
    assert path_share(4, 0, 4) == 1.0 and path_share(4, 2, 2) == 6 / 16
    with pytest.raises(ValueError, match="share"):
        gradient_window([1.0], 0)


# -- lesions ------------------------------------------------------------------------------------------------
def test_deleting_a_zero_branch_changes_nothing_and_deletion_is_undone(digits):
    net = build_model(**SMALL, init="zero_gamma", seed=0).eval()      # every branch is exactly zero
    X, y = digits.X_test, digits.y_test
    with torch.no_grad():
        before = net(X)
        with deleted_blocks(net, [1, 3]):
            during = net(X)
    assert torch.equal(before, during)
    assert not any(b.deleted for b in net.blocks)
    acc = single_deletion_accuracies(net, X, y)
    assert np.all(acc == lesioned_accuracy(net, X, y, []))


def test_fast_lesion_evaluator_matches_the_plain_forward_pass(digits):
    net = build_model(**SMALL, seed=3).eval()
    for m in net.modules():                                # non-trivial BN statistics so deletions matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
    X, y = digits.X_test, digits.y_test
    ev = LesionEvaluator(net, X, y)
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for k in range(7):
        for s in random_subsets(6, k, 3, gen):
            acc = ev.accuracy(s)
            assert acc == lesioned_accuracy(net, X, y, s)
            seen.add(round(acc, 4))
    assert len(seen) > 3                                   # the deletions did change the predictions


def test_random_subsets_are_distinct_sorted_and_validated():
    gen = torch.Generator().manual_seed(0)
    for s in random_subsets(10, 4, 20, gen):
        assert len(s) == len(set(s)) == 4 and s == sorted(s) and all(0 <= i < 10 for i in s)
    assert random_subsets(5, 0, 9, gen) == [[]] and random_subsets(5, 5, 9, gen) == [[0, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="k must be between 0 and 5"):
        random_subsets(5, 6, 1, gen)


def test_reordering_keeps_shapes_and_restores_the_order(digits):
    net = build_model(arch="cnn", depth=20, width=4, seed=0).eval()
    original = list(net.blocks)
    groups = swappable_groups(net)
    assert [len(g) for g in groups] == [3, 2, 2]           # stage 1: 3 blocks; stages 2, 3: all but the downsampler
    order = random_swap_order(net, 5, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(9)) and order != list(range(9))
    assert all(block_signature(original[i]) == block_signature(original[j]) for j, i in enumerate(order))
    X = digits.X_test[:16]
    with torch.no_grad():
        with reordered_blocks(net, order):
            assert list(net.blocks) == [original[i] for i in order]
            net(X)
        assert list(net.blocks) == original
        with reordered_blocks(net, list(range(9))):
            same = net(X)
        assert torch.equal(same, net(X))


def test_reordering_a_downsampling_block_is_refused():
    net = build_model(arch="cnn", depth=20, width=4, seed=0)
    order = list(range(9))
    order[0], order[3] = 3, 0                                # block 3 halves the resolution
    with pytest.raises(ValueError, match="position 0"):
        with reordered_blocks(net, order):
            pass
    with pytest.raises(ValueError, match="permutation"):
        with reordered_blocks(net, [0, 0, 1, 2, 3, 4, 5, 6, 7]):
            pass
    assert [b.index for b in net.blocks] == list(range(9))


def test_identity_blocks_commute(digits):
    net = build_model(arch="cnn", depth=20, width=4, init="zero_gamma", seed=0).eval()
    order = random_swap_order(net, 6, torch.Generator().manual_seed(2))
    with torch.no_grad():
        base = net(digits.X_test)
        with reordered_blocks(net, order):
            assert torch.allclose(net(digits.X_test), base, atol=1e-6)


# -- experiments --------------------------------------------------------------------------------------------
def test_stochastic_depth_trains_with_every_optimizer_step(digits):
    net = E.train_net(14, True, seed=0, drop_prob=0.5, model=E.DEFAULT_MODEL.with_(width=4),
                      train=E.DEFAULT_TRAIN.with_(steps=8, eval_every=0), data=digits)
    assert net.history.status == "finished" and math.isfinite(net.train_loss)
    assert not net.model.training


def test_gap_at_losses_picks_the_first_evaluation_below_each_level():
    evals = [{"step": s, "train_loss": tl, "test_loss": te, "train_acc": a, "test_acc": b}
             for s, tl, te, a, b in [(5, 1.0, 1.1, 0.5, 0.5), (10, 0.3, 0.5, 0.9, 0.8), (15, 0.05, 0.2, 1.0, 0.95)]]
    h = History(evals=evals)
    got = E.gap_at_losses(h, [0.5, 0.1, 0.01])
    assert got[0]["step"] == 10 and got[0]["loss_gap"] == pytest.approx(0.2) and got[0]["acc_gap"] == pytest.approx(0.1)
    assert got[1]["step"] == 15 and got[2] is None
    summary = E.gap_summary([{"evals": evals}, {"evals": evals[:2]}], levels=(0.5, 0.1))
    assert summary["at_loss"][0.5] is not None and summary["at_loss"][0.1] is None
    assert summary["train_loss"]["lo"] == 0.05 and summary["train_loss"]["hi"] == 0.3


def test_deletion_curve_and_largest_step_drop():
    a = E.LesionStudy("x", 0.9, [0.8, 0.7], [0, 1, 2], [[0.9], [0.8, 0.6], [0.1]])
    b = E.LesionStudy("x", 0.9, [0.8, 0.7], [0, 1, 2], [[0.9], [0.6, 0.6], [0.3]])
    c = E.deletion_curve([a, b])
    assert c.ks == [0, 1, 2] and c.mean == pytest.approx([0.9, 0.65, 0.2])
    assert c.lo == pytest.approx([0.9, 0.6, 0.1]) and c.hi == pytest.approx([0.9, 0.7, 0.3])
    assert E.largest_step_drop(c.ks, c.mean) == pytest.approx(0.45)
    assert E.largest_step_drop(c.ks, c.mean, k_max=1) == pytest.approx(0.25)
    assert a.share_within(0.15) == 0.5 and a.median_single == pytest.approx(0.75)


# -- the stored sweep ---------------------------------------------------------------------------------------
def test_stored_sweeps_hold_their_command_config_and_several_seeds():
    for name in ("lesions", "paths", "streams", "gaps"):
        rec = load_result(DATA / f"ensemble_{name}.json")
        assert rec["command"].startswith("python scripts/precompute_ensemble.py")
        assert len(rec["config"]["seeds"]) >= 3
        for label, runs in rec["data"].items():
            assert sorted(r["seed"] for r in runs) == sorted(rec["config"]["seeds"]), (name, label)
    lesions = load_result(DATA / "ensemble_lesions.json")["data"]
    assert {"residual-56", "residual-56 (drop 0.5)", "residual-20", "plain-20"} <= set(lesions)
    assert all(len(r["single"]) == 27 for r in lesions["residual-56"])


def _stored(name):
    return load_result(DATA / f"ensemble_{name}.json")["data"]


def test_stored_lesions_support_the_chapter():
    L = {k: [E.LesionStudy(**{f: v for f, v in r.items() if f != "seed"}) for r in runs]
         for k, runs in _stored("lesions").items()}
    for s in L["residual-56"]:
        assert s.median_single >= s.intact - 0.03 and s.k_means[-1] < 0.2      # every branch gone: near chance
    for s in L["plain-20"]:
        assert s.median_single < 0.25 and s.k_means[1] < 0.25
    single = np.mean([s.single for s in L["residual-56"]], axis=0)
    assert set(np.argsort(single)[:2]) == {0, 1}                              # the first two blocks cost most
    assert np.mean([s.single[0] for s in L["residual-20"]]) == min(np.mean([s.single for s in L["residual-20"]], 0))


def test_stored_paths_are_short_for_residual_56_and_less_so_for_residual_20():
    P = _stored("paths")
    assert all(r["mean_length"] < 0.6 * r["n"] / 2 for r in P["residual-56"])
    assert all(0.7 * r["n"] / 2 < r["mean_length"] < r["n"] / 2 for r in P["residual-20"])


def test_stored_stochastic_depth_shortens_paths_but_not_consistently_the_lesion_curve():
    P, L = _stored("paths"), _stored("lesions")
    sd = {r["seed"]: r for r in P["residual-56 (drop 0.5)"]}
    assert all(sd[r["seed"]]["mean_length"] < r["mean_length"] for r in P["residual-56"])
    ordinary = {r["seed"]: np.array([np.mean(a) for a in r["k_accs"]]) for r in L["residual-56"]}
    dropped = {r["seed"]: np.array([np.mean(a) for a in r["k_accs"]]) for r in L["residual-56 (drop 0.5)"]}
    ahead = sum(np.mean(dropped[s][1:17] - ordinary[s][1:17]) > 0 for s in ordinary)
    assert 0 < ahead < len(ordinary)                                          # no consistent sign across seeds
    mean_diff = np.mean([dropped[s] - ordinary[s] for s in ordinary], axis=0)
    assert np.abs(mean_diff).max() < 0.1                                      # within a few points at every k
    for r in L["residual-56 (drop 0.5)"]:
        assert np.mean(r["single"][:3]) < np.mean(r["single"][13:]) - 0.05   # the first blocks stay the weak point


def test_stored_overfitting_trial():
    G = {k: E.gap_summary(v) for k, v in _stored("gaps").items()}
    gap = {k: g["loss_gap"]["mean"] for k, g in G.items()}
    acc = {k: g["test_acc"]["mean"] for k, g in G.items()}
    assert all(r["evals"][-1]["train_loss"] > 1 for r in _stored("gaps")["plain-56"])   # underfits
    assert gap["plain-56"] == min(gap.values())
    assert gap["residual-56"] > gap["residual-8"]
    for d in (8, 20):
        assert gap[f"residual-{d}"] < gap[f"plain-{d}"] < gap[f"residual-{d}"] + 0.06    # smaller, but slightly
    at = {k: E.gap_summary(_stored("gaps")[k], (0.1, 0.05, 0.02))["at_loss"] for k in ("plain-20", "residual-20")}
    gap_at = {k: {lv: v["loss_gap"]["mean"] for lv, v in a.items()} for k, a in at.items()}
    assert abs(gap_at["residual-20"][0.1] - gap_at["plain-20"][0.1]) < 0.02         # alike at a loss of 0.1
    for lv in (0.05, 0.02):
        assert gap_at["residual-20"][lv] < gap_at["plain-20"][lv] - 0.01             # smaller from 0.05 down
    assert 0.005 < acc["residual-20"] - acc["plain-20"] < 0.02 and abs(acc["residual-8"] - acc["plain-8"]) < 0.005
    assert max(acc[f"residual-{d}"] for d in (8, 20, 56)) - min(acc[f"residual-{d}"] for d in (8, 20, 56)) < 0.015


def test_stored_streams_branches_are_small_and_the_stream_gets_more_readable():
    S = _stored("streams")
    for r in S["residual-56"]:
        assert np.median(r["ratio"]) < 0.5 and r["ratio"][0] > 2 * np.median(r["ratio"])
    for label, runs in S.items():
        for r in runs:
            assert r["probe_acc"][-1] > r["probe_acc"][0] + 0.2, label


# -- figures ------------------------------------------------------------------------------------------------
def test_figures_draw_from_studies_and_stored_dicts():
    study = E.LesionStudy("residual-20", 0.97, [0.5, 0.9, 0.95], [0, 1, 2, 3], [[0.97], [0.9, 0.8], [0.5], [0.2]],
                          [0, 1], [[0.97], [0.9]])
    plain = E.LesionStudy("plain-20", 0.96, [0.1, 0.1, 0.12], [0, 1, 2, 3], [[0.96], [0.1], [0.1], [0.1]])
    axes = P.draw_unraveled(3)
    assert sum(t.get_text().startswith("length") for t in axes[1].texts) == 8
    with pytest.raises(ValueError, match="n must be between 1 and 4"):
        P.draw_unraveled(6)
    P.plot_path_counts({3: (enumerated_length_counts(3), binomial_length_counts(3))})
    ax = P.plot_single_deletions({"residual-20": study, "plain-20": plain}, downsampling={"residual-20": [1]})
    assert len(ax.get_legend().get_texts()) == 2
    ax = P.plot_curves_k([E.deletion_curve([study]), E.deletion_curve([plain])], highlight_k=1)
    assert ax.get_ylim()[0] == 0
    P.plot_curves_k([E.deletion_curve([study], kind="swap")], relative=True)
    n = 4
    ks = list(range(n + 1))
    mags = [10.0 ** -k for k in ks]
    w = gradient_by_length(n, ks, mags)
    ps = E.PathStudy(n, ks, list(binomial_length_counts(n)), mags, [[m / 2, m * 2] for m in mags], list(w),
                     effective_mean_length(ks, w))
    for s in (ps, ps.as_dict()):
        axes = P.plot_path_study(s)
        assert "gradient-weighted mean" in axes[2].get_legend().get_texts()[0].get_text()
    P.plot_gap_bars([{"label": "plain-8", "depth": 8, "residual": False, "train_loss": 0.01, "mean": 0.1,
                      "lo": 0.05, "hi": 0.15}, {"label": "residual-8", "depth": 8, "residual": True,
                                                "train_loss": 0.01, "mean": 0.1, "lo": 0.05, "hi": 0.15}])
    ax = P.plot_gap_vs_loss({"plain-20": {0.1: {"mean": 0.1, "lo": 0.05, "hi": 0.2}, 0.01: None},
                             "residual-20": {0.1: {"mean": 0.1, "lo": 0.05, "hi": 0.2},
                                             0.01: {"mean": 0.1, "lo": 0.05, "hi": 0.2}}})
    assert [len(line.get_xdata()) for line in ax.lines] == [1, 2]
    P.plot_probes({"residual-20": [0.6, 0.8, 0.9]})
    P.plot_ratios({"residual-20": [1.0, 0.3]})
    plt.close("all")
