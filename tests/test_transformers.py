"""Tests of the chapter *Residual connections in Transformers (and the RNN question)*: the model and
task against independent references, the probes' algebra, and the chapter's claims over 3 seeds.

The slow tests train live and check the claims the chapter draws (with wide margins), never a stored
number: the sweeps in book/data were made on another CPU, where a seed is in effect another seed. The
tests of the stored sweeps check the stored DATA (and that it is in the format and configuration the
current code writes); they fail, rather than skip, when a file is missing.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import skipnet
from skipnet.experiments.transformers import (SORT_MODEL, DEFAULT_TRAIN, RANK_VARIANTS, SORT, VARIANTS,
                                              WARMUP_BLOCKS, WARMUP_LR, WARMUP_STEPS, grad_norms_at_init,
                                              path_profile, rank_collapse, rank_variant_config, sort_row, stuck,
                                              train_sort, variant_config)
from skipnet.experiments.transformers import (NORESID_BLOCKS, NORESID_LONG, NORESID_LRS, collapse_row,
                                              final_collapse)
from skipnet.experiments.transformers_rnn import (RECALL_BUDGET, RECALL_NETS, RNN_CELLS, RNN_TRAIN,
                                                  gradient_through_time, recall_summary, solve_recall, solve_row)
from skipnet.experiments.transformers_warmup import TRIAGE, loglog_slope, triage_row, triage_summary
from skipnet.probes.logit_lens import read_stream
from skipnet.runtime import generator
from skipnet.store import load_result, save_result
from skipnet.models import build_model
from skipnet.probes.rank import path_terms, token_residual_ratio
from skipnet.recurrent import RecallTask, RecurrentConfig
from skipnet.train import TrainConfig
from skipnet.transformer import (PlainPostLNBlock, PlainPreLNBlock, PostLNBlock, PreLNBlock, SortTask,
                                 TransformerConfig)


DATA = Path(__file__).resolve().parents[1] / "book" / "data"
SEEDS = (0, 1, 2)
FLOOR = SORT.token_uniform_loss()


def _net(seed=0, **fields):
    return SORT_MODEL.with_(**fields).build(seed=seed)


# -- the model --------------------------------------------------------------------------------------
def test_shapes_and_stream():
    net = _net(n_blocks=3)
    X, y = SORT.sample(5, torch.Generator().manual_seed(0))
    assert net(X).shape == (5, 12, 16)
    states = net.blocks_forward(net.embed(X))
    assert len(states) == 4 and all(s.shape == (5, 12, 64) for s in states)
    assert torch.equal(net.readout(states[-1]), net(X))
    names = [n for n, _ in net.main_layers()]
    assert names[0] == "tok" and names[-1] == "head" and len(names) == 2 + 4 * 3


def test_placement_and_skip_pick_the_block():
    for (residual, placement), cls in {(True, "pre"): PreLNBlock, (True, "post"): PostLNBlock,
                                       (False, "pre"): PlainPreLNBlock, (False, "post"): PlainPostLNBlock}.items():
        net = _net(n_blocks=2, residual=residual, placement=placement)
        assert all(type(b) is cls for b in net.blocks), (residual, placement)
        assert isinstance(net.ln_f, torch.nn.LayerNorm) == (placement == "pre")
    assert build_model(SORT_MODEL, seed=0).cfg == SORT_MODEL


def test_plain_and_residual_share_every_parameter():
    a = _net(3, n_blocks=4, residual=True, init="standard")
    b = _net(3, n_blocks=4, residual=False, init="standard")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_depth_aware_init_scales_the_writes():
    cfg = SORT_MODEL.with_(n_blocks=8)
    assert cfg.branch_scale == pytest.approx(1 / 4)
    assert cfg.with_(residual=False).branch_scale == 1.0 and cfg.with_(init="standard").branch_scale == 1.0
    net = cfg.build(seed=0)
    std = net.blocks[0].mlp.fc2.weight.std().item()
    assert std == pytest.approx(0.25 / math.sqrt(256), rel=0.05)


def test_zeroed_writes_make_a_prenorm_block_the_identity():
    net = _net(n_blocks=3, placement="pre")
    with torch.no_grad():
        for b in net.blocks:
            b.attn.proj.weight.zero_()
            b.mlp.fc2.weight.zero_()
            b.mlp.fc2.bias.zero_()
    h = torch.randn(2, 12, 64)
    assert torch.equal(net.blocks_forward(h)[-1], h)


def test_pre_ln_block_adds_each_write_to_the_stream():
    """Written out from the block's parts: x + attn(ln_1(x)), then + mlp(ln_2(.)); the plain twin drops the adds."""
    x = torch.randn(2, 12, 64)
    b = _net(n_blocks=1, placement="pre").blocks[0]
    h = x + b.attn(F.layer_norm(x, (64,), b.ln_1.weight, b.ln_1.bias))
    assert torch.allclose(b(x), h + b.mlp(F.layer_norm(h, (64,), b.ln_2.weight, b.ln_2.bias)), atol=1e-5)
    p = _net(n_blocks=1, placement="pre", residual=False).blocks[0]
    assert torch.allclose(p(x), p.mlp(p.ln_2(p.attn(p.ln_1(x)))), atol=1e-6)
    assert not torch.allclose(p(x), b(x), atol=1e-2)


