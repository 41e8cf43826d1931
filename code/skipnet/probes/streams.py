"""What the residual stream carries: the size of each branch relative to the stream, and how much
of the answer a linear read-out finds after each block.

Chapter: *An ensemble of relatively shallow paths* (the "useful noise" question; Greff et al. 2017
read the same measurements as unrolled iterative estimation).
"""
from __future__ import annotations

import numpy as np
import torch

from skipnet.checks import check_int
from skipnet.models import ResidualNet
from skipnet.runtime import eval_mode

__all__ = ["branch_stream_ratios", "block_representations", "ridge_probe_accuracy", "principal_components",
           "linear_probe_accuracies"]


@torch.no_grad()
def branch_stream_ratios(model: ResidualNet, X: torch.Tensor) -> np.ndarray:
    """Per block, ||branch(x)|| / ||shortcut(x)|| over the whole batch (Frobenius norms, eval mode): (n_blocks,)."""
    with eval_mode(model):
        states = model.blocks_forward(model.embed(X))
        return np.array([(block.branch(x).norm() / block.shortcut(x).norm().clamp_min(1e-12)).item()
                         for block, x in zip(model.blocks, states)])


@torch.no_grad()
def block_representations(model: ResidualNet, X: torch.Tensor, pooled: bool = True) -> list[torch.Tensor]:
    """The stream after the stem and after each block, as (N, features): global-average-pooled over
    space when ``pooled`` (what the classifier head reads), flattened otherwise."""
    with eval_mode(model):
        reps = model.blocks_forward(model.embed(X))
    if pooled:
        return [r.mean(dim=(2, 3)) if r.dim() == 4 else r for r in reps]            # (N, C)
    return [r.flatten(1) for r in reps]                                             # (N, C*H*W)


def ridge_probe_accuracy(Z_train: torch.Tensor, y_train: torch.Tensor, Z_test: torch.Tensor, y_test: torch.Tensor,
                         n_classes: int, ridge: float = 1e-2) -> float:
    """Test accuracy of a ridge-regression classifier (one-hot targets, closed form) fitted on the training features."""
    mu, sd = Z_train.mean(0), Z_train.std(0).clamp_min(1e-6)
    A = torch.cat([(Z_train - mu) / sd, torch.ones(len(Z_train), 1)], 1).double()   # (N, D+1)
    B = torch.cat([(Z_test - mu) / sd, torch.ones(len(Z_test), 1)], 1).double()
    T = torch.nn.functional.one_hot(y_train, n_classes).double()                    # (N, n_classes)
    reg = ridge * len(A) * torch.eye(A.shape[1], dtype=torch.float64)
    W = torch.linalg.solve(A.T @ A + reg, A.T @ T)
    return ((B @ W).argmax(1) == y_test).double().mean().item()


def principal_components(Z_train: torch.Tensor, Z_test: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both feature sets projected onto the ``dims`` leading principal directions of the training features."""
    mu = Z_train.mean(0)
    _, _, V = torch.linalg.svd((Z_train - mu).double(), full_matrices=False)      # rows of V: directions
    P = V[:dims].T.to(Z_train.dtype)                                                # (D, dims)
    return (Z_train - mu) @ P, (Z_test - mu) @ P


def linear_probe_accuracies(model: ResidualNet, X_train: torch.Tensor, y_train: torch.Tensor, X_test: torch.Tensor,
                            y_test: torch.Tensor, pooled: bool = True, dims: int | None = None) -> np.ndarray:
    """Linear-probe test accuracy of the stream after the stem (entry 0) and after each block: (n_blocks + 1,).

    ``dims`` fixes the probe's input size: the features are first projected onto their ``dims`` leading principal
    components, so that a stage with more channels does not get a bigger probe."""
    n_classes = model.cfg.n_classes
    train_reps = block_representations(model, X_train, pooled)
    test_reps = block_representations(model, X_test, pooled)
    if dims is not None:
        check_int("dims", dims, 1, min(r.shape[1] for r in train_reps))
        pairs = [principal_components(a, b, dims) for a, b in zip(train_reps, test_reps)]
        train_reps, test_reps = [a for a, _ in pairs], [b for _, b in pairs]
    return np.array([ridge_probe_accuracy(a, y_train, b, y_test, n_classes) for a, b in zip(train_reps, test_reps)])
