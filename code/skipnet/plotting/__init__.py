"""Figures: ``plot_x(result, ax=None) -> Axes``. Plotting never trains.

``core`` holds what every chapter uses (training curves, the residual-block diagram, PNG export);
each chapter has a module of its own.
"""
from skipnet.plotting.core import plot_curves, draw_residual_block, figure_png, diverged_label, scrubber

__all__ = ["plot_curves", "draw_residual_block", "figure_png", "diverged_label", "scrubber"]
