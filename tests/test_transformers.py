"""Tests of the chapter *Residual connections in Transformers (and the RNN question)*: the model and
task against independent references, the probes' algebra, and the chapter's claims over 3 seeds."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skipnet.experiments.transformers import (DEFAULT_MODEL, DEFAULT_TRAIN, RANK_VARIANTS, SORT, WARMUP_DEPTH,
                                              WARMUP_LR, WARMUP_STEPS, grad_norms_at_init, path_profile,
                                              rank_collapse, rank_variant_config, train_sort, variant_config)
from skipnet.probes.rank import path_terms, token_residual_ratio
from skipnet.train import TrainConfig
from skipnet.transformer import SortTask, TransformerConfig, build_transformer

DATA = Path(__file__).resolve().parents[1] / "book" / "data"
SEEDS = (0, 1, 2)


# -- the model --------------------------------------------------------------------------------------
def test_shapes_and_stream():
    net = build_transformer(depth=3, seed=0)
    X, y = SORT.sample(5, torch.Generator().manual_seed(0))
    assert net(X).shape == (5, 12, 16)
    states = net.blocks_forward(net.embed(X))
    assert len(states) == 4 and all(s.shape == (5, 12, 64) for s in states)
    names = [n for n, _ in net.main_layers()]
    assert names[0] == "tok" and names[-1] == "head" and len(names) == 2 + 4 * 3


def test_plain_and_residual_share_every_parameter():
    a = build_transformer(depth=4, residual=True, init="standard", seed=3)
    b = build_transformer(depth=4, residual=False, init="standard", seed=3)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_depth_aware_init_scales_the_writes():
    cfg = DEFAULT_MODEL.with_(depth=8)
    assert cfg.branch_scale == pytest.approx(1 / 4)
    assert cfg.with_(residual=False).branch_scale == 1.0 and cfg.with_(init="standard").branch_scale == 1.0
    net = build_transformer(cfg, seed=0)
    std = net.blocks[0].mlp.fc2.weight.std().item()
    assert std == pytest.approx(0.25 / math.sqrt(256), rel=0.05)


def test_zeroed_writes_make_a_prenorm_block_the_identity():
    net = build_transformer(depth=3, norm="pre", seed=0)
    with torch.no_grad():
        for b in net.blocks:
            b.attn.proj.weight.zero_()
            b.mlp.fc2.weight.zero_()
            b.mlp.fc2.bias.zero_()
    h = torch.randn(2, 12, 64)
    assert torch.equal(net.blocks_forward(h)[-1], h)


def test_attention_matches_torch_reference():
    net = build_transformer(depth=1, seed=0)
    attn = net.blocks[0].attn
    x = torch.randn(3, 12, 64)
    q, k, v = (t.view(3, 12, 4, 16).transpose(1, 2) for t in attn.qkv(x).split(64, dim=2))
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, 12, 64) @ attn.proj.weight.T
    assert torch.allclose(attn(x), ref, atol=1e-5)
    attn.keep_pattern = True
    out = attn(x)                                        # with the pattern frozen the sublayer is linear in x
    assert torch.allclose(attn.with_pattern(x, attn.pattern), out, atol=1e-5)


def test_post_ln_block_is_ln_of_the_sum():
    net = build_transformer(depth=1, norm="post", seed=0)
    b, x = net.blocks[0], torch.randn(2, 12, 64)
    h = F.layer_norm(x + b.attn(x), (64,))
    assert torch.allclose(b(x), F.layer_norm(h + b.mlp(h), (64,)), atol=1e-5)


def test_config_errors_name_the_field():
    for kwargs, name in [({"norm": "batch"}, "norm"), ({"depth": 0}, "depth"), ({"heads": 5}, "heads"),
                         ({"init": "xavier"}, "init")]:
        with pytest.raises(ValueError, match=name):
            TransformerConfig(**kwargs)
    with pytest.raises(ValueError, match="variant"):
        variant_config("highway", 4)


# -- the task ---------------------------------------------------------------------------------------
def test_sort_task_sorts_and_is_seeded():
    X, y = SORT.sample(64, torch.Generator().manual_seed(1))
    assert torch.equal(y, X.sort(dim=1).values) and (y[:, 1:] >= y[:, :-1]).all()
    X2, _ = SORT.sample(64, torch.Generator().manual_seed(1))
    assert torch.equal(X, X2)


def test_position_only_loss_matches_sampling():
    task = SortTask(seq_len=6, vocab=5)
    _, y = task.sample(200_000, torch.Generator().manual_seed(0))
    freq = torch.stack([torch.bincount(y[:, t], minlength=5) for t in range(6)]).double() / len(y)   # (T, V)
    empirical = -(freq * freq.clamp_min(1e-12).log()).sum(1).mean().item()
    assert empirical == pytest.approx(task.position_only_loss(), abs=2e-3)
    assert SORT.position_only_loss() < SORT.chance_loss


def test_same_seed_same_run_bit_for_bit():
    cfg = DEFAULT_TRAIN.with_(steps=4, warmup_steps=2)
    a = train_sort(DEFAULT_MODEL.with_(depth=1), cfg, seed=5)
    b = train_sort(DEFAULT_MODEL.with_(depth=1), cfg, seed=5)
    assert a.history.loss == b.history.loss


# -- probes -----------------------------------------------------------------------------------------
def test_token_residual_ratio_reference_values():
    same = torch.randn(1, 1, 8).expand(2, 5, 8)
    assert torch.allclose(token_residual_ratio(same), torch.zeros(2, dtype=torch.float64))
    X = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])          # mean 0: the whole matrix is residual
    assert token_residual_ratio(X).item() == pytest.approx(1.0)
    X = torch.tensor([[[1.0, 1.0], [1.0, -1.0]]])          # mean (1, 0): residual (0, +-1)
    assert token_residual_ratio(X).item() == pytest.approx(math.sqrt(2) / 2)


def test_path_terms_sum_to_the_output():
    net = build_transformer(TransformerConfig(depth=5, residual=True, norm="none", mlp=False, seq_len=16), seed=0)
    h = torch.randn(4, 16, 64)
    terms, out = path_terms(net, h)
    assert len(terms) == 6 and torch.equal(terms[0], h)
    assert torch.allclose(sum(terms), out, atol=1e-4 * out.abs().max().item())
    with pytest.raises(ValueError, match="mlp"):
        path_terms(build_transformer(depth=2, seed=0), h[:, :12])


def test_long_paths_collapse_the_short_path_does_not():
    p = path_profile(depth=6, seed=0)
    assert p.max_error < 1e-5 and p.n_paths == [1, 6, 15, 20, 15, 6, 1]
    assert p.ratio[0] > 0.9 and p.ratio[-1] < 0.01
    assert all(np.diff(p.ratio) < 0)                        # each extra attention layer makes tokens more alike


# -- claims: rank collapse at initialization (Dong et al. 2021) -------------------------------------
def test_without_skips_tokens_collapse_within_four_layers():
    for skip, ln, mlp in RANK_VARIANTS:
        if skip:
            continue
        c = rank_collapse(rank_variant_config(8, skip, ln, mlp), seeds=SEEDS)
        assert c.first_below(1e-3) is not None and c.first_below(1e-3) <= 4, (ln, mlp, c.ratios[:, :5])


def test_with_skips_tokens_stay_distinct_at_depth_16():
    for skip, ln, mlp in RANK_VARIANTS:
        if not skip:
            continue
        c = rank_collapse(rank_variant_config(16, skip, ln, mlp), seeds=SEEDS)
        assert c.ratios[:, -1].min() > 0.3, (ln, mlp, c.ratios[:, -1])


# -- claims: gradient norms at initialization (Xiong et al. 2020) -----------------------------------
@pytest.mark.parametrize("init,factor", [("depth", 1.2), ("standard", 2.0)])
def test_post_ln_gradients_near_the_output_exceed_pre_ln(init, factor):
    post = grad_norms_at_init(DEFAULT_MODEL.with_(depth=8, norm="post", init=init), seeds=SEEDS)
    pre = grad_norms_at_init(DEFAULT_MODEL.with_(depth=8, norm="pre", init=init), seeds=SEEDS)
    assert (post.norms[:, -1] > factor * pre.norms[:, -1]).all()


# -- claims: training on the sorting task -----------------------------------------------------------
def _train_until(model: TransformerConfig, train: TrainConfig, seed: int, target: float):
    """Train, stopping early once the mean batch loss of the last 10 steps is below ``target``."""
    def reached(trainer):
        loss = trainer.history.loss
        return not (len(loss) >= 10 and sum(loss[-10:]) / 10 < target)
    return train_sort(model, train, seed=seed, callback=reached)


@pytest.mark.slow
def test_no_residual_six_blocks_stays_near_chance():
    for s in SEEDS:
        run = train_sort(variant_config("no residual", 6), DEFAULT_TRAIN, seed=s)
        assert run.history.status == "finished" and run.final_loss > 0.8 * SORT.chance_loss, (s, run.final_loss)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["post-LN", "pre-LN"])
def test_residual_six_blocks_reach_a_low_loss(variant):
    for s in SEEDS:
        run = _train_until(variant_config(variant, 6), DEFAULT_TRAIN, s, target=0.3)
        assert np.mean(run.history.loss[-10:]) < 0.3, (variant, s, run.history.loss[-10:])


@pytest.mark.slow
def test_post_ln_at_high_lr_needs_warmup():
    model = DEFAULT_MODEL.with_(depth=WARMUP_DEPTH, norm="post")
    cold = [train_sort(model, DEFAULT_TRAIN.with_(lr=WARMUP_LR, warmup_steps=0), seed=s) for s in SEEDS]
    assert sum(r.final_loss > 0.8 * SORT.chance_loss for r in cold) >= 2, [r.final_loss for r in cold]
    for s in SEEDS:
        warm = _train_until(model, DEFAULT_TRAIN.with_(lr=WARMUP_LR, warmup_steps=WARMUP_STEPS), s, target=0.3)
        assert np.mean(warm.history.loss[-10:]) < 0.3, (s, warm.history.loss[-10:])


# -- the stored sweeps say what the chapter says ----------------------------------------------------
def _rows(name):
    path = DATA / f"transformers_{name}.json"
    if not path.exists():
        pytest.skip(f"{path.name} not computed yet (scripts/precompute_transformers.py)")
    return json.loads(path.read_text())["data"]


def test_stored_depth_sweep():
    rows = _rows("depth")
    pick = lambda label, depth: [r for r in rows if r["label"] == label and r["depth"] == depth]
    assert len(pick("no residual", 6)) >= 3
    assert all(not r["stuck"] for r in pick("no residual", 2))
    assert all(r["stuck"] for r in pick("no residual", 6) + pick("no residual", 8))
    for label in ("post-LN", "pre-LN"):
        assert all(not r["stuck"] for r in rows if r["label"] == label)       # "trains at every depth we tried"


def test_stored_warmup_sweep():
    rows = _rows("warmup")
    cond = lambda norm, lr, warm: [r for r in rows if (r["norm"], r["lr"], r["warmup_steps"]) == (norm, lr, warm)]
    cold = cond("post", WARMUP_LR, 0)
    assert len(cold) >= 3 and sum(r["stuck"] for r in cold) > len(cold) / 2
    for norm, warm in (("post", WARMUP_STEPS), ("pre", 0), ("pre", WARMUP_STEPS)):
        assert all(not r["stuck"] for r in cond(norm, WARMUP_LR, warm)), (norm, warm)
    low_lr = cond("post", 3e-3, 0)                          # "a high-learning-rate effect"
    assert len(low_lr) >= 3 and sum(r["stuck"] for r in low_lr) <= 1


# -- claims: the RNN question ------------------------------------------------------------------------
def test_lstm_cell_matches_torch_lstm_cell():
    from skipnet.recurrent import build_recurrent
    net = build_recurrent(cell="lstm", width=16, vocab=5, seed=0)
    ref = torch.nn.LSTMCell(16, 16)
    with torch.no_grad():
        ref.weight_ih.copy_(net.U.weight)
        ref.bias_ih.copy_(net.U.bias)
        ref.weight_hh.copy_(net.W.weight)
        ref.bias_hh.zero_()
    X = torch.randint(0, 5, (3, 7), generator=torch.Generator().manual_seed(0))
    h = c = torch.zeros(3, 16)
    for t in range(7):
        h, c = ref(net.embed(X[:, t]), (h, c))
    assert torch.allclose(net.run(X)[0], h, atol=1e-5)


def test_gradient_through_time_tanh_vanishes_additive_cell_does_not():
    from skipnet.experiments.transformers_rnn import RNN_CELLS, gradient_through_time
    g = {name: gradient_through_time(cell, length=100, seeds=SEEDS).first_over_last for name, cell in RNN_CELLS.items()}
    assert (g["tanh RNN"] < 1e-12).all()
    assert (g["LSTM, no forget gate"] > 0.5).all()
    assert (g["LSTM (forget gate)"] < 1e-3).all() and (g["LSTM (forget gate)"] > 1e3 * g["tanh RNN"]).all()


@pytest.mark.slow
def test_recall_ten_steps_tanh_fails_additive_lstm_learns():
    from skipnet.experiments.transformers_rnn import RNN_CELLS, train_recall

    def solved(trainer):
        return not (len(trainer.history.acc) >= 10 and min(trainer.history.acc[-10:]) == 1.0)
    for s in SEEDS:
        tanh = train_recall(RNN_CELLS["tanh RNN"], 10, seed=s)
        assert tanh.final_acc < 0.4, (s, tanh.final_acc)
        lstm = train_recall(RNN_CELLS["LSTM, no forget gate"], 10, seed=s, callback=solved)
        assert min(lstm.history.acc[-10:]) > 0.95, (s, lstm.history.acc[-10:])


def test_stored_recall_sweep():
    rows = _rows("recall")
    acc = lambda label, n: [r["final_acc"] for r in rows if r["label"] == label and r["length"] == n]
    lengths = sorted({r["length"] for r in rows})
    assert min(acc("tanh RNN", lengths[0])) > 0.9 and all(max(acc("tanh RNN", n)) < 0.4 for n in lengths[1:])
    assert all(min(acc("LSTM, no forget gate", n)) > 0.95 for n in lengths)
    assert np.mean(acc("LSTM (forget gate)", lengths[-1])) < np.mean(acc("LSTM, no forget gate", lengths[-1]))
