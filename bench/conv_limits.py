"""What the convolution kernels themselves reach on this CPU, and what the layouts and batchings tried gave.

The training step of the book's CNNs is dominated by 3x3 convolutions on 8x8 to 2x2 maps with 8 to 64
channels. ``step_fraction_of_matmul_peak`` cannot exceed what those convolution shapes reach alone, so this
section times each of ResNet-20's convolution shapes (forward + both backward passes, as in a training step)
in isolation and reports their FLOP-weighted fraction of the one-thread matmul peak, under:

* ``nchw`` and ``channels_last`` memory layouts;
* ``batch 256``: the same shapes with twice the batch (bigger GEMMs);
* ``grouped pair``: a plain net and its residual twin trained in ONE call, as a grouped convolution
  (``groups=2``, twice the channels), against the two convolutions one after the other;
* ``bn folded (eval)``: at evaluation, BatchNorm folded into the convolution's weights, against conv + BN.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchlib import RESNET20, sync
from skipnet.models import build_model


def conv_shapes(batch: int = 128) -> list[tuple[int, int, int, int, int]]:
    """(batch, c_in, c_out, size, stride) of every 3x3 convolution of ResNet-20 (width 16), with multiplicity."""
    net = build_model(RESNET20, seed=0).eval()
    shapes = []

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d) and mod.kernel_size == (3, 3):
            shapes.append((batch, mod.in_channels, mod.out_channels, inp[0].shape[-1], mod.stride[0]))

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(1, *RESNET20.in_shape))
    for h in hs:
        h.remove()
    return shapes


def _time(fn, min_s: float = 0.15, reps: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - t0 < min_s:
            fn()
            n += 1
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def _train_conv(shape, layout, groups: int = 1, device="cpu"):
    b, ci, co, s, stride = shape
    x = torch.randn(b, ci * groups, s, s, device=device, requires_grad=True)
    w = torch.randn(co * groups, ci, 3, 3, device=device, requires_grad=True)
    if layout == "channels_last":
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        w = w.detach().contiguous(memory_format=torch.channels_last).requires_grad_()

    def step():
        y = F.conv2d(x, w, stride=stride, padding=1, groups=groups)
        y.backward(torch.ones_like(y))
    return step


def _flops(shape, groups: int = 1) -> float:
    b, ci, co, s, stride = shape
    out = s // stride
    return 3 * 2 * b * out * out * co * groups * ci * 9          # forward + input and weight gradients


def conv_limit_section(peak_flops: float, device: torch.device = torch.device("cpu")) -> dict:
    """Fractions of ``peak_flops`` (the one-thread matmul rate measured in the same run)."""
    out = {}
    shapes = conv_shapes()
    unique = sorted(set(shapes))
    count = {s: shapes.count(s) for s in unique}

    def fraction(layout="channels_last", batch=128, groups=1, pair_apart=False):
        flops = secs = 0.0
        for s in unique:
            shape = (batch, *s[1:])
            if pair_apart:                         # the pair's two convolutions one after the other
                step = _train_conv(shape, layout, 1, device)
                t = 2 * _time(step)
                f = 2 * _flops(shape)
            else:
                step = _train_conv(shape, layout, groups, device)
                t, f = _time(step), _flops(shape, groups)
            sync(device)
            flops += count[s] * f
            secs += count[s] * t
        return flops / secs / peak_flops

    out["nchw"] = fraction("nchw")
    out["channels_last"] = fraction("channels_last")
    out["batch_256"] = fraction("channels_last", batch=256)
    out["pair_apart"] = fraction("channels_last", pair_apart=True)
    out["grouped_pair"] = fraction("channels_last", groups=2)
    out["bn_folded_eval_speedup"] = _bn_fold_speedup(device)
    out["shapes"] = [list(s) + [count[s]] for s in unique]
    return {"conv_limits": out}


def _bn_fold_speedup(device) -> float:
    """Eval forward of conv + BN over the same conv with BN folded into its weights (same output)."""
    x = torch.randn(512, 16, 8, 8, device=device).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last).eval()
    bn = nn.BatchNorm2d(16).to(device).eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Conv2d(16, 16, 3, padding=1, bias=True).to(device, memory_format=torch.channels_last).eval()
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale[:, None, None, None])
        folded.bias.copy_(bn.bias - bn.running_mean * scale)
        assert torch.allclose(folded(x), bn(conv(x)), atol=1e-4)
        t_plain = _time(lambda: bn(conv(x)))
        t_fold = _time(lambda: folded(x))
    return t_plain / t_fold