def test_attention_matches_torch_reference():
    net = _net(n_blocks=1)
    attn = net.blocks[0].attn
    x = torch.randn(3, 12, 64)
    q, k, v = (t.view(3, 12, 4, 16).transpose(1, 2) for t in attn.qkv(x).split(64, dim=2))
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, 12, 64) @ attn.proj.weight.T
    assert torch.allclose(attn(x), ref, atol=1e-5)
    pattern = attn.pattern(x)                            # (B, H, T, T), rows sum to 1
    assert pattern.shape == (3, 4, 12, 12) and torch.allclose(pattern.sum(-1), torch.ones(3, 4, 12), atol=1e-6)
    assert torch.allclose(attn.with_pattern(x, pattern), attn(x), atol=1e-5)
    y = torch.randn(3, 12, 64)                          # with the pattern frozen the sublayer is linear in x
    assert torch.allclose(attn.with_pattern(2 * x - y, pattern),
                          2 * attn.with_pattern(x, pattern) - attn.with_pattern(y, pattern), atol=1e-4)


def test_post_ln_block_is_ln_of_the_sum():
    net = _net(n_blocks=1, placement="post")
    b, x = net.blocks[0], torch.randn(2, 12, 64)
    h = F.layer_norm(x + b.attn(x), (64,))
    assert torch.allclose(b(x), F.layer_norm(h + b.mlp(h), (64,)), atol=1e-5)


def test_config_errors_name_the_field():
    for kwargs, name in [({"norm": "batch"}, "norm"), ({"norm": "pre"}, "norm"), ({"placement": "mid"}, "placement"),
                         ({"n_blocks": 0}, "n_blocks"), ({"n_blocks": 2.0}, "n_blocks"), ({"heads": 5}, "heads"),
                         ({"init": "xavier"}, "init")]:
        with pytest.raises(ValueError, match=name):
            TransformerConfig(**kwargs)
    with pytest.raises(ValueError, match="variant"):
        variant_config("highway", 4)
    assert variant_config("post-LN", 4) == SORT_MODEL.with_(n_blocks=4, residual=True, placement="post")


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
    a = train_sort(SORT_MODEL.with_(n_blocks=1), cfg, seed=5)
    b = train_sort(SORT_MODEL.with_(n_blocks=1), cfg, seed=5)
    c = train_sort(SORT_MODEL.with_(n_blocks=1), cfg, seed=6)
    assert a.history.loss == b.history.loss and a.train_loss == b.train_loss
    assert a.history.loss != c.history.loss
    assert a.seed == 5 and a.status == "finished" and a.model == SORT_MODEL.with_(n_blocks=1)


def test_progress_can_stop_a_sorting_run():
    seen = []

    def progress(fraction, text, history):
        seen.append((fraction, history.steps_done))
        return history.steps_done < 3
    run = train_sort(SORT_MODEL.with_(n_blocks=1), DEFAULT_TRAIN.with_(steps=10, warmup_steps=2), seed=0,
                     progress=progress)
    assert run.status == "stopped at step 3" and len(run.history.loss) == 3
    assert seen == [(0.1, 1), (0.2, 2), (0.3, 3)]


