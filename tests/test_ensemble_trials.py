"""The trials of *An ensemble of relatively shallow paths*, against independent references: the exact path-length
spectrum against the enumeration of all 2^n paths and against autograd (eval mode and batch statistics), BN
recalibration against statistics computed by hand, branch replacement against the lesion evaluator and the intact net,
the refinement cosine against a second autograd route, the short-path training hooks against the path gradients they
must equal, disjoint swaps and Kendall distances against brute force, and the statistics against scipy.
"""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import stats

from skipnet.data import Dataset
from skipnet.experiments import ensemble as E
from skipnet.experiments import ensemble_trials as T
from skipnet.experiments import ensemble_claims as EC
from skipnet.models import build_model
from skipnet.plotting import ensemble_trials as PT
from skipnet.probes.lesions import (LesionEvaluator, block_signature, kendall_distance, lesioned_accuracy,
                                    max_disjoint_swaps, random_swap_order, recalibrated, recalibrated_accuracy)
from skipnet.probes.path_spectrum import bn_train_copy, exact_path_spectrum, gains_prediction, mean_of
from skipnet.probes.paths import PathGraph, enumerate_paths
from skipnet.probes.replace import Replacer, derangement, refinement_cosines
from skipnet.runtime import eval_mode, generator

SMALL = dict(arch="cnn", depth=14, width=4)          # 6 blocks: 64 paths


def _trained_small(digits, seed=1, steps=30):
    return E.train_net(14, True, seed=seed, model=E.ENSEMBLE_MODEL.with_(width=4),
                       train=E.DEFAULT_TRAIN.with_(steps=steps, eval_every=0), data=digits).net


def _autograd(net, X, y):
    h0 = net.embed(X).detach().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(net.readout(net.blocks_forward(h0)[-1]), y), h0)
    return g


# -- the exact spectrum -----------------------------------------------------------------------------------------
def test_each_exact_length_is_the_sum_of_the_enumerated_paths_of_that_length(digits):
    """G_k from the dynamic programme against the sum of the C(6, k) single-path gradients of PathGraph (another
    code path): equal length by length, so a DP that shifted or mirrored lengths fails."""
    net = _trained_small(digits)
    X, y = digits.X_train[:48], digits.y_train[:48]
    graph = PathGraph(net, X, y)
    by_length = [0] * 7
    for path in enumerate_paths(6):
        by_length[sum(path)] = by_length[sum(path)] + graph.gradient([i for i, b in enumerate(path) if b])
    sp = exact_path_spectrum(net, X, y)
    norms = np.array([g.norm().item() for g in by_length])
    assert np.allclose(sp.norms, norms, rtol=1e-4)
    assert not np.allclose(sp.norms, norms[::-1], rtol=0.1)                 # the lengths are not symmetric here
    direct = _autograd(net.eval(), X, y)
    proj = [(g * direct).sum().item() / (direct * direct).sum().item() for g in by_length]
    assert np.allclose(sp.projection, proj, rtol=1e-4, atol=1e-7) and sum(sp.projection) == pytest.approx(1, abs=1e-5)
    assert sp.sum_error < 1e-5 and sp.mean_length == pytest.approx(mean_of(sp.shares))
    assert 0 < sp.coherence <= 1 + 1e-6


def test_the_exact_spectrum_with_batch_statistics_sums_to_autograd_and_leaves_the_model_alone(digits):
    net = build_model(**SMALL, seed=0)
    X, y = digits.X_train[:64], digits.y_train[:64]
    before, mode = {k: v.clone() for k, v in net.state_dict().items()}, net.training
    sp = exact_path_spectrum(net, X, y, bn="batch")
    assert sp.sum_error < 1e-5
    reference = _autograd(bn_train_copy(net), X, y)                         # BN with batch statistics, by autograd
    assert reference.abs().max() > 0
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())     # running stats untouched
    assert net.training == mode                                                 # its mode is restored
    fresh = E.ENSEMBLE_MODEL.build(seed=0)                                    # the chapter's residual-56, untrained
    off = exact_path_spectrum(fresh, X, y, bn="eval")                        # untrained stats: BN is the identity
    batch = exact_path_spectrum(fresh, X, y, bn="batch")
    assert off.mean_length > batch.mean_length + 2                           # batch statistics shorten the paths
    with pytest.raises(ValueError, match="bn must be one of"):
        exact_path_spectrum(net, X, y, bn="train")
    with pytest.raises(ValueError, match="residual"):
        exact_path_spectrum(build_model(**SMALL, residual=False, seed=0), X, y)


def test_zero_gamma_puts_the_whole_exact_spectrum_at_length_zero(digits):
    net = build_model(**SMALL, init="zero_gamma", seed=0)
    sp = exact_path_spectrum(net, digits.X_train[:32], digits.y_train[:32])
    assert sp.norms[0] > 0 and all(v == 0 for v in sp.norms[1:]) and sp.mean_length == 0.0 and sp.sum_error == 0.0


