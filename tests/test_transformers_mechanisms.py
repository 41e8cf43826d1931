"""Tests of the mechanisms the Transformer chapter adds on top of the model: the Admin shortcut weights, the RAdam option,
the pre-estimated Adam control, RAdam's rectifier, causal linear attention as an RNN, the token-uniform floor, the
float64 rank-collapse increments, the collapse measures of a trained stream, the logit lens / direct logit attribution,
Liu's amplification and the recall race's bookkeeping; each against an independent reference or an invariant.

Chapter: *Residual connections in Transformers (and the RNN question)*.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skipnet.experiments.transformers import (SORT_MODEL, DEFAULT_TRAIN, FLOAT64_FLOOR, RANK_VARIANTS, SORT,
                                              collapse_row, final_collapse, loglog_increments, rank_collapse,
                                              rank_variant_config, train_sort, variant_config)
from skipnet.experiments.transformers_rnn import RECALL_NETS, recall_summary, solve_recall, solve_row, steps_to_solve
from skipnet.experiments.transformers_warmup import (TRIAGE, PreEstimatedAdam, amplification, loglog_slope,
                                                     radam_rectifier, train_triage, triage_row)
from skipnet.linear_attention import DECAYS, LinearAttentionConfig
from skipnet.models import n_params
from skipnet.probes.logit_lens import read_stream, sublayer_writes
from skipnet.recurrent import RecallTask
from skipnet.runtime import generator
from skipnet.train import TrainConfig, make_optimizer
from skipnet.transformer import AdminPostLNBlock, SortTask, TransformerConfig, admin_profile

SEEDS = (0, 1, 2)


# -- Admin -------------------------------------------------------------------------------------------------------------
def test_admin_is_post_ln_with_skips_only():
    for fields in ({"placement": "pre"}, {"residual": False}, {"norm": "none"}):
        with pytest.raises(ValueError, match="init='admin'"):
            TransformerConfig(init="admin", **{"placement": "post", **fields})
    cfg = TransformerConfig(n_blocks=3, placement="post", init="admin")
    assert cfg.branch_scale == 1.0 and "Admin" in cfg.label
    assert all(type(b) is AdminPostLNBlock for b in cfg.build(seed=0).blocks)


def test_admin_block_is_ln_of_omega_x_plus_f():
    net = TransformerConfig(n_blocks=1, placement="post", init="admin").build(seed=0)
    b, x = net.blocks[0], torch.randn(2, 12, 64)
    h = F.layer_norm(b.omega_1 * x + b.attn(x), (64,))
    assert torch.allclose(b(x), F.layer_norm(b.omega_2 * h + b.mlp(h), (64,)), atol=1e-5)


def test_admin_omegas_are_the_profiled_variance_sums():
    """Written out independently: omega_i = sqrt(Var[embedding] + sum_{j<i} Var[f_j]) in the stack with omega = 1."""
    cfg = TransformerConfig(n_blocks=3, placement="post", init="admin")
    net = cfg.build(seed=4)
    plain = cfg.with_(init="standard").build(seed=4)             # the same weights, the plain post-LN stack
    X = torch.randint(0, cfg.vocab, (256, cfg.seq_len), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = plain.embed(X)
        total, expected = h.var().item(), []
        for blk in plain.blocks:
            for f, ln in ((blk.attn, blk.ln_1), (blk.mlp, blk.ln_2)):
                expected.append(math.sqrt(total))
                w = f(h)
                total += w.var().item()
                h = ln(h + w)
    got = [o.detach()[0].item() for blk in net.blocks for o in (blk.omega_1, blk.omega_2)]
    assert got == pytest.approx(expected, rel=1e-5)
    assert all(np.diff(got) > 0) and got[0] == pytest.approx(math.sqrt(2), rel=0.1)   # tok + pos: variance about 2
    assert admin_profile(net) == pytest.approx(expected, rel=1e-5)                  # profiling is repeatable


# -- optimizers ---------------------------------------------------------------------------------------------------------
def test_radam_option_builds_torch_radam_and_trains():
    opt = make_optimizer(TrainConfig(optimizer="radam", lr=1e-2), [torch.nn.Parameter(torch.zeros(3))])
    assert isinstance(opt, torch.optim.RAdam)
    run = train_sort(SORT_MODEL.with_(n_blocks=1), DEFAULT_TRAIN.with_(optimizer="radam", steps=3, warmup_steps=0))
    assert run.status == "finished"
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lamb")


def test_radam_rectifier_matches_torch_radam():
    """With a constant gradient of 1, torch's RAdam moves a weight by lr * r_t (lr for the momentum-only steps)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.RAdam([p], lr=1.0, betas=(0.9, 0.98), eps=0.0)
    prev = 0.0
    for t in range(1, 60):
        p.grad = torch.ones(1)
        opt.step()
        step = prev - p.item()
        prev = p.item()
        r = radam_rectifier(t, 0.98)
        assert step == pytest.approx(r if r > 0 else 1.0, rel=1e-4), t
    assert radam_rectifier(5) == 0 and 0 < radam_rectifier(10) < radam_rectifier(100) < 1


