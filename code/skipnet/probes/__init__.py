"""Measurements that carry the intuition. One module a topic:

* ``gradients``: per-layer gradient norms (the opening chapter, *The gradient highway*).
* ``jacobian``, ``shattering``, ``landscape``: the stack's Jacobian and its identity term, shattered
  gradients, filter-normalized loss slices (*The gradient highway*).
"""
from skipnet.probes.gradients import layer_grad_norms, first_last_ratio
from skipnet.probes.jacobian import stack_jacobian, jacobian_singular_values, stream_gradients, identity_share
from skipnet.probes.shattering import input_gradients, autocorrelation
from skipnet.probes.landscape import filter_normalized_direction, loss_surface

__all__ = ["layer_grad_norms", "first_last_ratio"]
__all__ += ["stack_jacobian", "jacobian_singular_values", "stream_gradients", "identity_share",
            "input_gradients", "autocorrelation", "filter_normalized_direction", "loss_surface"]
