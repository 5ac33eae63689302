"""Differentiable splatting of Gaussians into cameras: gsplat on CUDA, pure PyTorch anywhere."""

from gausstr_core.render.projection import ProjectedGaussians, project_gaussians
from gausstr_core.render.render import BACKENDS, RenderOutput, render_gaussians

__all__ = ["BACKENDS", "ProjectedGaussians", "RenderOutput", "project_gaussians", "render_gaussians"]
