"""Interactive labs for a live kernel (Binder or a local JupyterLab). The only subpackage that imports ipywidgets.

Every lab is a thin shell over tested experiment functions: it collects parameters, calls an
experiment in a background thread (so the Stop button stays responsive), shows progress, and plots.
``base.Lab`` holds the machinery; each chapter has a module of its own: ``degradation`` (the opening chapter),
``highway``, ``identity``, ``ensemble``, ``transformers``.
"""
__all__ = ["base", "degradation", "highway", "identity", "ensemble", "transformers"]