@pytest.mark.parametrize("branch_scale,short", [(0.2, True), (5.0, False)])
def test_the_exact_spectrum_follows_the_branch_gain(digits, branch_scale, short):
    net = build_model(**SMALL, branch_scale=branch_scale, seed=1)
    sp = exact_path_spectrum(net, digits.X_train[:48], digits.y_train[:48])
    assert (sp.mean_length < 6 / 4) if short else (sp.mean_length > 3 * 6 / 4), sp.mean_length
    assert (np.median(sp.gains) < 1) if short else (np.median(sp.gains) > 1)


def test_gains_prediction_is_the_product_expansion():
    r = [0.5, 2.0, 0.1]
    direct = np.zeros(4)
    for path in itertools.product((0, 1), repeat=3):                          # every path: product of its gains
        direct[sum(path)] += math.prod(g for g, b in zip(r, path) if b)
    assert np.allclose(gains_prediction(r), direct / direct.sum())
    assert mean_of(gains_prediction(r)) == pytest.approx(sum(g / (1 + g) for g in r))


def test_spectrum_study_is_the_exact_spectrum_on_the_batch_of_veits_estimate(digits):
    """spectrum_study (ensemble_spectra.json) on a small net: the exact spectrum of ``seed``'s random training batch,
    as running statistics, batch statistics and, for a fresh net, statistics calibrated on the training set (the
    model itself untouched); and that batch is the one path_study samples (its one path of length 0 and its one path
    of length n have the exact spectrum's norms)."""
    net = _trained_small(digits, seed=1)
    idx = torch.randperm(len(digits.X_train), generator=generator(5))[:T.SPECTRUM_BATCH]
    X, y = digits.X_train[idx], digits.y_train[idx]
    s = T.spectrum_study(net, digits, seed=5, label="residual-14")
    assert s.as_dict() == {**exact_path_spectrum(net, X, y).as_dict(), "label": "residual-14"}
    batch = T.spectrum_study(net, digits, 5, bn="batch")
    assert batch.as_dict() == exact_path_spectrum(net, X, y, bn="batch").as_dict()
    veit = E.path_study(net, digits, n_samples=1, seed=5)
    assert veit.magnitude[0] == pytest.approx(s.norms[0], rel=1e-5)           # the all-skip path
    assert veit.magnitude[6] == pytest.approx(s.norms[6], rel=1e-5)           # the all-branch path
    assert T.spectrum_study(net, digits, 6).norms[0] != pytest.approx(s.norms[0], rel=1e-3)   # another seed's batch
    fresh = build_model(**SMALL, seed=0)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    cal = T.spectrum_study(fresh, digits, 5, calibrate=True)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in before.items())
    assert cal.as_dict() == exact_path_spectrum(recalibrated(fresh, digits.X_train)[0], X, y).as_dict()
    assert abs(cal.mean_length - T.spectrum_study(fresh, digits, 5).mean_length) > 0.1     # calibration changes it


# -- BN recalibration -------------------------------------------------------------------------------------------
def _close_on_scale(got, ref, rel=1e-3):
    """``got`` (float32 running statistics) within ``rel`` of the reference's own scale, the reference computed in
    float64: float32 accumulation differs from it by about 1e-5 of the scale, calibrating on another stream (the
    intact one instead of the lesioned one) by about 0.3 of it."""
    ref = ref.double()
    err = (got.double() - ref).abs().max().item()
    return err <= rel * ref.abs().max().item(), (err, ref.abs().max().item())


def test_recalibration_recomputes_the_statistics_of_the_lesioned_stream(digits):
    net = _trained_small(digits, seed=2, steps=20)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    X = digits.X_train
    copy, blocks = recalibrated(net, X, deleted=[1])
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())        # the model is untouched
    assert not copy.training
    # by hand, in float64: the stem's BN sees the conv output; the first BN of block 3 sees block 3's input with
    # block 2 gone (the intact stream's statistics differ by a third of their scale: the check can tell them apart)
    with torch.no_grad():
        stem_out = net.stem(X).double()
        ok, info = _close_on_scale(copy.stem_norm.running_mean, stem_out.mean((0, 2, 3)))
        assert ok, info
        ok, info = _close_on_scale(copy.stem_norm.running_var, stem_out.var((0, 2, 3), unbiased=True))
        assert ok, info
        h = copy.blocks_forward(copy.embed(X), blocks=blocks)[2]                       # input of block 3
        conv = copy.blocks[2].branch.weights[0](h).double()
        ok, info = _close_on_scale(copy.blocks[2].branch.norms[0].running_mean, conv.mean((0, 2, 3)))
        assert ok, info
        ok, info = _close_on_scale(copy.blocks[2].branch.norms[0].running_var, conv.var((0, 2, 3), unbiased=True))
        assert ok, info
    # the weights are the same; only the statistics moved
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), copy.parameters()))
    acc = recalibrated_accuracy(net, X, digits.X_test, digits.y_test, [1])
    with torch.no_grad():
        ref = (copy.readout(copy.blocks_forward(copy.embed(digits.X_test), blocks=blocks)[-1]).argmax(-1)
               == digits.y_test).float().mean().item()
    assert acc == ref


