"""Named experiments: functions of (config, seed) that train or measure and return plain data (dataclasses,
arrays, dicts, :class:`~skipnet.history.Run` records). No plotting. The functions that state a chapter's claims over
its stored sweeps (the chapter families, ``ensemble_claims``, the ``verdict`` modules) read ``book/data`` through
:mod:`skipnet.store` and are pure functions of those records; the others compute what they return.

One module a chapter, or a chapter part: ``degradation`` (the opening chapter); ``highway``, ``highway_chi``,
``highway_trained``; ``identity``, ``identity_variants``, ``identity_sum``; ``ensemble``, ``ensemble_trials``,
``ensemble_claims``; ``transformers``, ``transformers_warmup``, ``transformers_rnn``; ``verdict`` with
``verdict_base``, ``verdict_rules`` and ``verdict_controls`` (the closing chapter). Import from the module itself.
"""
__all__ = ["degradation", "highway", "highway_chi", "highway_trained", "identity", "identity_variants", "identity_sum",
           "ensemble", "ensemble_trials", "ensemble_claims", "transformers", "transformers_warmup",
           "transformers_rnn", "verdict", "verdict_base", "verdict_rules", "verdict_controls"]