def test_pre_estimated_adam_step_uses_the_given_second_moment():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = PreEstimatedAdam([p], lr=0.1, betas=(0.9, 0.98), eps=0.0)
    opt.set_second_moment([torch.tensor([4.0, 0.25])])
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()
    v = 0.98 * torch.tensor([4.0, 0.25]) + 0.02                      # no bias correction on v; m-hat is the gradient
    assert torch.allclose(p.detach(), -0.1 / v.sqrt(), atol=1e-6)


def test_triage_conditions_are_what_they_say():
    for name, (model, train, pre_adam) in TRIAGE.items():
        assert model.n_blocks == 8 and train.lr in (1e-2, 0.1, 3e-3)
        assert pre_adam == ("pre-estimated" in name)
        assert (model.init == "admin") == ("Admin" in name)
        assert (train.optimizer == "sgd") == name.startswith("SGD") and (train.optimizer == "radam") == (name == "RAdam")
        assert (train.warmup_steps > 0) == ("warm-up" in name)
    with pytest.raises(ValueError, match="condition"):
        train_triage("Lion")


# -- causal linear attention --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decay", DECAYS)
def test_linear_attention_closed_form_is_the_recurrence(decay):
    net = LinearAttentionConfig(decay=decay, gate_bias=0.5).build(seed=0)
    X = torch.randint(0, 8, (3, 11), generator=torch.Generator().manual_seed(1))
    read, states = net.run(X)
    assert len(states) == 11 and states[-1].shape == (3, 64, 64)
    assert torch.allclose(net(X), net.head(net.ln(read)), atol=1e-5)


def test_linear_attention_without_decay_adds_outer_products():
    net = LinearAttentionConfig(decay="none").build(seed=0)
    X = torch.randint(0, 8, (2, 6), generator=torch.Generator().manual_seed(2))
    q, k, v = net.qkv(net.inputs(X)).chunk(3, dim=-1)
    _, states = net.run(X)
    S = sum(v[:, t, :, None] * k[:, t, None, :] for t in range(6))
    assert torch.allclose(states[-1], S, atol=1e-5)
    assert torch.allclose(states[3] - states[2], v[:, 3, :, None] * k[:, 3, None, :], atol=1e-5)   # S_t - S_{t-1}


def test_linear_attention_gate_starts_at_sigmoid_of_its_bias_and_positions_order_the_tokens():
    net = LinearAttentionConfig(decay="gate", gate_bias=1.0).build(seed=0)
    x = net.inputs(torch.randint(0, 8, (2, 5)))
    assert torch.allclose(net.log_decay(x).exp(), torch.full((2, 5), 1 / (1 + math.exp(-1))))
    bag = LinearAttentionConfig(positions=False).build(seed=0)          # without positions: a bag of tokens
    X = torch.tensor([[1, 2, 3, 4, 5]])
    assert torch.allclose(bag(X), bag(torch.tensor([[4, 1, 3, 2, 5]])), atol=1e-5)
    assert not torch.allclose(net(X), net(torch.tensor([[4, 1, 3, 2, 5]])), atol=1e-3)
    with pytest.raises(ValueError, match="decay"):
        LinearAttentionConfig(decay="exp")
    with pytest.raises(ValueError, match="seq_len"):
        bag(torch.zeros(1, 200, dtype=torch.long))


def test_recall_nets_are_parameter_matched():
    lstm, tanh128 = n_params(RECALL_NETS["LSTM (forget gate)"]), n_params(RECALL_NETS["tanh RNN, width 128"])
    assert abs(tanh128 - lstm) / lstm < 0.05 and n_params(RECALL_NETS["tanh RNN"]) < lstm / 3