def test_recal_study_calibrates_on_the_training_images_and_scores_the_test_images(digits):
    """The experiment the precompute script runs (ensemble_recal.json), on a Dataset whose test images are shifted
    by a constant: BN statistics calibrated on the scored (shifted) images would absorb the shift, those calibrated
    on the training images do not, so the two give different accuracies (checked below) and the study must give the
    second. Every number is recomputed by hand: stale ones by the lesion evaluator, recalibrated ones by
    :func:`recalibrated_accuracy` on the training images, on the very sets the study reports."""
    net = _trained_small(digits, seed=2, steps=20)
    shifted = Dataset(digits.X_train, digits.y_train, digits.X_test + 0.5, digits.y_test, digits.n_classes)
    X, y, calib = shifted.X_test, shifted.y_test, shifted.X_train
    s = T.recal_study(net, shifted, "residual-14", ks=(2, 4, 9), n_samples=3, seed=1)
    assert s.label == "residual-14" and s.ks == [2, 4]                       # k beyond the 6 blocks is dropped
    assert [len(sets) for sets in s.sets] == [3, 3] and all(len(x) == k for k, sets in zip(s.ks, s.sets) for x in sets)
    ev = LesionEvaluator(net, X, y)
    assert s.intact == ev.intact and s.single == [ev.accuracy([i]) for i in range(6)]
    assert s.k_stale == [[ev.accuracy(x) for x in sets] for sets in s.sets]
    assert s.intact_recal == recalibrated_accuracy(net, calib, X, y)
    assert s.single_recal == [recalibrated_accuracy(net, calib, X, y, [i]) for i in range(6)]
    assert s.k_recal == [[recalibrated_accuracy(net, calib, X, y, x) for x in sets] for sets in s.sets]
    on_scored = [recalibrated_accuracy(net, X, X, y, [i]) for i in range(6)]
    assert np.abs(np.subtract(on_scored, s.single_recal)).max() > 0.05          # the shift shows: the check has teeth
    again = T.recal_study(net, shifted, "residual-14", ks=(2, 4, 9), n_samples=3, seed=1)
    assert again.as_dict() == s.as_dict()                                       # seeded: the same sets, the same numbers


# -- branch replacement and the refinement cosine -------------------------------------------------------------------
def test_replacement_by_nothing_is_deletion_and_by_its_own_output_is_the_intact_net(digits):
    net = _trained_small(digits, seed=3)
    X, y = digits.X_test, digits.y_test
    rep, ev = Replacer(net, X, y), LesionEvaluator(net, X, y)
    assert rep.intact == ev.intact
    for blocks in ([0], [2, 4], [1, 3, 5]):
        assert rep.accuracy(blocks, "delete") == ev.accuracy(blocks) == lesioned_accuracy(net, X, y, blocks)
    gen = torch.Generator().manual_seed(0)
    assert rep.replacement(2, "channel mean", gen).shape == rep.outputs[2].shape
    noise = rep.replacement(2, "noise", gen)
    assert torch.allclose(noise.mean((0, 2, 3)), rep.outputs[2].mean((0, 2, 3)), atol=0.1 * rep.outputs[2].std().item())
    other = rep.replacement(4, "other image", gen)
    assert sorted(other.flatten().tolist()) == pytest.approx(sorted(rep.outputs[4].flatten().tolist()))  # a permutation
    assert not torch.equal(other, rep.outputs[4])
    with pytest.raises(ValueError, match="variant must be one of"):
        rep.accuracy([0], "zeros")
    with pytest.raises(ValueError, match="block indices must be in 0..5"):
        rep.accuracy([6], "delete")
    out = rep.sweep([1, 6], n_sets=3, seed=0)
    assert out["ms"] == [1, 6] and [len(s) for s in out["sets"]] == [3, 1] and len(out["delete"][1]) == 1
    assert out["delete"][1][0] == ev.accuracy(range(6))
    kept = rep.sweep([2], n_sets=5, seed=1, exclude=(0,))
    assert all(0 not in s for s in kept["sets"][0])
    with pytest.raises(ValueError, match="m must be between 1 and 5"):
        rep.sweep([6], exclude=(0,))


