"""The input-output Jacobian of a stack of blocks, and what the identity term of a residual stack carries.

For a residual stack ``x_{l+1} = x_l + F_l(x_l)`` the chain rule gives

    d x_L / d x_l = (I + J_{L-1}) ... (I + J_l),     J_k = d F_k / d x_k,

whose expansion holds the identity ``I`` itself: the gradient at the top, ``g_L = dLoss/dx_L``,
reaches every lower block unchanged, plus the terms through the branches. A plain stack has the
product ``J_{L-1} ... J_l`` alone. That identity term is exact only when nothing acts on the stream after
the addition (the pre-activation MLPs). With a ReLU after the addition (the CIFAR-style CNNs) each factor
is ``D_l (I + J_l)``, ``D_l`` the 0/1 diagonal of the ReLU, and the identity term of the product is the
mask ``D_{L-1} ... D_l``: :func:`post_relu_pass_through` measures how much of the stream it keeps.
Chapter: *The gradient highway*.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from skipnet.runtime import eval_mode, train_mode as _mode

__all__ = ["stack_jacobian", "jacobian_singular_values", "stream_gradients", "identity_share", "post_relu_pass_through"]


def stack_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The Jacobian ``d x_L / d x_0`` of the block stack (stem and head excluded) at ONE example ``x``.

    ``x`` is a single input (no batch axis, e.g. (64,) for the digits MLP). The model runs in eval
    mode, so a BatchNorm layer is the fixed affine map of its running statistics and the Jacobian is
    a property of the example alone. Returns a (D_out, D_in) matrix, D = the flattened stream size.
    """
    with eval_mode(model):
        with torch.no_grad():
            h0 = model.embed(x.unsqueeze(0))[0]                       # (D,) or (C, H, W)

        def f(h: torch.Tensor) -> torch.Tensor:
            return model.blocks_forward(h.unsqueeze(0))[-1][0].flatten()

        J = torch.autograd.functional.jacobian(f, h0, vectorize=True)  # (D_out, *h0.shape)
    return J.reshape(J.shape[0], -1)


def jacobian_singular_values(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Singular values (descending) of :func:`stack_jacobian`: how much the stack stretches or
    squashes each direction. Near 1 for every direction: signals and gradients pass through intact."""
    return torch.linalg.svdvals(stack_jacobian(model, x)).double().numpy()


def stream_gradients(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                     train_mode: bool = True) -> list[torch.Tensor]:
    """``dLoss/dx_l`` at the input of every block and at the stack's output (``len(blocks) + 1``
    tensors, first block's input first). The loss is the mean cross-entropy of ``model(X)``."""
    with _mode(model, train_mode):
        hs = model.blocks_forward(model.embed(X))
        logits = model.readout(hs[-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        grads = torch.autograd.grad(loss, hs)
    return [g.detach() for g in grads]


def identity_share(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """How much of the gradient at each block's input is the top gradient ``g_L`` delivered unchanged.

    Returns ``(cosine, norm_ratio)``, one value a block input (bottom first): the cosine between
    ``dLoss/dx_l`` and ``g_L``, and ``||dLoss/dx_l|| / ||g_L||``. For a residual stack the identity
    term of the Jacobian puts ``g_L`` itself into every ``dLoss/dx_l``, so the cosine stays well
    above 0; in a plain stack nothing forces any alignment. The stream must keep one shape (an MLP).
    """
    grads = stream_gradients(model, X, y)
    top = grads[-1].flatten()
    if any(g.shape != grads[-1].shape for g in grads):
        raise ValueError("identity_share needs a stream of one shape (arch='mlp'); the CNN changes shape by stage")
    cos = np.array([F.cosine_similarity(g.flatten(), top, dim=0).item() for g in grads[:-1]])
    ratio = np.array([(g.norm() / top.norm()).item() for g in grads[:-1]])
    return cos, ratio


@torch.no_grad()
def post_relu_pass_through(model: nn.Module, X: torch.Tensor, train: bool = False,
                           per_relu: bool = False) -> list[tuple]:
    """For a network whose blocks end in a ReLU after the addition, one ``(per_block, through_stage)`` pair a
    stage (a run of blocks between shape changes): the mean share of stream entries the ReLU passes
    (``D_l = 1``), and the share that passes EVERY block of the stage, i.e. the non-zero share of the identity
    term ``prod D_l`` of the stage's Jacobian (a stage starts at the block that changes the shape).

    ``train=False`` runs in eval mode (BatchNorm's running statistics: at initialization almost the identity);
    ``train=True`` in train mode, with the batch's statistics, the state the first SGD step sees (on a copy, so
    the model's running statistics are untouched). ``per_relu=True`` returns ``(shares, through_stage)`` a stage
    instead, ``shares`` the list of each single ReLU's share."""
    out: list[tuple] = []
    net = copy.deepcopy(model) if train else model
    with torch.no_grad(), _mode(net, train):
        h = net.embed(X)
        per_block: list[float] = []
        alive = None
        for block in net.blocks:
            if alive is not None and (block.stride != 1 or block.c_in != block.c_out):
                out.append((list(per_block) if per_relu else float(np.mean(per_block)), alive.float().mean().item()))
                per_block, alive = [], None
            pre = block.branch(h) + block.shortcut(h)
            d = pre > 0
            per_block.append(d.float().mean().item())
            alive = d if alive is None else alive & d
            h = block.post(pre)
        out.append((list(per_block) if per_relu else float(np.mean(per_block)), alive.float().mean().item()))
    return out
