"""Pictures of one query answer: a bird's-eye heat map and a 3D view of the relevance, next to the cameras.

One figure per prompt: bird's-eye view of the highest relevance of each voxel column (0..1, the
threshold drawn in the colour bar, clusters numbered at their centroids), an oblique 3D view of the
voxels above the threshold coloured by relevance, and the network-input camera images.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from gausstr_core.grid import VoxelGrid
from gausstr_core.query import QueryAnswer
from gausstr_core.viz.occupancy import setup_3d_axes, setup_bev_axes

CMAP = "inferno"


def draw_query_figure(
    fig: Figure, answer: QueryAnswer, grid: VoxelGrid, images: np.ndarray | None = None,
    camera_names: list[str] | None = None, max_points: int = 15000,
) -> None:
    """Fill `fig`: heat map | 3D relevant voxels, then the cameras below.

    images: (N, H, W, 3) float in [0, 1] network-input camera images (or None), named by camera_names.
    """
    relevance = answer.relevance.detach().float().cpu().numpy()
    cameras = 0 if images is None else len(images)
    camera_rows = -(-cameras // 3)
    spec = fig.add_gridspec(1 + camera_rows, 6, height_ratios=[3.2] + [1.0] * camera_rows, left=0.05, right=0.97,
                            top=0.93, bottom=0.03, hspace=0.3, wspace=0.3)
    fig.suptitle(f"{answer.prompt!r}: max relevance {answer.max_relevance:.2f}, {len(answer.clusters)} clusters "
                 f"above {answer.threshold:g}")

    ax = fig.add_subplot(spec[0, :3])
    x0, y0, _, x1, y1, _ = grid.range
    heat = ax.imshow(relevance.max(axis=2), origin="lower", extent=(y0, y1, x0, x1), cmap=CMAP, vmin=0, vmax=1,
                     interpolation="nearest")
    setup_bev_axes(ax, grid, "bird's-eye view: highest relevance per column")
    for rank, cluster in enumerate(answer.clusters, 1):
        x, y, _ = cluster.centroid
        ax.annotate(str(rank), (y, x), color="cyan", fontsize=9, ha="center", va="center", fontweight="bold")
    bar = fig.colorbar(heat, ax=ax, fraction=0.04, pad=0.02, label="relevance")
    bar.ax.axhline(answer.threshold, color="cyan", linewidth=1)

    ax3 = fig.add_subplot(spec[0, 3:], projection="3d")
    centres, values = answer.relevant_voxels(grid)
    centres, values = centres[:max_points], values[:max_points]
    ax3.scatter(centres[:, 0], centres[:, 1], centres[:, 2], c=values, cmap=CMAP, vmin=0, vmax=1, marker="s", s=3,
                depthshade=False, linewidths=0)
    setup_3d_axes(ax3, grid, f"voxels above {answer.threshold:g} ({len(values)} drawn)")

    for index in range(cameras):
        cam = fig.add_subplot(spec[1 + index // 3, 2 * (index % 3): 2 * (index % 3) + 2])
        cam.imshow(np.clip(images[index], 0, 1))
        cam.set_xticks([])
        cam.set_yticks([])
        cam.set_title(camera_names[index] if camera_names else f"camera {index}", fontsize=8)
