"""How much gradient reaches each time step of a recurrent network (the "depth" of an RNN is time).

Chapter: *Residual connections in Transformers (and the RNN question)*.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["grad_through_time"]


def grad_through_time(model, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """``||dL / d s_t||`` for every step t (mean over the batch), where ``s_t`` is the state the
    recurrence carries (the LSTM's cell state, the tanh RNN's hidden state) and L the cross-entropy
    of the read-out at the last step. Returns an array of length T (first step first)."""
    h, kept = model.run(X)
    loss = F.cross_entropy(model.head(h), y)
    grads = torch.autograd.grad(loss, kept, allow_unused=True)
    return np.array([g.norm(dim=1).mean().item() if g is not None else 0.0 for g in grads])