# -- probes -----------------------------------------------------------------------------------------
def test_token_residual_ratio_reference_values():
    same = torch.randn(1, 1, 8).expand(2, 5, 8)
    assert torch.allclose(token_residual_ratio(same), torch.zeros(2, dtype=torch.float64))
    X = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])          # mean 0: the whole matrix is residual
    assert token_residual_ratio(X).item() == pytest.approx(1.0)
    X = torch.tensor([[[1.0, 1.0], [1.0, -1.0]]])          # mean (1, 0): residual (0, +-1)
    assert token_residual_ratio(X).item() == pytest.approx(math.sqrt(2) / 2)


def test_path_terms_sum_to_the_output():
    net = TransformerConfig(n_blocks=5, residual=True, norm="none", mlp=False, seq_len=16).build(seed=0)
    h = torch.randn(4, 16, 64)
    terms, out = path_terms(net, h)
    assert len(terms) == 6 and torch.equal(terms[0], h)
    assert torch.allclose(sum(terms), out, atol=1e-4 * out.abs().max().item())
    with pytest.raises(ValueError, match="mlp"):
        path_terms(_net(n_blocks=2), h[:, :12])


def test_path_terms_of_two_layers_written_out():
    """Two attention layers with frozen patterns A1, A2: (I + A2)(I + A1) h = h + (A1 h + A2 h) + A2 A1 h."""
    net = TransformerConfig(n_blocks=2, residual=True, norm="none", mlp=False, seq_len=8).build(seed=1)
    h = torch.randn(3, 8, 64)
    a1, a2 = net.blocks[0].attn, net.blocks[1].attn
    with torch.no_grad():
        h1 = h + a1(h)
        A1, A2 = a1.pattern(h), a2.pattern(h1)
        terms, out = path_terms(net, h)
        assert torch.allclose(terms[1], a1.with_pattern(h, A1) + a2.with_pattern(h, A2), atol=1e-5)
        assert torch.allclose(terms[2], a2.with_pattern(a1.with_pattern(h, A1), A2), atol=1e-5)
        assert torch.allclose(out, h1 + a2(h1), atol=1e-5)


def test_long_paths_collapse_the_short_path_does_not():
    p = path_profile(n_blocks=6, seed=0)
    assert p.max_error < 1e-5 and p.n_paths == [1, 6, 15, 20, 15, 6, 1]
    assert p.ratio[0] > 0.9 and p.ratio[-1] < 0.01
    assert all(np.diff(p.ratio) < 0)                        # each extra attention layer makes tokens more alike


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_which_paths_carry_the_output_is_set_by_the_init(seed):
    """The chapter's reading of the path shares: at the depth-aware init the input path carries nearly all of the
    output and the share falls by orders of magnitude to the longest path; at the standard init the input path has
    much less, the share at half the depth is still a large part of it, and at 12 blocks a middle length is largest."""
    depth, std = (path_profile(n_blocks=6, seed=seed, init=i) for i in ("depth", "standard"))
    assert depth.norm[0] > 0.9 and depth.norm[0] / depth.norm[-1] > 100, depth.norm
    assert std.norm[0] < 0.75 and std.norm[3] > 0.6 * std.norm[0] and std.norm[-1] < std.norm[3], std.norm
    deep = path_profile(n_blocks=12, seed=seed, init="standard")
    assert 3 <= int(np.argmax(deep.norm)) <= 9, deep.norm
    assert deep.max_error < 1e-4 and std.max_error < 1e-4


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
    post = grad_norms_at_init(SORT_MODEL.with_(n_blocks=8, placement="post", init=init), seeds=SEEDS)
    pre = grad_norms_at_init(SORT_MODEL.with_(n_blocks=8, placement="pre", init=init), seeds=SEEDS)
    assert (post.norms[:, -1] > factor * pre.norms[:, -1]).all()