def test_noise_study_and_refinement_study_on_the_test_images(digits):
    """noise_study and refinement_study (ensemble_noise.json) on a small trained net: m beyond the blocks that may be
    replaced is dropped, block 1 is never replaced with ``exclude_first``, "delete" is the lesion evaluator's accuracy
    on the very sets reported, on the TEST images (so is "intact"); the variants differ; the sets are seeded; the
    cosines are refinement_cosines on the test images."""
    net = _trained_small(digits, seed=3)
    X, y = digits.X_test, digits.y_test
    ev = LesionEvaluator(net, X, y)
    out = T.noise_study(net, digits, [1, 2, 5, 6], n_sets=4, seed=2, exclude_first=True)
    assert out["intact"] == ev.intact and out["ms"] == [1, 2, 5]                  # 5 blocks besides block 1
    assert [len(sets) for sets in out["sets"]] == [4, 4, 1]
    for m, sets, delete in zip(out["ms"], out["sets"], out["delete"]):
        assert all(len(x) == m and 0 not in x for x in sets), m
        assert delete == [ev.accuracy(x) for x in sets], m
    assert out["other image"] != out["delete"] and out["noise"] != out["delete"]
    every = T.noise_study(net, digits, [5], n_sets=6, seed=2)
    assert any(0 in x for x in every["sets"][0]) and every["delete"][0] == [ev.accuracy(x) for x in every["sets"][0]]
    assert T.noise_study(net, digits, [1, 2, 5, 6], n_sets=4, seed=2, exclude_first=True) == out
    assert T.noise_study(net, digits, [1, 2, 5, 6], n_sets=4, seed=3, exclude_first=True)["sets"] != out["sets"]
    assert T.refinement_study(net, digits) == refinement_cosines(net, X, y).tolist()
    assert T.refinement_study(net, digits) != refinement_cosines(net, digits.X_train, digits.y_train).tolist()


def test_derangements_move_every_image():
    gen = torch.Generator().manual_seed(0)
    for n in (2, 3, 10):
        p = derangement(n, gen)
        assert sorted(p.tolist()) == list(range(n)) and not (p == torch.arange(n)).any()
    with pytest.raises(ValueError, match="n >= 2"):
        derangement(1, gen)


def test_refinement_cosines_against_a_second_autograd_route(digits):
    net = _trained_small(digits, seed=4)
    X, y = digits.X_test[:50], digits.y_test[:50]
    cos = refinement_cosines(net, X, y)
    with eval_mode(net):                                     # independent: retain_grad on the sums, one backward
        h, zs, fs = net.embed(X), [], []
        for block in net.blocks:
            f = block.branch(h)
            z = f + block.shortcut(h)
            z.retain_grad()
            zs.append(z)
            fs.append(f.detach())
            h = block.post(z)
        F.cross_entropy(net.readout(h), y, reduction="sum").backward()
    ref = [F.cosine_similarity(f.flatten(1), -z.grad.flatten(1), dim=1).mean().item() for f, z in zip(fs, zs)]
    assert np.allclose(cos, ref, atol=1e-5)
    zero = refinement_cosines(build_model(**SMALL, init="zero_gamma", seed=0), X, y)
    assert np.all(zero == 0)                                  # a zero branch points nowhere


# -- training through a few blocks ----------------------------------------------------------------------------------
def test_short_path_hooks_give_the_gradient_of_the_paths_through_the_drawn_blocks(digits):
    """mode "paths": the input gradient is the sum of the path gradients that use only the drawn branches (PathGraph,
    another code path), and undrawn blocks get no gradient; mode "updates": the full gradient, masked to the drawn
    blocks' parameters; in eval mode the hooks do nothing."""
    X, y = digits.X_train[:32], digits.y_train[:32]
    net = build_model(**SMALL, seed=5)
    hooks = T.ShortPaths(net, 2, "paths", seed=0)
    net.train()
    for m in net.modules():                                   # BN with running statistics: PathGraph's forward pass
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    hooks._draw(net, ())                                      # what a training forward pass does first
    chosen = set(hooks.selected)
    assert len(chosen) == 2
    h0 = net.embed(X).detach().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(net.readout(net.blocks_forward(h0)[-1]), y), h0)
    hooks.remove()
    with eval_mode(net):
        graph = PathGraph(net, X, y)
    subset_sum = sum(graph.gradient(list(s)) for r in range(3) for s in itertools.combinations(sorted(chosen), r))
    assert torch.allclose(g, subset_sum, atol=1e-6 * g.abs().max().item())
    net.zero_grad()
    hooks = T.ShortPaths(net, 2, "paths", seed=0)
    net.train()
    F.cross_entropy(net(X), y).backward()
    for i, block in enumerate(net.blocks):
        grads = [p.grad for p in block.parameters()]
        assert all(gr is None for gr in grads) == (i not in hooks.selected), i
    hooks.remove()
    ref = build_model(**SMALL, seed=5).train()
    F.cross_entropy(ref(X), y).backward()
    masked = build_model(**SMALL, seed=5).train()
    hooks = T.ShortPaths(masked, 3, "updates", seed=1)
    F.cross_entropy(masked(X), y).backward()
    for i, (a, b) in enumerate(zip(ref.blocks, masked.blocks)):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.allclose(q.grad, p.grad if i in hooks.selected else torch.zeros_like(p.grad)), i
    with pytest.raises(ValueError, match="mode must be one of"):
        T.ShortPaths(net, 2, "branches", seed=0)
    with pytest.raises(ValueError, match="k must be between 1 and 6"):
        T.ShortPaths(net, 7, "paths", seed=0)


