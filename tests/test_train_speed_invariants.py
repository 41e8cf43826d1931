"""The speed choices of the training loop keep its numbers: what it records is what a plain
computation gives, and the fused optimizer step is the foreach step up to rounding.
(Speed itself is measured in bench/, never asserted here.)"""
import copy

import pytest
import torch
import torch.nn.functional as F

from skipnet.models import build_model
from skipnet.runtime import generator
from skipnet.train import TrainConfig, Trainer, make_optimizer


def test_recorded_first_step_equals_a_plain_computation(digits):
    net = build_model(arch="cnn", depth=8, width=4, seed=2)
    reference = copy.deepcopy(net).to(memory_format=torch.channels_last).train()
    cfg = TrainConfig(batch_size=64, steps=3, seed=2)
    trainer = Trainer(net, digits, cfg)
    trainer.step()
    idx = torch.randperm(len(digits.X_train), generator=generator(2))[:64]
    X = digits.X_train.contiguous(memory_format=torch.channels_last)[idx]
    logits = reference(X)
    assert trainer.history.loss[0] == F.cross_entropy(logits, digits.y_train[idx]).item()     # bit for bit
    assert trainer.history.acc[0] == (logits.argmax(-1) == digits.y_train[idx]).float().mean().item()


def test_convolutions_run_channels_last(digits):
    trainer = Trainer(build_model(arch="cnn", depth=8, width=4, seed=0), digits, TrainConfig(steps=1))
    w = trainer.model.blocks[0].branch.weights[0].weight                  # (C_out, C_in, 3, 3) with C_in > 1
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_fused_step_equals_foreach_step(optimizer):
    cfg = TrainConfig(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3)
    nets = [build_model(arch="mlp", n_blocks=3, width=16, in_shape=(8,), seed=0) for _ in range(2)]
    make = torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW
    try:                                                           # does this torch build fuse on this device?
        make([torch.zeros(1, requires_grad=True)], lr=0.1, fused=True)
    except (RuntimeError, ValueError, TypeError):
        pytest.skip(f"this torch build has no fused {optimizer} kernel here (make_optimizer then uses foreach)")
    fused = make_optimizer(cfg, list(nets[0].parameters()))
    assert fused.defaults.get("fused") is True                     # where torch can fuse, the loop does
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if optimizer == "sgd":
        plain = torch.optim.SGD(nets[1].parameters(), momentum=cfg.momentum, nesterov=True, foreach=True, **kw)
    else:
        plain = torch.optim.AdamW(nets[1].parameters(), betas=cfg.betas, foreach=True, **kw)
    X = torch.randn(32, 8, generator=generator(0))
    y = torch.arange(32) % 10
    for _ in range(5):
        for net, opt in zip(nets, (fused, plain)):
            opt.zero_grad()
            F.cross_entropy(net(X), y).backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