def test_per_layer_gradient_shapes_at_init():
    """'pre-LN's gradient falls toward the output, post-LN's is roughly flat' (the mismatch with Xiong et al.'s
    Fig. 3 that the chapter states), at the standard init, where the chapter says it is clear."""
    pre = grad_norms_at_init(SORT_MODEL.with_(n_blocks=8, placement="pre", init="standard"), seeds=SEEDS)
    post = grad_norms_at_init(SORT_MODEL.with_(n_blocks=8, placement="post", init="standard"), seeds=SEEDS)
    assert (pre.last_over_first < 0.75).all(), pre.last_over_first
    assert ((post.last_over_first > 0.6) & (post.last_over_first < 1.3)).all(), post.last_over_first
    depth_pre = grad_norms_at_init(SORT_MODEL.with_(n_blocks=8, placement="pre"), seeds=SEEDS)
    assert (depth_pre.last_over_first < 1).all()


# -- claims: training on the sorting task -----------------------------------------------------------
def _train_until(model: TransformerConfig, train: TrainConfig, seed: int, target: float):
    """Train, stopping early once the mean batch loss of the last 10 steps is below ``target``."""
    def progress(fraction, text, history):
        loss = history.loss
        return not (len(loss) >= 10 and sum(loss[-10:]) / 10 < target)
    return train_sort(model, train, seed=seed, progress=progress)


@pytest.mark.slow
def test_no_residual_six_blocks_is_stuck_and_collapsed():
    """The chapter's claim, in every seed: stuck between the floor of a collapsed stream and chance, its trained
    stream collapsed and its predictions position-free. Each live loss must sit inside (FLOOR, chance) by a margin
    of five times the spread of the stored seeds at the same lr; the stored seeds sit about 20 such spreads inside
    (the stuck level itself moves with the lr, 2.31 to 2.77 over the stored lrs, so no band around it is asserted)."""
    stored = [r["train_loss"] for r in _rows("noresid")
              if r["lr"] == DEFAULT_TRAIN.lr and r["steps"] == DEFAULT_TRAIN.steps]
    margin = 5 * (max(stored) - min(stored))
    assert len(stored) >= 3 and FLOOR + margin < min(stored) and max(stored) < SORT.chance_loss - margin
    for s in SEEDS:
        run = train_sort(variant_config("no residual", 6), DEFAULT_TRAIN, seed=s)
        assert run.status == "finished" and stuck(run.train_loss), (s, run.train_loss)
        assert FLOOR + margin < run.train_loss < SORT.chance_loss - margin, (s, run.train_loss, FLOOR, margin)
        c = final_collapse(run.net)
        assert c["r_final"] < 1e-3 and c["position_spread"] < 1e-3, (s, c["r_final"], c["position_spread"])


@pytest.mark.slow
def test_post_ln_six_blocks_reaches_a_low_loss():
    for s in SEEDS:
        run = _train_until(variant_config("post-LN", 6), DEFAULT_TRAIN, s, target=0.3)
        assert np.mean(run.history.loss[-10:]) < 0.3, (s, run.history.loss[-10:])


@pytest.mark.slow
def test_inside_the_trained_pre_ln_stream():
    """The chapter's reading of the trained sorter, over 3 seeds: it trains; the logit lens after block 1 is still
    above the position-only loss and falls block by block; the MLP writes carry most of the direct logit lead; the
    most focused head (mass on the answer's keys) is in a middle block, well above uniform attention."""
    X, y = SORT.sample(512, generator(5))
    for s in SEEDS:
        run = train_sort(variant_config("pre-LN", 6), DEFAULT_TRAIN, seed=s)
        assert run.train_loss < 0.3, (s, run.train_loss)
        r = read_stream(run.net, X, y)
        after_block = r.lens_loss[2::2]
        assert after_block[0] > SORT.position_only_loss() and all(np.diff(after_block) < 0), (s, after_block)
        assert r.dla_error < 1e-3 and r.dla[2::2].sum() > 0.5 * r.dla.sum(), (s, r.dla)
        b = int(np.argmax(r.target_mass.max(axis=1)))
        assert 0 < b < 5 and r.target_mass.max() > 1.8 * r.uniform_target_mass, (s, r.target_mass)
        assert r.target_mass[0].max() < r.target_mass.max() and r.target_mass[-1].max() < r.target_mass.max()


