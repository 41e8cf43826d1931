import math

import matplotlib
import numpy as np
import pytest
import torch

from skipnet.models import build_model
from skipnet.probes.gradients import layer_grad_norms, first_last_ratio
from skipnet.plotting.core import plot_curves, draw_residual_block, figure_png
from skipnet.history import History


def test_layer_grad_norms_match_autograd_by_hand(digits):
    net = build_model(arch="cnn", depth=8, width=4, seed=0)
    X, y = digits.X_train[:32], digits.y_train[:32]
    norms = layer_grad_norms(net, X, y)
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(X), y).backward()
    by_hand = [w.weight.grad.norm().item() for _, w in net.main_layers()]
    assert np.allclose(norms, by_hand, rtol=1e-5)
    assert first_last_ratio(norms) == pytest.approx(net.stem.weight.grad.norm().item() /
                                                    net.head.weight.grad.norm().item(), rel=1e-5)
    assert layer_grad_norms(net, X, y, train_mode=False)[0] != norms[0]       # BatchNorm's statistics matter
    with pytest.raises(ValueError):
        first_last_ratio([1.0])


def test_curves_never_draw_nan_and_mark_divergence():
    ok = History(loss=[2.0, 1.0, 0.5], total_steps=3)
    bad = History(loss=[2.0, 3.0], total_steps=10, diverged_at=3)
    ax = plot_curves({"a": ok, "b": bad})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["a", "b (diverged at step 3)"]
    for line in ax.get_lines():
        assert np.all(np.isfinite(line.get_ydata()))
    with pytest.raises(ValueError, match="metric"):
        plot_curves({"a": ok}, metric="speed")


def test_block_diagram_is_drawn():
    ax = draw_residual_block()
    texts = " ".join(t.get_text() for t in ax.texts)
    assert texts.count("weight layer") == 2 and "+" in texts and "identity" in texts
    png = figure_png(ax.figure)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
