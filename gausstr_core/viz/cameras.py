"""Each camera's network-input image next to its input depth and the depth rendered from the Gaussians."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from gausstr_core.gaussians import Gaussians
from gausstr_core.predict import NetworkInputs
from gausstr_core.render import render_gaussians

MIN_ALPHA = 0.1  # rendered depth is shown only where the Gaussians cover at least this opacity


def rendered_depth(gaussians: Gaussians, inputs: NetworkInputs, input_size: tuple[int, int]) -> torch.Tensor:
    """Expected depth (N, H, W), m, of the Gaussians (B = 1) in every camera at input_size (H, W):
    accumulated depth / accumulated opacity, NaN where that opacity < MIN_ALPHA."""
    ones = gaussians.opacities.new_ones(*gaussians.opacities.shape, 1)
    out = render_gaussians(
        gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, ones,
        inputs.cam2ego[None], inputs.intrinsics[None], inputs.original_to_input[None], tuple(input_size),
    )
    alpha = out.alpha[0]
    return torch.where(alpha >= MIN_ALPHA, out.depth[0] / alpha.clamp(min=1e-6), torch.nan)


def draw_cameras(
    fig: Figure, inputs: NetworkInputs, gaussians: Gaussians, camera_names: list[str], input_size: tuple[int, int],
    max_depth: float = 51.2,
) -> None:
    """One row per camera: image | input depth | rendered depth (same colour scale, 0..max_depth m)."""
    rendered = rendered_depth(gaussians.to("cpu"), _to_cpu(inputs), input_size).numpy()
    columns = [("image", inputs.images), ("input depth", inputs.depths), ("rendered depth", rendered)]
    columns = [(name, values) for name, values in columns if values is not None]
    axes = fig.subplots(len(camera_names), len(columns), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.9, top=1 - 0.3 / fig.get_figheight(), bottom=0.01, wspace=0.03,
                        hspace=0.18)
    mappable = None
    for row, camera in enumerate(camera_names):
        for col, (name, values) in enumerate(columns):
            ax = axes[row, col]
            value = values[row]
            if name == "image":
                ax.imshow(value.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
            else:
                value = value.cpu().numpy() if isinstance(value, torch.Tensor) else value
                masked = np.ma.masked_invalid(np.where(value > 0, value, np.nan))
                mappable = ax.imshow(masked, cmap="turbo", vmin=0, vmax=max_depth, interpolation="nearest")
                ax.set_facecolor("black")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{camera}: {name}", fontsize=8)
    if mappable is not None:
        fig.colorbar(mappable, cax=fig.add_axes((0.92, 0.25, 0.015, 0.5)), label="depth (m)")


def _to_cpu(inputs: NetworkInputs) -> NetworkInputs:
    return NetworkInputs(*(None if v is None else v.cpu() for v in (
        inputs.images, inputs.depths, inputs.features, inputs.intrinsics, inputs.cam2ego, inputs.original_to_input)))