@pytest.mark.slow
def test_post_ln_at_high_lr_needs_warmup():
    model = SORT_MODEL.with_(n_blocks=WARMUP_BLOCKS, placement="post")
    cold = [train_sort(model, DEFAULT_TRAIN.with_(lr=WARMUP_LR, warmup_steps=0), seed=s) for s in SEEDS]
    assert sum(r.train_loss > 0.8 * SORT.chance_loss for r in cold) >= 2, [r.train_loss for r in cold]
    for s in SEEDS:
        warm = _train_until(model, DEFAULT_TRAIN.with_(lr=WARMUP_LR, warmup_steps=WARMUP_STEPS), s, target=0.3)
        assert np.mean(warm.history.loss[-10:]) < 0.3, (s, warm.history.loss[-10:])


# -- the stored sweeps say what the chapter says (checks of the stored data) --------------------------------
# (marked `data` where only the stored numbers can fail them: they gate a regenerated sweep, not the code)
def _record(name):
    path = DATA / f"transformers_{name}.json"
    assert path.exists(), f"{path} is missing: run scripts/precompute_transformers.py {name}"
    return load_result(path)


def _rows(name):
    return _record(name)["data"]


def _plain(d):
    return json.loads(json.dumps(d))


def test_stored_sweeps_are_of_the_current_configs_and_row_format():
    """The stored rows have the keys the current row functions write, and the configs are the package's."""
    tiny = DEFAULT_TRAIN.with_(steps=2, warmup_steps=1)
    run = train_sort(SORT_MODEL.with_(n_blocks=1), tiny, seed=0)
    sort_keys = set(sort_row(run))
    recall_keys = set(solve_row(solve_recall(RECALL_NETS["tanh RNN"], 5, seed=0, budget=2)))
    keys = {"depth": sort_keys, "warmup": sort_keys, "noresid": set(collapse_row(run)),
            "triage": set(triage_row(run)), "recall": recall_keys}
    for name, k in keys.items():
        rows = _rows(name)
        assert rows and all(set(r) == k for r in rows), name
    depth, warmup, recall = _record("depth")["config"], _record("warmup")["config"], _record("recall")["config"]
    assert depth["model"] == _plain(SORT_MODEL.as_dict()) and depth["train"] == _plain(DEFAULT_TRAIN.as_dict())
    assert depth["variants"] == VARIANTS and depth["task"] == {"seq_len": SORT.seq_len, "vocab": SORT.vocab}
    assert warmup["model"] == _plain(SORT_MODEL.with_(n_blocks=WARMUP_BLOCKS).as_dict())
    assert ["post", WARMUP_LR, 0] in warmup["conditions_placement_lr_warmup"]
    assert ["post", WARMUP_LR, WARMUP_STEPS] in warmup["conditions_placement_lr_warmup"]
    assert recall["nets"] == {k: _plain(v.as_dict()) for k, v in RECALL_NETS.items()}
    assert recall["train"] == _plain(RNN_TRAIN.as_dict()) and recall["budget"] == RECALL_BUDGET
    triage = _record("triage")["config"]["conditions"]
    assert triage == {k: {"model": _plain(m.as_dict()), "train": _plain(t.as_dict()), "pre_estimated_adam": p}
                      for k, (m, t, p) in TRIAGE.items()}
    noresid = _record("noresid")["config"]
    assert noresid["model"] == _plain(variant_config("no residual", NORESID_BLOCKS).as_dict())
    assert noresid["lrs"] == list(NORESID_LRS) and noresid["train"] == _plain(DEFAULT_TRAIN.as_dict())
    assert _record("init")["config"]["model"] == _plain(SORT_MODEL.as_dict())


def test_stored_stuck_flags_are_what_the_code_says():
    for name in ("depth", "warmup", "noresid", "triage"):
        for r in _rows(name):
            assert r["stuck"] == (r["status"].startswith("diverged") or stuck(r["train_loss"])), r


