"""Measurements that carry the intuition: one module a topic, each a set of functions of a network (and data)
that return numbers. Import from the module itself (``from skipnet.probes.lesions import LesionEvaluator``).

*The gradient highway* (and the opening chapter):

* ``gradients``: per-layer weight-gradient norms and the stream gradient at every block;
* ``jacobian``: the stack's input-output Jacobian, its singular values and the share the identity term carries;
* ``meanfield``: mean-field predictions of the gradient at initialization (the chi phase diagram);
* ``shattering``: ``df/dx`` along a 1-D input sweep and its autocorrelation (shattered gradients);
* ``landscape``: filter-normalized 2-D slices of the loss; ``hessian``: the Hessian's extreme eigenvalues.

*The identity mapping*:

* ``branches``: each block's branch size and turning angle, gate openness, the product of 1x1 shortcuts;
* ``decode``: what linear probes can still read from the stream after l blocks.

*An ensemble of relatively shallow paths*:

* ``lesions``: deleting and reordering blocks at test time; ``replace``: replacing a branch's output;
* ``paths``: the 2^n paths and the gradient by path length; ``path_spectrum``: its exact spectrum by a backward
  dynamic programme;
* ``streams``: branch sizes relative to the stream and linear probes of the class after each block.

*Residual connections in Transformers (and the RNN question)*:

* ``rank``: rank collapse of token representations; ``logit_lens``: reading a trained encoder's stream;
* ``through_time``: the gradient reaching each time step of a recurrent network.
"""
__all__ = ["gradients", "jacobian", "meanfield", "shattering", "landscape", "hessian", "branches", "decode",
           "lesions", "replace", "paths", "path_spectrum", "streams", "rank", "logit_lens", "through_time"]
