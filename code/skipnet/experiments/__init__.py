"""Named, pure experiments: functions of (config, seed) that return plain data. No plotting, no I/O.

One module a chapter: ``degradation`` (the opening chapter), ``highway``, ``identity``,
``ensemble``, ``transformers``.
"""