@pytest.mark.data
def test_stored_depth_sweep():
    rows = _rows("depth")
    pick = lambda label, n: [r for r in rows if r["label"] == label and r["n_blocks"] == n]
    assert len(pick("no residual", 6)) >= 3
    assert all(not r["stuck"] for r in pick("no residual", 2))
    assert all(r["stuck"] for r in pick("no residual", 6) + pick("no residual", 8))
    assert all(r["train_loss"] > FLOOR for r in rows if r["label"] == "no residual" and r["stuck"])   # above the floor
    for label in ("post-LN", "pre-LN"):
        assert all(not r["stuck"] for r in rows if r["label"] == label)       # "trains at every depth we tried"
    d1 = lambda label: [r["train_loss"] for r in pick(label, 1)]            # "at 1 block the plain encoder is ahead"
    assert max(d1("no residual")) < min(d1("post-LN") + d1("pre-LN"))


@pytest.mark.data
def test_stored_warmup_sweep():
    rows = _rows("warmup")
    cond = lambda placement, lr, warm: [r for r in rows
                                        if (r["placement"], r["lr"], r["warmup_steps"]) == (placement, lr, warm)]
    cold = cond("post", WARMUP_LR, 0)
    assert len(cold) >= 3 and sum(r["stuck"] for r in cold) > len(cold) / 2
    for placement, warm in (("post", WARMUP_STEPS), ("pre", 0), ("pre", WARMUP_STEPS)):
        assert all(not r["stuck"] for r in cond(placement, WARMUP_LR, warm)), (placement, warm)
    low_lr = cond("post", 3e-3, 0)                          # "only the larger lr needs warm-up"
    assert len(low_lr) >= 3 and sum(r["stuck"] for r in low_lr) <= 1


@pytest.mark.data
def test_stored_pre_and_post_ln_end_close_where_both_train():
    """'At our scale the difference is small ... and post-LN is not always lower': the chapter's comparison."""
    depth, warm = _rows("depth"), _rows("warmup")
    med = lambda rows: float(np.median([r["train_loss"] for r in rows]))
    gaps = [med([r for r in depth if r["label"] == "pre-LN" and r["n_blocks"] == d])
            - med([r for r in depth if r["label"] == "post-LN" and r["n_blocks"] == d])
            for d in sorted({r["n_blocks"] for r in depth}) if d > 1]
    gaps.append(med([r for r in warm if (r["placement"], r["lr"], r["warmup_steps"]) == ("pre", WARMUP_LR, WARMUP_STEPS)])
                - med([r for r in warm if (r["placement"], r["lr"], r["warmup_steps"]) == ("post", WARMUP_LR, WARMUP_STEPS)]))
    assert max(abs(g) for g in gaps) < 0.01 and any(g < 0 for g in gaps) and any(g > 0 for g in gaps), gaps


@pytest.mark.data
def test_stored_noresid_sweep_stuck_and_collapsed_at_every_lr():
    rows, cfg = _rows("noresid"), _record("noresid")["config"]
    assert {r["lr"] for r in rows} == set(NORESID_LRS) and all(len([r for r in rows if r["lr"] == lr]) >= 3 for lr in NORESID_LRS)
    long = [r for r in rows if r["steps"] == NORESID_LONG * DEFAULT_TRAIN.steps]
    assert len(long) >= 3 and all(r["lr"] == cfg["best_lr"] for r in long)
    short = [r for r in rows if r["steps"] == DEFAULT_TRAIN.steps]
    best = min(NORESID_LRS, key=lambda lr: np.mean([r["train_loss"] for r in short if r["lr"] == lr]))
    assert best == cfg["best_lr"]
    assert all(r["stuck"] for r in rows)                                       # stuck at every lr, and 5x longer
    assert all(r["r_final"] < 0.05 and r["position_spread"] < 0.05 for r in rows), [r["r_final"] for r in rows]
    assert sum(r["r_final"] < 1e-6 for r in rows) >= len(rows) - 2                # collapsed to round-off, nearly all
    assert all(r["train_loss"] > FLOOR for r in rows)                          # a collapsed stream cannot beat it
    assert np.mean([r["train_loss"] for r in long]) < np.mean([r["train_loss"] for r in short if r["lr"] == best])


def _triage():
    return {s["condition"]: s for s in triage_summary(_rows("triage"))}