def test_training_through_few_blocks_runs_and_is_seeded(digits):
    short = E.DEFAULT_TRAIN.with_(steps=6, eval_every=0)
    small = E.ENSEMBLE_MODEL.with_(width=4)
    a = T.train_short_paths(2, "paths", seed=0, depth=14, model=small, train=short, data=digits)
    b = T.train_short_paths(2, "paths", seed=0, depth=14, model=small, train=short, data=digits)
    c = T.train_short_paths(6, "paths", seed=0, depth=14, model=small, train=short, data=digits)
    normal = E.train_net(14, True, seed=0, model=small, train=short, data=digits)
    assert a.status == "finished" and a.history.loss == b.history.loss and a.extra == {"k": 2, "mode": "paths"}
    assert a.history.loss != normal.history.loss
    assert c.history.loss == normal.history.loss              # k = n: every block, the ordinary training
    assert not a.net._forward_pre_hooks and not a.net.training


# -- swaps --------------------------------------------------------------------------------------------------------
def test_disjoint_swaps_move_each_block_at_most_once_and_never_undo_each_other():
    net = build_model(arch="cnn", depth=20, width=4, seed=0)
    assert max_disjoint_swaps(net) == 3 and max_disjoint_swaps(net, fixed=(0, 1)) == 2
    gen = torch.Generator().manual_seed(0)
    for k in (1, 2, 3):
        for _ in range(20):
            order = random_swap_order(net, k, gen)
            moved = [j for j, i in enumerate(order) if i != j]
            assert len(moved) == 2 * k                                 # k disjoint transpositions, never the identity
            assert all(order[order[j]] == j for j in moved)            # each moved block traded places with one other
            assert all(block_signature(net.blocks[i]) == block_signature(net.blocks[j]) for j, i in enumerate(order))
            assert kendall_distance(order) >= k
    for _ in range(20):
        assert random_swap_order(net, 2, gen, fixed=(0,))[0] == 0
    with pytest.raises(ValueError, match="k must be between 0 and 3"):
        random_swap_order(net, 4, gen)
    big = build_model(arch="cnn", depth=56, width=4, seed=0)
    assert max_disjoint_swaps(big) == 12 and max_disjoint_swaps(big, fixed=(0,)) == 12


def test_kendall_distance_against_brute_force_and_scipy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 9):
        order = list(rng.permutation(n))
        inversions = sum(1 for i, j in itertools.combinations(range(n), 2) if order[i] > order[j])
        assert kendall_distance(order) == inversions
        if n > 1:
            tau = stats.kendalltau(range(n), order)[0]
            assert tau == pytest.approx(1 - 4 * inversions / (n * (n - 1)))


def test_lesion_study_keeps_its_sets_and_stratifies_by_block_1(digits):
    net = E.train_net(20, True, seed=6, model=E.ENSEMBLE_MODEL.with_(width=4),
                      train=E.DEFAULT_TRAIN.with_(steps=30, eval_every=0), data=digits).net
    s = E.lesion_study(net, digits, "x", ks=[0, 1, 3], n_samples=6, swap_ks=[0, 1], seed=0, fixed_swaps=True)
    assert [len(a) for a in s.k_sets] == [1, 6, 6] and all(len(x) == k for k, sets in zip(s.ks, s.k_sets) for x in sets)
    ev = LesionEvaluator(net, digits.X_test, digits.y_test)
    assert [[ev.accuracy(x) for x in sets] for sets in s.k_sets] == s.k_accs       # the sets are the ones tested
    t = E.lesion_study(net, digits, "x", ks=[0, 1, 3], n_samples=6, seed=1)
    c = E.stratified_curve([s, t], block=0)
    for j in range(3):                                                     # pooled over both studies, by hand
        pooled = [(a, 0 in x) for st in (s, t) for a, x in zip(st.k_accs[j], st.k_sets[j])]
        cut, kept = [a for a, f in pooled if f], [a for a, f in pooled if not f]
        assert c["n_with"][j] == len(cut) and c["n_without"][j] == len(kept)
        assert (np.isnan(c["with"][j]) and not cut) or c["with"][j] == pytest.approx(np.mean(cut))
        assert c["without"][j] == pytest.approx(np.mean(kept))
    assert len(s.swap_kendall) == 2 and s.swap_kendall[0] == [0] and all(d >= 1 for d in s.swap_kendall[1])
    assert len(s.swap_fixed_accs) == 2
    with pytest.raises(ValueError, match="k_sets"):
        E.stratified_curve([E.LesionStudy("x", 0.9, [0.5], [0], [[0.9]])])


