"""PNG pictures of one prediction: occupancy vs ground truth, Gaussians, camera depth.

Files (each with the given prefix): bev.png (top-most class per column, prediction | ground truth),
voxels_3d.png (oblique 3D voxel view, prediction | ground truth), gaussians_bev.png (Gaussians as
1-sigma ellipses coloured by class), cameras.png (per camera: image | input depth | rendered depth;
only with the camera inputs). The ground truth is shown inside its camera mask (the voxels scored).
Figures are drawn without pyplot (no display, no global state) and laid out by hand (constrained
layout doubles the drawing time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from gausstr_core.data.occ3d import FREE_ID, OCC3D_CLASSES, Occ3DLabels
from gausstr_core.palette import class_colors
from gausstr_core.predict import NetworkInputs, Prediction
from gausstr_core.viz.cameras import draw_cameras
from gausstr_core.viz.gaussians import draw_gaussians_bev
from gausstr_core.viz.occupancy import add_class_legend, draw_bev, draw_voxels_3d

DPI = 90


def save_prediction_figures(
    out_dir: str | Path,
    prediction: Prediction,
    *,
    truth: Occ3DLabels | None = None,
    inputs: NetworkInputs | None = None,
    camera_names: list[str] | None = None,
    input_size: tuple[int, int] | None = None,
    prefix: str = "",
) -> list[Path]:
    """Write the PNGs listed in the module docstring into out_dir; returns their paths.

    truth: Occ3D labels of the same sample (None: prediction only). inputs, camera_names,
    input_size (H, W): the prepared camera views, for cameras.png.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = prediction.grid
    colors = class_colors(prediction.class_names)
    panels = [("prediction", prediction.labels.cpu().numpy(), prediction.free_label, colors, prediction.class_names)]
    if truth is not None:
        visible = np.where(truth.mask_camera, truth.semantics, FREE_ID)
        panels.append(("ground truth (camera mask)", visible, FREE_ID, class_colors(OCC3D_CLASSES), OCC3D_CLASSES))
    legend = {}
    for _, labels, free, table, names in panels:
        for value in np.unique(labels):
            if value != free:
                legend[names[value]] = table[value]
    written = []

    fig = Figure(figsize=(6 * len(panels), 7))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.95, wspace=0.25)
    for i, (title, labels, free, table, _) in enumerate(panels):
        draw_bev(fig.add_subplot(1, len(panels), i + 1), labels, free, table, grid, f"{title}: bird's-eye view")
    add_class_legend(fig, legend)
    written.append(_save(fig, out_dir / f"{prefix}bev.png"))

    fig = Figure(figsize=(7 * len(panels), 5.5))
    fig.subplots_adjust(left=0.0, right=1.0, top=0.92, wspace=0.05)
    for i, (title, labels, free, table, _) in enumerate(panels):
        draw_voxels_3d(fig.add_subplot(1, len(panels), i + 1, projection="3d"), labels, free, table, grid, title)
    add_class_legend(fig, legend)
    written.append(_save(fig, out_dir / f"{prefix}voxels_3d.png"))

    gaussians = prediction.gaussians.to("cpu")
    fig = Figure(figsize=(7, 8))
    fig.subplots_adjust(left=0.12, right=0.96, top=0.95)
    labels = prediction.gaussian_labels.cpu().numpy()
    draw_gaussians_bev(
        fig.add_subplot(1, 1, 1), gaussians.means[0].numpy(), gaussians.covariances[0].numpy(),
        gaussians.opacities[0].numpy(), colors[labels], grid, "Gaussians by class",
    )
    add_class_legend(fig, {prediction.class_names[v]: colors[v] for v in np.unique(labels)}, columns=4)
    written.append(_save(fig, out_dir / f"{prefix}gaussians_bev.png"))

    if inputs is not None:
        if camera_names is None or input_size is None:
            raise ValueError("save_prediction_figures: camera pictures need camera_names and input_size")
        fig = Figure(figsize=(11, 2.1 * len(camera_names) + 0.4))
        draw_cameras(fig, inputs, prediction.gaussians, list(camera_names), input_size)
        written.append(_save(fig, out_dir / f"{prefix}cameras.png"))
    return written


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path
