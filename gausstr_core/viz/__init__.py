"""Pictures of predictions (matplotlib, no display needed): occupancy, Gaussians, camera depth."""

from gausstr_core.viz.figures import save_prediction_figures

__all__ = ["save_prediction_figures"]
