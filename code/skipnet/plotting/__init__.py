"""Figures: ``plot_x(result, ax=None) -> Axes``. Plotting never trains and computes no result a claim rests on:
the numbers come from :mod:`skipnet.experiments`, the text tables from :mod:`skipnet.tables`.

``core`` holds what every chapter uses (:func:`~skipnet.plotting.core.finish_axes`, the house style's last lines
of a panel; training curves; the residual block drawn by code; PNG export; the kernel-free scrubber). Then one
module a chapter or chapter part: ``degradation`` (the opening chapter), ``highway``, ``identity``,
``identity_variants``, ``identity_sum``, ``ensemble``, ``ensemble_trials``, ``transformers``,
``transformers_inside``, ``verdict``. Import from the module itself.
"""
__all__ = ["core", "degradation", "highway", "identity", "identity_variants", "identity_sum", "ensemble",
           "ensemble_trials", "transformers", "transformers_inside", "verdict"]