# -- a real ensemble and the statistics ----------------------------------------------------------------------------
class _Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_ensemble_deletion_averages_logits_over_every_subset():
    y = torch.tensor([0, 1, 2])
    eye = torch.eye(3)
    members = [_Fixed(eye * 2), _Fixed(eye[[1, 1, 2]] * 2), _Fixed(eye[[0, 0, 0]] * 1.0)]
    out = T.ensemble_deletion(members, torch.zeros(3, 1), y)
    assert out["members"] == pytest.approx([1, 2 / 3, 1 / 3])
    singles = out["members"]
    assert out["mean"][-1] == pytest.approx(np.mean(singles)) and out["lo"][-1] == min(singles)
    assert out["deleted"] == [0, 1, 2] and out["mean"][0] == pytest.approx(1.0)


def test_a_real_ensemble_of_tiny_trained_nets(digits):
    """A slice of the members sweep (ensemble_members.json): three tiny residual-8 nets trained by train_net, as the
    precompute script does, then ensemble_deletion on the test images: each member's accuracy is its own run's, and
    each point of the curve is the mean, lowest and highest accuracy of the logits averaged over the surviving
    members (by hand, over every subset)."""
    tiny, short = E.ENSEMBLE_MODEL.with_(width=4), E.DEFAULT_TRAIN.with_(steps=8, eval_every=0)
    runs = [E.train_net(8, True, seed=s, model=tiny, train=short, data=digits) for s in (0, 1, 2)]
    X, y = digits.X_test, digits.y_test
    out = T.ensemble_deletion([r.net for r in runs], X, y)
    assert out["members"] == pytest.approx([r.test_acc for r in runs], abs=1e-6)
    with torch.no_grad():
        logits = [r.net(X) for r in runs]
    for m in range(3):
        accs = [(torch.stack([logits[i] for i in keep]).mean(0).argmax(-1) == y).float().mean().item()
                for keep in itertools.combinations(range(3), 3 - m)]
        assert out["mean"][m] == pytest.approx(np.mean(accs), abs=1e-6)
        assert out["lo"][m] == pytest.approx(min(accs), abs=1e-6) and out["hi"][m] == pytest.approx(max(accs), abs=1e-6)


def test_the_chapters_paired_comparisons_go_through_the_inference_protocol():
    """The hand-written paired t-test is gone: a paired claim is skipnet.inference.compare (exact sign-flip test,
    t interval), whose mean and interval agree with scipy's paired t statistics."""
    from skipnet.inference import compare
    assert not hasattr(T, "paired")
    a, b = [0.9, 0.8, 0.85, 0.95, 0.7], [0.88, 0.81, 0.8, 0.9, 0.69]
    c = compare(a, b)
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert c.mean == pytest.approx(d.mean()) and c.ci == pytest.approx((d.mean() - half, d.mean() + half))
    flips = [abs(np.mean(d * np.array(signs))) for signs in itertools.product((1, -1), repeat=5)]
    exact_p = np.mean([f >= abs(d.mean()) - 1e-12 for f in flips])                 # all 2^5 sign patterns
    assert c.higher == 4 and c.lower == 1 and c.n == 5 and c.p == pytest.approx(exact_p)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        compare([1.0], [0.5])


def test_interpolated_gap_between_the_evaluations_around_the_crossing():
    evals = [{"train_loss": 1.0, "test_loss": 1.2}, {"train_loss": 0.1, "test_loss": 0.5},
             {"train_loss": 0.01, "test_loss": 0.41}]
    assert T.interpolated_gap(evals, 1.0) == pytest.approx(0.2)                 # at an evaluation: its gap
    mid = math.sqrt(1.0 * 0.1)                                                  # halfway in log loss
    assert T.interpolated_gap(evals, mid) == pytest.approx((0.2 + 0.4) / 2)
    assert T.interpolated_gap(evals, 0.001) is None
    assert T.interpolated_gap(evals, 5.0) == pytest.approx(0.2)                 # already below at the first


