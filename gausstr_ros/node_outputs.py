"""A Prediction -> the occupancy node's output messages (all in one header: base frame, first camera stamp)."""

from __future__ import annotations

from typing import Any

from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from gausstr_core.predict import Prediction
from gausstr_ros import marker_cdr
from gausstr_ros.gaussian_msgs import MarkerPublisherState, gaussian_array_msg, gaussian_markers
from gausstr_ros.msg import GaussianArray, SemanticOccupancy
from gausstr_ros.node_params import OUTPUT_PARAMETERS, NodeSettings, settings_class
from gausstr_ros.occupancy_msgs import bev_occupancy_grid, occupied_points_msg, semantic_occupancy_msg

# topic (relative to the node, "~/" + key) -> message type of every output built here
OUTPUT_TYPES = {
    "occupancy": SemanticOccupancy,
    "occupancy/points": PointCloud2,
    "occupancy/bev": OccupancyGrid,
    "gaussians": GaussianArray,
    "gaussians/markers": MarkerArray,
}
OUTPUT_TOPICS = tuple(OUTPUT_TYPES)


OutputOptions = settings_class(
    "OutputOptions", OUTPUT_PARAMETERS,
    "Which optional outputs to build and their caps: the node's output parameters (group 'outputs' of "
    "gausstr_ros.node_params.PARAMETERS, with its defaults).", __name__)


def output_options(settings: NodeSettings) -> OutputOptions:
    """The output parameters of the node's settings."""
    return OutputOptions(**{name: getattr(settings, name) for name in OUTPUT_PARAMETERS})


def build_outputs(
    prediction: Prediction, header: Header, options: OutputOptions, marker_state: MarkerPublisherState
) -> dict[str, Any]:
    """OUTPUT_TYPES key -> message; ~/occupancy always, the others as `options` enable them. The markers are
    serialized bytes (marker_cdr) where this distribution's Marker layout is the one encoded there."""
    labels = prediction.labels.cpu().numpy()
    names, free, grid = prediction.class_names, prediction.free_label, prediction.grid
    out: dict[str, Any] = {
        "occupancy": semantic_occupancy_msg(labels, grid, names, free, header, prediction.confidence.cpu().numpy())
    }
    if options.publish_points:
        out["occupancy/points"] = occupied_points_msg(labels, grid, names, free, header, options.max_points)
    if options.publish_bev:
        obstacles = [names.index(c) for c in options.bev_obstacle_classes if c in names]
        band = (options.bev_z_min, options.bev_z_max)
        out["occupancy/bev"] = bev_occupancy_grid(labels, grid, obstacles, band, header)
    if options.publish_gaussians or options.publish_markers:
        g = prediction.gaussians
        means, scales, quats, opacities = (t[0].detach().float().cpu().numpy()
                                           for t in (g.means, g.scales, g.quats, g.opacities))
        gaussian_labels = prediction.gaussian_labels.cpu().numpy()
        if options.publish_gaussians:
            confidences = prediction.class_probs.max(-1).values.float().cpu().numpy()
            out["gaussians"] = gaussian_array_msg(means, scales, quats, opacities, gaussian_labels, confidences,
                                                  names, header)
        if options.publish_markers:
            out["gaussians/markers"] = gaussian_markers(
                means, scales, quats, opacities, gaussian_labels, names, header, marker_state,
                serialized=marker_cdr.layout_matches(),
                sigma_k=options.marker_sigma_k, max_markers=options.max_markers,
            )
    return out