def test_stored_triage_says_what_the_chapter_says():
    t, rows = _triage(), _rows("triage")
    assert set(t) == set(TRIAGE) and all(s["seeds"] >= 3 for s in t.values())
    for name in ("RAdam", "SGD, lr 0.01", "SGD, lr 0.1", "AdamW, standard init, warm-up", "pre-LN, AdamW, standard init"):
        assert t[name]["trained"] == t[name]["seeds"], (name, t[name])
    for name in ("AdamW", "AdamW, standard init", "AdamW, standard init, lr 0.003", "Adam, second moment pre-estimated",
                 "Admin (standard init)"):
        assert t[name]["seeds"] - t[name]["trained"] >= 2, (name, t[name])
    assert all(r["r_final"] < 1e-2 for r in rows if r["stuck"])                # every failed stream collapsed
    assert all(r["r_final"] > 0.5 for r in rows if not r["stuck"])            # every trained one distinct


@pytest.mark.data
def test_stored_init_sweep_depth_laws_and_amplification():
    data = _record("init")["data"]
    g, amp = data["grads"], data["amplification"]
    slope = lambda key, **m: loglog_slope(g, key, **m)
    assert 0.35 < slope("stream_norm", placement="pre", init="standard") < 0.6           # sqrt(L) stream growth
    assert -0.5 < slope("last_fc2_grad", placement="pre", init="standard") < -0.1        # falls, slower than 1/sqrt(L)
    assert slope("last_fc2_grad", placement="post", init="standard") > slope("last_fc2_grad", placement="pre", init="standard") + 0.2
    assert abs(slope("stream_norm", placement="pre", init="depth")) < 0.1                 # flat at the depth-aware init
    Ls = sorted({r["n_blocks"] for r in g})
    gm = lambda L, p: np.exp(np.mean([np.log(r["last_fc2_grad"]) for r in g
                                      if (r["n_blocks"], r["placement"], r["init"]) == (L, p, "standard")]))
    assert gm(Ls[-1], "post") / gm(Ls[-1], "pre") > 2 * gm(Ls[0], "post") / gm(Ls[0], "pre")
    a = lambda p, i, mode, L: np.mean([r["change"] for r in amp if (r["placement"], r["init"], r["mode"], r["n_blocks"]) == (p, i, mode, L)])
    AL = sorted({r["n_blocks"] for r in amp})
    assert a("post", "standard", "random", 8) > 1.3 * a("pre", "standard", "random", 8)
    assert a("post", "admin", "random", 8) < 1.2 * a("pre", "standard", "random", 8)
    sl = lambda p, i: np.polyfit(np.log(AL), np.log([a(p, i, "random", L) for L in AL]), 1)[0]
    assert sl("post", "standard") > sl("pre", "standard") + 0.1                      # the gap grows with depth
    assert all(r["change"] > 0.5 for r in amp if r["mode"] == "adamw" and r["n_blocks"] == 8)


def test_a_stored_sweep_reads_back_as_it_was_written(tmp_path):
    """The sweeps above are read through the package's store: what save_result writes, load_result gives back."""
    data = [{"seed": 0, "train_loss": 1 / 3, "curve": [2.5, 0.0023], "stuck": True, "status": "finished"}]
    config = {"model": {"n_blocks": 6, "placement": "pre"}, "lr": 3e-4}
    path = save_result(tmp_path / "new" / "transformers_x.json", data, config, "scripts/x.py --seeds 0", 1.5)
    rec = load_result(path)
    assert set(rec) == {"command", "config", "made_with", "created", "seconds", "data"}
    assert rec["data"] == data and rec["config"] == config and rec["command"] == "scripts/x.py --seeds 0"
    assert rec["seconds"] == 1.5 and rec["made_with"]["skipnet"] == skipnet.__version__
    assert rec["made_with"]["torch"] == torch.__version__ and rec["created"] == time.strftime("%Y-%m-%d")


# -- claims: the RNN question ------------------------------------------------------------------------
def test_lstm_cell_matches_torch_lstm_cell():
    net = RecurrentConfig(cell="lstm", width=16, vocab=5).build(seed=0)
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
    h_last, carried = net.run(X)
    assert torch.allclose(h_last, h, atol=1e-5) and torch.allclose(carried[-1], c, atol=1e-5) and len(carried) == 7