def _drawn(ax):
    """Every line of ``ax`` by its label: (x, y) as float arrays."""
    return {line.get_label(): (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
            for line in ax.lines}


def _band_holds(collection, x, lo, hi):
    """The filled band's outline passes through (x, lo) and (x, hi) at every x."""
    verts = {(round(float(a), 9), round(float(b), 9)) for a, b in collection.get_paths()[0].vertices}
    return all((round(float(a), 9), round(float(b), 9)) in verts for a, b in [*zip(x, lo), *zip(x, hi)])


def test_the_trial_figures_the_text_reads_draw_the_studys_numbers(digits):
    """The figures whose curves the chapter interprets (branch replacement, recalibrated lesions, the exact spectrum)
    drawn from real studies of a small net: each plotted series is the study's numbers, at the study's x, under its
    own label (a figure that drew lo for the mean, or swapped stale and recalibrated, fails)."""
    import matplotlib.pyplot as plt
    net = _trained_small(digits, seed=3)
    out = T.noise_study(net, digits, [1, 2, 5], n_sets=3, seed=0, exclude_first=True)
    curves = {v: (out["ms"], [np.mean(a) for a in out[v]], [min(a) for a in out[v]], [max(a) for a in out[v]])
              for v in ("delete", "other image", "noise", "channel mean")}
    ax = PT.plot_replacement(curves)
    lines = _drawn(ax)
    for j, (v, (ms, mean, lo, hi)) in enumerate(curves.items()):
        assert np.array_equal(lines[v][0], ms) and np.array_equal(lines[v][1], mean), v
        assert _band_holds(ax.collections[j], ms, lo, hi), v
    r = T.recal_study(net, digits, "residual-14", ks=(2, 4), n_samples=2, seed=0)
    lines = _drawn(PT.plot_recal_single({"residual-14": (r.single, r.single_recal, r.intact)}))
    x = np.arange(1, 7) / 6
    assert np.array_equal(lines["residual-14, as tested"][0], x)
    assert np.array_equal(lines["residual-14, as tested"][1], r.single)
    assert np.array_equal(lines["residual-14, BN recalibrated"][1], r.single_recal)
    ks = [0] + r.ks
    stale = [r.intact] + [np.mean(a) for a in r.k_stale]
    recal = [r.intact_recal] + [np.mean(a) for a in r.k_recal]
    lines = _drawn(PT.plot_recal_curves({"residual-14": (ks, stale, recal)}))
    assert np.array_equal(lines["residual-14, as tested"][0], ks)
    assert np.array_equal(lines["residual-14, as tested"][1], stale)
    assert np.array_equal(lines["residual-14, BN recalibrated"][1], recal)
    sp = T.spectrum_study(net, digits, seed=0)
    veit = E.path_study(net, digits, n_samples=2, seed=0)
    prediction = gains_prediction(sp.gains)
    ax = PT.plot_spectrum(sp.shares, veit.weights, prediction)
    assert [b.get_height() for b in ax.patches] == pytest.approx(sp.shares, abs=1e-12)
    assert [b.get_x() + b.get_width() / 2 for b in ax.patches] == pytest.approx(range(7))
    by_start = {label.split(",")[0]: xy for label, xy in _drawn(ax).items()}
    assert np.allclose(by_start["Veit's sampled estimate"][1], veit.weights, rtol=0, atol=1e-12)
    assert np.allclose(by_start["from per-block gains"][1], prediction, rtol=0, atol=1e-12)
    legend = {t.get_text().split(",")[0]: t.get_text() for t in ax.get_legend().get_texts()}
    assert legend["exact (dynamic programme)"].endswith(f"mean {sp.mean_length:.1f}")
    assert legend["Veit's sampled estimate"].endswith(f"mean {veit.mean_length:.1f}")
    plt.close("all")


def test_trial_figures_draw():
    import matplotlib.pyplot as plt
    PT.plot_spectrum([0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.3, 0.4, 0.3])
    ax = PT.plot_spectra({"trained": [0.5, 0.3, 0.2], "untrained, BN off": [0.2, 0.3, 0.5]})
    assert "mean 0.7" in ax.get_legend().get_texts()[0].get_text()
    PT.plot_recal_single({"residual-20": ([0.5, 0.9], [0.8, 0.95], 0.97)})
    PT.plot_recal_curves({"residual-56": ([0, 2], [0.97, 0.8], [0.97, 0.9])})
    PT.plot_cost_vs_ratio({"residual-56": ([1.0, 0.3], [0.5, 0.01])})
    PT.plot_stratified({"residual-56": ([0, 1], [0.97, 0.9], [np.nan, 0.5], [0.97, 0.95])})
    PT.plot_swaps({"residual-56": ([0, 3], [0.97, 0.9]), "residual-56, block 1 fixed": ([0, 3], [0.97, 0.95])})
    PT.plot_replacement({"delete": ([1, 2], [0.9, 0.8], [0.85, 0.7], [0.95, 0.9])}, title="x")
    PT.plot_refinement({"residual-56": ([0.1, 0.2], [0.0, 0.1], [0.2, 0.3])})
    PT.plot_short_paths([("normal", [0.97, 0.98]), ("through 7", [0.9, 0.92])])
    ax = PT.plot_member_deletion(([0, 0.5], [0.98, 0.97], [0.97, 0.96], [0.99, 0.98]),
                                 ([0, 1], [0.97, 0.1], [0.96, 0.1], [0.98, 0.1]))
    assert len(ax.get_legend().get_texts()) == 2
    plt.close("all")


def test_kept_by_random_blocks_against_enumerating_every_draw():
    """Training through k random blocks of n keeps a path of length j when all its branches are drawn: the expected
    kept share of sum_j ||G_j||, against averaging over every k-subset of 6 blocks and every path of each length."""
    n, k = 6, 3
    norms = np.array([0.5, 2.0, 1.0, 0.4, 0.1, 0.05, 0.01])
    draws = list(itertools.combinations(range(n), k))
    kept = 0.0
    for drawn in draws:
        for j in range(n + 1):
            paths = list(itertools.combinations(range(n), j))
            share = sum(set(p) <= set(drawn) for p in paths) / len(paths)   # paths of length j that survive
            kept += share * norms[j]
    expect = kept / len(draws) / norms.sum()
    assert EC.kept_by_random_blocks(norms, k) == pytest.approx(expect, rel=1e-12)
    assert EC.kept_by_random_blocks(norms, n) == pytest.approx(1.0)
    assert EC.kept_by_random_blocks([1.0, 0, 0, 0, 0, 0, 0], 1) == pytest.approx(1.0)   # length 0 always survives


def test_stratified_two_pools_the_sets_that_keep_both_blocks():
    k_accs = [[[0.9], [0.8, 0.1], [0.7, 0.2]], [[0.95], [0.6, 0.0], [0.5, 0.3]]]          # 2 seeds, ks 0, 1, 2
    k_sets = [[[[]], [[3], [0]], [[2, 3], [1, 2]]], [[[]], [[4], [1]], [[3, 4], [0, 5]]]]
    means, counts = EC.stratified_two(k_accs, k_sets)
    assert counts == [2, 2, 2] and means == pytest.approx([0.925, 0.7, 0.6])
    means, counts = EC.stratified_two(k_accs, k_sets, blocks=(0, 1, 2, 3, 4, 5))
    assert counts == [2, 0, 0] and np.isnan(means[1])


def _grads_by_autograd(net, X, y, detach_branches=False):
    handles = [b.branch.register_forward_hook(lambda m, a, out: out.detach()) for b in net.blocks] \
        if detach_branches else []
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(X), y).backward()
    for h in handles:
        h.remove()
    return {id(p): (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for p in net.parameters()}


def test_length_truncation_is_autograd_at_full_length_and_the_skip_path_at_zero(digits):
    """K >= n: the surrogate's gradient is autograd's (every path); K = 0: only the all-skip path, which is the
    gradient of the same forward pass with every branch output detached (a second autograd route); the loss value
    is the real loss either way, and the hooks record nothing in eval mode."""
    from skipnet.probes.path_spectrum import LengthTruncation
    net = E.ENSEMBLE_MODEL.with_(depth=14).build(seed=0).train()
    X, y = digits.X_train[:32], digits.y_train[:32]
    for K, detach in ((6, False), (9, False), (0, True)):
        ref = _grads_by_autograd(net, X, y, detach_branches=detach)
        cut = LengthTruncation(net, K)
        net.zero_grad(set_to_none=True)
        logits = net(X)
        loss, _ = cut.loss_fn(logits, y)
        assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
        loss.backward()
        cut.remove()
        for p in net.parameters():
            got = p.grad if p.grad is not None else torch.zeros_like(p)
            assert torch.allclose(got, ref[id(p)], atol=1e-6, rtol=1e-4), (K, p.shape)
    cut = LengthTruncation(net, 2, norm_match=True)
    net.zero_grad(set_to_none=True)
    cut.loss_fn(net(X), y)[0].backward()
    cut.remove()
    matched = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    full = _grads_by_autograd(net, X, y)
    norm = lambda gs: float(torch.sqrt(sum((g * g).sum() for g in gs)))
    assert norm(matched) == pytest.approx(norm(full.values()), rel=1e-4) and cut.scale[0] > 1


def test_survival_probabilities_are_those_the_model_builds_and_the_predicted_length_matches_the_prediction():
    from skipnet.branch import StochasticDepth
    from skipnet.experiments.ensemble import ENSEMBLE_MODEL
    net = ENSEMBLE_MODEL.with_(depth=20, drop_prob=0.5).build(seed=0)
    built = [m.survival for m in net.modules() if isinstance(m, StochasticDepth)]
    assert built == pytest.approx(list(EC.survival(9, 0.5)))
    gains = [0.3, 0.1, 0.7, 0.05]
    c = gains_prediction(gains)
    assert EC.predicted_mean_length(gains) == pytest.approx(float((np.arange(len(c)) * c).sum()))
    scale = [1.0, 0.5, 0.5, 0.25]
    assert EC.predicted_mean_length(gains, scale) == pytest.approx(EC.predicted_mean_length(np.divide(gains, scale)))
