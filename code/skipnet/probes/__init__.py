"""Measurements that carry the intuition. One module a topic:

* ``gradients``: per-layer gradient norms (the opening chapter, *The gradient highway*).
* ``jacobian``, ``shattering``, ``landscape``: the stack's Jacobian and its identity term, shattered
  gradients, filter-normalized loss slices (*The gradient highway*).
* ``lesions``, ``paths``, ``streams``: deleting and reordering blocks, gradient by path length, branch
  sizes and linear probes of the stream (*An ensemble of relatively shallow paths*).
* ``branches``: per-example branch size and turning angle of each block, gate openness (*The identity mapping*).
"""
from skipnet.probes.gradients import layer_grad_norms, first_last_ratio
from skipnet.probes.jacobian import stack_jacobian, jacobian_singular_values, stream_gradients, identity_share
from skipnet.probes.shattering import input_gradients, autocorrelation
from skipnet.probes.landscape import filter_normalized_direction, loss_surface
from skipnet.probes.lesions import LesionEvaluator, lesioned_accuracy, lesioned_blocks
from skipnet.probes.paths import PathGraph, binomial_length_counts, enumerated_length_counts
from skipnet.probes.streams import branch_stream_ratios, linear_probe_accuracies

__all__ = ["layer_grad_norms", "first_last_ratio"]
__all__ += ["stack_jacobian", "jacobian_singular_values", "stream_gradients", "identity_share",
            "input_gradients", "autocorrelation", "filter_normalized_direction", "loss_surface"]
__all__ += ["LesionEvaluator", "lesioned_accuracy", "lesioned_blocks", "PathGraph", "binomial_length_counts",
            "enumerated_length_counts", "branch_stream_ratios", "linear_probe_accuracies"]
from skipnet.probes.branches import BranchStats, branch_stats, gate_openness  # noqa: E402

__all__ += ["BranchStats", "branch_stats", "gate_openness"]
