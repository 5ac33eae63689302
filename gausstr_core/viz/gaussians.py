"""Gaussians drawn as ellipses in the bird's-eye view (their x-y marginal)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.patches import Ellipse

from gausstr_core.grid import VoxelGrid
from gausstr_core.viz.occupancy import setup_bev_axes


def bev_ellipses(means: np.ndarray, covariances: np.ndarray, sigma: float = 1.0) -> list[Ellipse]:
    """Ellipses of the x-y marginals in bird's-eye axes (horizontal = ego y, vertical = ego x).

    means (G, 3) ego frame, m; covariances (G, 3, 3) m^2; `sigma` standard deviations wide.
    """
    marginal = covariances[:, :2, :2][:, ::-1, ::-1]  # (y, x) order = (horizontal, vertical)
    values, vectors = np.linalg.eigh(marginal)  # ascending
    major = vectors[:, :, 1]
    angles = np.degrees(np.arctan2(major[:, 1], major[:, 0]))
    widths = 2 * sigma * np.sqrt(np.clip(values[:, 1], 0, None))
    heights = 2 * sigma * np.sqrt(np.clip(values[:, 0], 0, None))
    return [Ellipse((m[1], m[0]), w, h, angle=a) for m, w, h, a in zip(means, widths, heights, angles)]


def draw_gaussians_bev(
    ax: Axes, means: np.ndarray, covariances: np.ndarray, opacities: np.ndarray, colors: np.ndarray,
    grid: VoxelGrid, title: str, sigma: float = 1.0,
) -> None:
    """1-sigma ellipses coloured by class (colors (G, 3) uint8), alpha = opacity; the most opaque on top."""
    order = np.argsort(opacities)
    rgba = np.concatenate([colors[order] / 255.0, 0.15 + 0.75 * opacities[order, None]], axis=1)
    collection = PatchCollection(bev_ellipses(means[order], covariances[order], sigma), facecolors=rgba,
                                 edgecolors=rgba, linewidths=0.3)
    ax.add_collection(collection)
    ax.set_facecolor((0.1, 0.1, 0.1))
    setup_bev_axes(ax, grid, f"{title} ({len(means)} Gaussians, {sigma:g} sigma)")
