"""Occupancy grids drawn as a bird's-eye view and as an oblique 3D voxel cloud.

Bird's-eye axes follow the ego frame seen from above: x (forward) up, y (left) to the left.
Colours come from a (K, 3) uint8 table indexed by the grid's labels.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gausstr_core.grid import VoxelGrid

BACKGROUND = np.array([24, 24, 24], dtype=np.uint8)  # columns without any occupied voxel


def top_labels(labels: np.ndarray, free_label: int) -> np.ndarray:
    """(X, Y, Z) labels -> (X, Y) label of the highest non-free voxel of each column, -1 where none."""
    occupied = labels != free_label
    highest = labels.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2)
    top = np.take_along_axis(labels, highest[..., None], axis=2)[..., 0].astype(np.int64)
    return np.where(occupied.any(axis=2), top, -1)


def setup_bev_axes(ax: Axes, grid: VoxelGrid, title: str) -> None:
    """Axes in ego metres: horizontal = y (left side on the left), vertical = x (forward up)."""
    x0, y0, _, x1, y1, _ = grid.range
    ax.set_xlim(y1, y0)
    ax.set_ylim(x0, x1)
    ax.set_aspect("equal")
    ax.set_xlabel("y (m, left +)")
    ax.set_ylabel("x (m, forward +)")
    ax.set_title(title)
    ax.plot([0], [0], marker="^", color="white", markeredgecolor="black", markersize=7)


def draw_bev(ax: Axes, labels: np.ndarray, free_label: int, colors: np.ndarray, grid: VoxelGrid, title: str) -> None:
    """Top-most class of each column; labels (X, Y, Z) [x, y, z], colors (K, 3) uint8."""
    top = top_labels(labels, free_label)
    image = np.where(top[..., None] >= 0, colors[np.clip(top, 0, None)], BACKGROUND)
    x0, y0, _, x1, y1, _ = grid.range
    ax.imshow(image, origin="lower", extent=(y0, y1, x0, x1), interpolation="nearest")
    setup_bev_axes(ax, grid, title)


def draw_voxels_3d(
    ax: Axes, labels: np.ndarray, free_label: int, colors: np.ndarray, grid: VoxelGrid, title: str,
    max_points: int = 15000, seed: int = 0,
) -> None:
    """Occupied voxel centres as an oblique 3D scatter (a seeded subsample of at most max_points).

    ax must be a 3D axes (projection='3d'); z is stretched x2 for legibility.
    """
    index = np.argwhere(labels != free_label)
    if len(index) > max_points:
        index = index[np.sort(np.random.default_rng(seed).choice(len(index), max_points, replace=False))]
    centres = np.asarray(grid.min_corner) + (index + 0.5) * grid.size
    values = labels[tuple(index.T)].astype(np.int64)
    ax.scatter(centres[:, 0], centres[:, 1], centres[:, 2], c=colors[values] / 255.0, marker="s", s=2,
               depthshade=False, linewidths=0)
    setup_3d_axes(ax, grid, f"{title} ({len(index)} voxels drawn)")


def setup_3d_axes(ax: Axes, grid: VoxelGrid, title: str) -> None:
    """3D axes over the grid volume in ego metres, oblique view from behind-left, z stretched x2."""
    x0, y0, z0, x1, y1, z1 = grid.range
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_zlim(z0, z1)
    ax.set_box_aspect((x1 - x0, y1 - y0, 2 * (z1 - z0)))
    ax.view_init(elev=40, azim=-150)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    ax.set_title(title)


def add_class_legend(fig: Figure, entries: dict[str, np.ndarray], columns: int = 6) -> None:
    """Legend along the bottom (class name -> (3,) uint8 colour); leaves room for it and the x labels."""
    rows = -(-len(entries) // columns)
    fig.subplots_adjust(bottom=(0.55 + 0.22 * rows) / fig.get_figheight())
    handles = [Patch(facecolor=np.asarray(c) / 255.0, edgecolor="black", label=n) for n, c in entries.items()]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(columns, len(handles)), fontsize=8, frameon=False)
