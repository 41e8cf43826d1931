"""Measurements that carry the intuition. One module a topic:

* ``gradients``: per-layer gradient norms (the opening chapter, *The gradient highway*).
"""
from skipnet.probes.gradients import layer_grad_norms, first_last_ratio

__all__ = ["layer_grad_norms", "first_last_ratio"]