def test_steps_to_solve_and_the_race_summary():
    assert steps_to_solve([0.0] * 10 + [1.0] * 30, threshold=0.95, window=20) == 29   # mean of steps 10..29 = 0.95
    assert steps_to_solve([0.5] * 100) is None and steps_to_solve([1.0] * 5) is None
    rows = [{"label": "a", "seq_len": 5, "lr": lr, "seed": s, "steps_to_solve": st, "n_params": 7}
            for lr, sts in ((1e-3, (100, None, 300)), (3e-3, (50, 60, None))) for s, st in enumerate(sts)]
    (best,) = recall_summary(rows, budget=1000)
    assert best["lr"] == 3e-3 and best["solved"] == 2 and best["median_steps"] == 60 and best["steps"] == [50, 60, None]
    rows = [dict(r, steps_to_solve=None) for r in rows]
    assert recall_summary(rows)[0]["median_steps"] is None


def test_solve_recall_stops_once_solved_and_records_it():
    run = solve_recall(RECALL_NETS["linear attention"], 5, seed=0, budget=400)
    row = solve_row(run)
    assert row["solved"] and row["steps_to_solve"] <= row["steps_run"] < 400 and row["status"].startswith("stopped")
    assert row["eval_acc"] > 0.95 and row["n_params"] == n_params(RECALL_NETS["linear attention"])


# -- the sorting task's floor, the collapse measures --------------------------------------------------------------------
def test_token_uniform_floor_against_exact_values():
    assert SortTask(seq_len=2, vocab=2).token_uniform_loss(n=100_000) == pytest.approx(math.log(2) / 2, abs=5e-3)
    floor = SORT.token_uniform_loss()
    assert floor == pytest.approx(2.064, abs=0.01)
    assert SORT.position_only_loss() < floor < SORT.chance_loss


def test_loglog_increments_of_reference_curves():
    class Curves:                                     # r_L = r0^(3^L): increments log 3; r_L = a^L: log((L+1)/L)
        def __init__(self, rows):
            self.ratios = np.array(rows)
    cubic = loglog_increments(Curves([[0.9 ** (3 ** L) for L in range(5)]]))[0]
    assert np.allclose(cubic, math.log(3))
    expo = loglog_increments(Curves([[0.5 ** L if L else 1.0 for L in range(8)]]))[0]
    assert np.allclose(expo, np.log(np.arange(2, 8) / np.arange(1, 7)))


def test_float64_collapse_without_skips_is_faster_than_doubling():
    """The chapter's doubly exponential check: every increment of log(-log r) above log 2, at least two per seed."""
    for skip, ln, mlp in RANK_VARIANTS:
        if skip:
            continue
        inc = loglog_increments(rank_collapse(rank_variant_config(8, skip, ln, mlp), seeds=SEEDS, float64=True))
        assert all(len(d) >= 2 and (d > math.log(2)).all() for d in inc), (ln, mlp, inc)


def test_final_collapse_measures():
    net = variant_config("pre-LN", 2).build(seed=0)
    c = final_collapse(net)
    assert len(c["r_blocks"]) == 3 and 0 < c["r_final"] <= 1 and c["position_spread"] > 0
    with torch.no_grad():
        net.head.weight.zero_()                       # the same logits at every position: spread 0
    assert final_collapse(net)["position_spread"] == pytest.approx(0, abs=1e-12)
    run = train_sort(variant_config("no residual", 2), DEFAULT_TRAIN.with_(steps=2, warmup_steps=1))
    row = collapse_row(run)
    assert row["steps"] == 2 and {"r_final", "r_blocks", "position_spread", "stuck"} <= set(row)


# -- inside the stream ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("placement", ["pre", "post"])
def test_sublayer_walk_is_the_forward_pass(placement):
    net = variant_config(f"{placement}-LN", 3).build(seed=1)
    X, _ = SORT.sample(8, generator(0))
    names, writes, states, patterns = sublayer_writes(net, X)
    assert names[:3] == ["embed", "attn 1", "mlp 1"] and len(states) == 7 and len(patterns) == 3
    assert torch.allclose(states[-1], net.blocks_forward(net.embed(X))[-1], atol=1e-5)
    if placement == "pre":
        assert torch.allclose(sum(writes), states[-1], atol=1e-4)       # the pre-LN stream is the sum of its writes
    with pytest.raises(ValueError, match="residual"):
        sublayer_writes(variant_config("no residual", 2).build(seed=0), X)


def test_direct_logit_attribution_adds_up_and_the_lens_ends_at_the_output():
    net = variant_config("pre-LN", 3).build(seed=2)
    X, y = SORT.sample(64, generator(1))
    r = read_stream(net, X, y)
    assert r.dla_error < 1e-4 and len(r.dla) == len(r.names) == 7
    assert r.lens_loss[-1] == pytest.approx(r.final_loss, rel=1e-6)
    assert read_stream(variant_config("post-LN", 2).build(seed=0), X, y).dla is None


