"""The Transformer chapter's controls, its fair race and its claims through the inference protocol.

Live tests check the mechanisms against independent references (a real AdamW / SGD step, torch's GRU); the stored
sweeps' tests check the stored data, each bound with a margin from the data."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skipnet.experiments.transformers import (SORT, SORT_MODEL, DEFAULT_TRAIN, FLOAT64_FLOOR, VARIANTS,
                                              chapter_family, collapse_at_init, confirmation_seeds)
from skipnet.experiments.transformers_rnn import FAIR_RACE_LENS, FAIR_RACE_NETS, RECALL_BUDGET, recall_summary
from skipnet.experiments.transformers_warmup import (ADAM2K_BATCHES, CONTROLS, PreEstimatedAdam, control_summary,
                                                     first_step_norms)
from skipnet.inference import EQUIVALENT, HIGHER, LOWER
from skipnet.recurrent import RecurrentConfig
from skipnet.runtime import generator
from skipnet.store import load_sweep

DATA = Path(__file__).resolve().parents[1] / "book" / "data"
SMALL = SORT_MODEL.with_(n_blocks=2, placement="post")


def _step_norm(net, make_opt, seed=0):
    """Norm of the parameter change of one optimizer step on the batch first_step_norms uses."""
    X, y = SORT.sample(DEFAULT_TRAIN.batch_size, generator(777 + seed))
    before = [p.detach().clone() for p in net.parameters()]
    opt = make_opt(list(net.parameters()))
    opt.zero_grad()
    F.cross_entropy(net(X).reshape(-1, SORT.vocab), y.reshape(-1)).backward()
    opt.step()
    return math.sqrt(sum(((p.detach() - b) ** 2).sum().item() for p, b in zip(net.parameters(), before)))


def test_first_step_norms_match_real_adamw_and_sgd_steps():
    m = first_step_norms(SMALL.build(0), lr=1e-2)
    adam = _step_norm(SMALL.build(0), lambda ps: torch.optim.AdamW(ps, lr=1e-2, betas=(0.9, 0.98), weight_decay=0.0))
    sgd = _step_norm(SMALL.build(0), lambda ps: torch.optim.SGD(ps, lr=m["sgd_matched_lr"], momentum=0.9))
    assert adam == pytest.approx(m["adam_step"], rel=0.01)
    assert sgd == pytest.approx(m["adam_step"], rel=0.01)


def test_adam2k_step_counter_shrinks_the_first_momentum_step():
    p = torch.nn.Parameter(torch.ones(5))
    steps = {}
    for t in (0, ADAM2K_BATCHES):
        with torch.no_grad():
            p.copy_(torch.ones(5))
        opt = PreEstimatedAdam([p], lr=0.1)
        opt.set_second_moment([torch.full((5,), 4.0)], t=t)
        p.grad = torch.full((5,), 2.0)
        opt.step()
        steps[t] = (1 - p.detach()).abs().max().item()
    assert steps[0] == pytest.approx(0.1, rel=1e-5)                      # m_hat = g, v = g^2: a step of lr
    assert steps[ADAM2K_BATCHES] == pytest.approx(0.1 * 0.1, rel=1e-5)   # bias correction ~1: (1 - beta1) of it


def test_controls_are_what_they_say():
    for name, (model, train, pre, matched) in CONTROLS.items():
        assert model.placement == "post" and model.n_blocks == 8 and model.residual
        if name.startswith("SGD"):
            assert train.optimizer == "sgd" and train.grad_clip is None and not train.nesterov
            assert matched == ("AdamW" in name) and (train.warmup_steps > 0) == name.endswith("warm-up")
        else:
            assert train.optimizer == "adamw" and pre[0] == ADAM2K_BATCHES and pre[1] == pre[2] == ("2k" in name)


@pytest.mark.parametrize("cell", ["gru", "additive"])
def test_new_recurrences_are_their_formulas(cell):
    net = RecurrentConfig(cell=cell, width=8).network()
    X = torch.randint(0, 8, (3, 6), generator=generator(0))
    last, kept = net.run(X)
    assert torch.allclose(net(X), net.head(last), atol=1e-6)
    if cell == "gru":
        ref = torch.nn.GRU(8, 8, batch_first=True)
        with torch.no_grad():
            ref.weight_ih_l0.copy_(net.U.weight), ref.weight_hh_l0.copy_(net.W.weight)
            ref.bias_ih_l0.copy_(net.U.bias), ref.bias_hh_l0.zero_()
        assert torch.allclose(ref(net.embed(X))[0][:, -1], last, atol=1e-6)
    else:
        h = torch.zeros(3, 8)
        for t in range(6):
            h = h + torch.tanh(net.U(net.embed(X[:, t])) + net.W(h))
        assert torch.allclose(h, last, atol=1e-6) and torch.allclose(kept[-1], h)


def test_no_skip_encoder_is_collapsed_at_init_from_four_blocks_skips_keep_it_distinct():
    r = {name: collapse_at_init(name, (1, 4, 6)) for name in VARIANTS}
    assert 0.3 < min(r["no residual"][1]) and max(r["no residual"][1]) < 0.9     # distinct, but below the skips' r
    assert max(r["no residual"][4]) < 1e-4 and min(r["no residual"][4]) > FLOAT64_FLOOR   # measured, not round-off
    assert max(r["no residual"][6]) < FLOAT64_FLOOR                              # equal to float64's precision
    assert min(v for name in ("post-LN", "pre-LN") for vs in r[name].values() for v in vs) > 0.5


def test_collapse_at_init_is_measured_in_float64_not_at_float32_round_off():
    from skipnet.experiments.transformers import final_collapse, variant_config
    r32 = final_collapse(variant_config("no residual", 6).build(0))["r_final"]
    r64 = collapse_at_init("no residual", (6,), seeds=(0,))[6][0]
    assert 1e-8 < r32 < 1e-6 and r64 < 1e-12          # float32 stops at its round-off; float64 goes 8 decades lower
    a = collapse_at_init("no residual", (4,), seeds=(0,))[4][0]      # where float32 still resolves r, the two agree
    b = final_collapse(variant_config("no residual", 4).build(0), n_seq=64)["r_final"]
    assert a == pytest.approx(b, rel=0.2)


def _records(tag=None):
    return {n: load_sweep(f"transformers_{n}", tag, data_dir=DATA)
            for n in ("depth", "warmup", "triage", "recall", "controls", "race", "initctl")}


@pytest.mark.data
def test_chapter_family_over_the_stored_seeds():
    records = _records()
    claims = chapter_family(records).results()
    assert len(claims) == 5 and confirmation_seeds(len(claims)) == 8       # 2 / 2^8 < 0.05 / 5 <= 2 / 2^7
    for key in ("noresid_post", "warmup", "placement"):
        c = claims[key]
        assert c.higher == c.n and c.ci[0] > 1.0, (key, c)                # > 1 nat in every seed, interval above 1
        assert c.outcome not in (HIGHER, LOWER) or c.n >= 6                 # five seeds cannot be detected
    alike = claims["pre_post_alike"]                       # every seed well inside the margin, but too few seeds
    assert alike.outcome != EQUIVALENT or alike.n >= 6      # for the exact equivalence test to decide it
    assert max(abs(d) for d in alike.differences) < alike.margin and alike.outcome not in (HIGHER, LOWER)
    # the margin is on the scale of the losses it compares: below a third of either arm's smallest stored loss,
    # above the seed-to-seed spread of each arm, below the change from 4 to 6 blocks
    depth = records["depth"]["data"]
    loss = lambda label, L: [r["train_loss"] for r in depth if (r["label"], r["n_blocks"]) == (label, L)]
    for label in ("pre-LN", "post-LN"):
        six, four = loss(label, 6), loss(label, 4)
        assert max(six) - min(six) < alike.margin < min(six) / 3
        assert alike.margin < np.mean(four) - np.mean(six)
    assert claims["tanh_lstm"].mean > 0


@pytest.mark.data
def test_stored_controls():
    rec = load_sweep("transformers_controls", data_dir=DATA)
    s = {c["condition"]: c for c in control_summary(rec["data"])}
    assert set(s) == set(CONTROLS) and all(c["seeds"] >= 3 for c in s.values())
    assert s["SGD, no clipping, lr 0.1"]["trained"] >= 2                       # small unclipped steps: mostly train
    for name in ("SGD, no clipping, first step as large as AdamW's",
                 "SGD, no clipping, first step as large as AdamW's, warm-up"):
        assert s[name]["trained"] == 0 and s[name]["diverged"] >= 2, s[name]    # steps as large as Adam's: never
    assert s["Adam, second moment over 2000 batches"]["trained"] == 0          # the reset counter: stuck in every seed
    rows = rec["data"]
    a2k = [r for r in rows if r["condition"].startswith("Adam-2k")]
    reset = [r for r in rows if r["condition"] == "Adam, second moment over 2000 batches"]
    assert np.median([r["train_loss"] for r in a2k]) < np.median([r["train_loss"] for r in reset]) - 1.0
    assert all(r["adam_step"] / (r["sgd_matched_lr"] * r["grad_norm"]) == pytest.approx(1) for r in rec["data"])


@pytest.mark.data
def test_stored_fair_race():
    rec = load_sweep("transformers_race", data_dir=DATA)
    assert rec["config"]["nets"] == json.loads(json.dumps({k: v.as_dict() for k, v in FAIR_RACE_NETS.items()}))
    summary = {(s["label"], s["seq_len"]): s for s in recall_summary(rec["data"], RECALL_BUDGET)}
    nofg = summary[("LSTM, no forget gate", max(FAIR_RACE_LENS))]
    assert nofg["solved"] == nofg["seeds"]                                  # the LSTMs now run at T = 100


@pytest.mark.data
def test_stored_standard_init_controls():
    """The control that differs from the encoder without skips in the skip alone trains in every stored seed, and at
    one block the residual encoders end above the plain one with either initialization (the depth page's words)."""
    from skipnet.experiments.transformers import NORESID_BLOCKS, stuck
    records = _records()
    ctl, depth = records["initctl"]["data"], records["depth"]["data"]
    matched = [r for r in ctl if (r["label"], r["n_blocks"]) == ("post-LN", NORESID_BLOCKS)]
    assert len(matched) >= 3 and not any(r["stuck"] or stuck(r["train_loss"]) for r in matched)
    assert all(r["residual"] and r["placement"] == "post" and r["init"] == "standard" for r in matched)
    assert records["initctl"]["config"]["model"]["init"] == "standard"
    plain1 = [r["train_loss"] for r in depth if (r["label"], r["n_blocks"]) == ("no residual", 1)]
    resid1 = [r["train_loss"] for r in ctl + depth if r["n_blocks"] == 1 and r["label"] != "no residual"]
    assert max(plain1) < min(resid1)
    # the encoder without skips, from the depth where it is stuck, never gets below the position-only loss
    from skipnet.experiments.transformers import SORT
    assert all(r["train_loss"] > SORT.position_only_loss() for r in depth
               if r["label"] == "no residual" and r["n_blocks"] >= 4)