def test_recall_task_asks_for_the_first_token():
    X, y = RecallTask(seq_len=7, vocab=5).sample(32, torch.Generator().manual_seed(0))
    assert X.shape == (32, 7) and torch.equal(y, X[:, 0])
    with pytest.raises(ValueError, match="seq_len"):
        RecallTask(seq_len=1)


def test_gradient_through_time_tanh_vanishes_additive_cell_does_not():
    g = {name: gradient_through_time(cell, seq_len=100, seeds=SEEDS).first_over_last
         for name, cell in RNN_CELLS.items()}
    assert (g["tanh RNN"] < 1e-12).all()
    assert (g["LSTM, no forget gate"] > 2).all() and (g["LSTM, no forget gate"] < 100).all()   # "does not decay"
    assert (g["LSTM (forget gate)"] < 1e-3).all() and (g["LSTM (forget gate)"] > 1e3 * g["tanh RNN"]).all()


@pytest.mark.slow
def test_additive_states_solve_recall_within_the_budget():
    """Live, another draw than the stored race: linear attention without decay solves T = 40 and the LSTM without
    forget gate T = 20 in every seed, well within the budget."""
    for s in SEEDS:
        la = solve_recall(RECALL_NETS["linear attention"], 40, seed=s)
        lstm = solve_recall(RECALL_NETS["LSTM, no forget gate"], 20, seed=s)
        for run in (la, lstm):
            assert run.extra["steps_to_solve"] is not None and run.extra["steps_to_solve"] < RECALL_BUDGET / 2, (s, run.label)
            assert run.extra["eval_acc"] > 0.95, (s, run.label, run.extra["eval_acc"])


@pytest.mark.data
def test_stored_recall_race_says_what_the_chapter_says():
    rows, cfg = _rows("recall"), _record("recall")["config"]
    summary = {(x["label"], x["seq_len"]): x for x in recall_summary(rows)}
    skipped = cfg["not_run_after_all_seeds_failed"]                     # an lr is left out only after it failed at a shorter T
    assert all(x["seeds"] >= 3 and x["lrs_tried"] + sum((k["label"], k["seq_len"]) == key for k in skipped) == len(cfg["lrs"])
               for key, x in summary.items())
    solved_all = lambda label, T: summary[(label, T)]["solved"] == summary[(label, T)]["seeds"]
    fails = lambda label, T: (label, T) not in summary or summary[(label, T)]["median_steps"] is None
    med = lambda label, T: summary[(label, T)]["median_steps"]
    for T in cfg["seq_lens"]:                                           # the additive nets solve every length
        assert solved_all("LSTM, no forget gate", T) and med("LSTM, no forget gate", T) < RECALL_BUDGET / 4
    for T in cfg["la_seq_lens"]:
        assert solved_all("linear attention", T) and med("linear attention", T) < RECALL_BUDGET / 4
    for label in ("tanh RNN", "tanh RNN, width 128"):                  # slow at T = 10, cannot from T = 20
        assert solved_all(label, 5) and solved_all(label, 10)
        assert med(label, 10) > 3 * med("LSTM, no forget gate", 10)
        assert all(fails(label, T) for T in cfg["seq_lens"] if T >= 20)
        assert not any(r["solved"] for r in rows if r["label"] == label and r["seq_len"] >= 20)
    assert solved_all("LSTM (forget gate)", 20) and med("LSTM (forget gate)", 20) > med("LSTM, no forget gate", 20)
    assert fails("LSTM (forget gate)", 40)                              # "mostly not T = 40 within the budget"
    assert med("linear attention, gated decay", 40) > 3 * med("linear attention", 40)
    assert med("linear attention, decay 0.9", 40) > 3 * med("linear attention", 40)
    assert fails("linear attention, decay 0.9", 100)
    params = {x["label"]: x["n_params"] for x in summary.values()}
    assert abs(params["tanh RNN, width 128"] - params["LSTM (forget gate)"]) < 0.05 * params["LSTM (forget gate)"]