def test_uniform_attention_puts_the_baseline_mass_on_the_answer():
    net = variant_config("pre-LN", 2).build(seed=0)
    with torch.no_grad():
        for b in net.blocks:
            b.attn.qkv.weight[:128].zero_()           # q = k = 0: every pattern uniform
    X, y = SORT.sample(64, generator(3))
    r = read_stream(net, X, y)
    assert np.allclose(r.target_mass, r.uniform_target_mass, atol=1e-9)
    assert np.allclose(r.maps, 1 / 12, atol=1e-9) and np.allclose(r.entropy, math.log(12))


# -- amplification ------------------------------------------------------------------------------------------------------
def test_amplification_is_zero_for_no_change_and_larger_for_post_ln():
    assert amplification(SORT_MODEL.with_(n_blocks=2), eps=0.0) == pytest.approx(0, abs=1e-7)
    post = np.mean([amplification(SORT_MODEL.with_(n_blocks=8, placement="post", init="standard"), s) for s in SEEDS])
    pre = np.mean([amplification(SORT_MODEL.with_(n_blocks=8, placement="pre", init="standard"), s) for s in SEEDS])
    assert post > 1.3 * pre > 0
    with pytest.raises(ValueError, match="mode"):
        amplification(SORT_MODEL, mode="sgd")


def test_loglog_slope_recovers_a_power_law():
    rows = [{"n_blocks": L, "seed": s, "v": 3.0 * L ** 0.5 * (1 + 0.01 * s)} for L in (2, 4, 8, 16) for s in range(3)]
    assert loglog_slope(rows, "v") == pytest.approx(0.5, abs=1e-6)


# -- a trained network, live (slow): the triage's RAdam and SGD rows, another draw -----------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["RAdam", "SGD, lr 0.1"])
def test_post_ln_trains_without_warmup_when_the_first_steps_are_small(name):
    model, train, _ = TRIAGE[name]
    for s in SEEDS:
        def progress(fraction, text, history):
            return not (len(history.loss) >= 10 and np.mean(history.loss[-10:]) < 0.5)
        run = train_sort(model, train, seed=s, progress=progress)
        assert np.mean(run.history.loss[-10:]) < 0.5, (name, s, run.history.loss[-10:])
        assert final_collapse(run.net)["r_final"] > 0.5


def test_train_triage_runs_a_condition_and_records_it(monkeypatch):
    import skipnet.experiments.transformers_warmup as W
    tiny = (SORT_MODEL.with_(n_blocks=1, placement="post"), DEFAULT_TRAIN.with_(lr=1e-2, steps=3, warmup_steps=0))
    monkeypatch.setitem(W.TRIAGE, "tiny, pre-estimated", (*tiny, True))
    monkeypatch.setitem(W.TRIAGE, "tiny", (*tiny, False))
    a, b = train_triage("tiny, pre-estimated", seed=0), train_triage("tiny", seed=0)
    assert a.status == b.status == "finished" and a.history.loss[0] == b.history.loss[0]   # same first batch
    assert a.history.loss[1:] != b.history.loss[1:]                                        # another optimizer
    row = triage_row(a)
    assert row["condition"] == "tiny, pre-estimated" and row["optimizer"] == "adamw"
    assert {"r_final", "r_blocks", "steps_to_half_position_only", "max_early_loss", "stuck"} <= set(row)


@pytest.mark.parametrize("cell,forget_gate", [("tanh", True), ("lstm", True), ("lstm", False)])
def test_recurrent_forward_is_the_step_by_step_recurrence(cell, forget_gate):
    """forward (torch's fused kernel where one exists) and run (the loop the chapter describes): same output, same
    gradients."""
    from skipnet.recurrent import RecurrentConfig
    net = RecurrentConfig(cell=cell, forget_gate=forget_gate, width=16, vocab=5).build(seed=0)
    X = torch.randint(0, 5, (4, 9), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (4,), generator=torch.Generator().manual_seed(1))
    fast = net(X)
    slow = net.head(net.run(X)[0])
    assert torch.allclose(fast, slow, atol=1e-5)
    g_fast = torch.autograd.grad(F.cross_entropy(fast, y), list(net.parameters()))
    g_slow = torch.autograd.grad(F.cross_entropy(slow, y), list(net.parameters()))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_fast, g_slow))
