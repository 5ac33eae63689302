"""Semantic occupancy -> ROS messages (numpy only, no Python loops over voxels).

labels: (X, Y, Z) uint8 class indices over `grid` (x-major, base_link frame), indexing
class_names; `free_label` marks empty voxels.
"""

from __future__ import annotations

import array
from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Point
from nav_msgs.msg import MapMetaData, OccupancyGrid
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from gausstr_core.grid import VoxelGrid
from gausstr_core.palette import class_colors
from gausstr_ros.msg import SemanticOccupancy

DEFAULT_MAX_POINTS = 15000  # RViz "Boxes" slow down badly from ~20k boxes (ros2/rviz#790)

POINT_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("label", "<u4")]
)  # 20 bytes per point, the layout of PointCloud2 `occupied_points_msg` writes
POINT_FIELDS = [
    PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
    PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
    PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
    PointField(name="label", offset=16, datatype=PointField.UINT32, count=1),
]


def _check_labels(labels: np.ndarray, grid: VoxelGrid, num_classes: int, free_label: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != tuple(grid.dims):
        raise ValueError(f"labels shape {labels.shape} does not match grid dims {grid.dims}")
    if labels.dtype != np.uint8:
        raise ValueError(f"labels must be uint8 class indices, got {labels.dtype}")
    if not 0 <= free_label < num_classes:
        raise ValueError(f"free_label {free_label} is not an index into {num_classes} class names")
    if labels.size and int(labels.max()) >= num_classes:
        raise ValueError(f"label {int(labels.max())} has no class name (only {num_classes} names)")
    return labels


def semantic_occupancy_msg(
    labels: np.ndarray,
    grid: VoxelGrid,
    class_names: Sequence[str],
    free_label: int,
    header: Header,
    confidence: np.ndarray | None = None,
) -> SemanticOccupancy:
    """Dense SemanticOccupancy; confidence: optional (X, Y, Z) probability of each voxel's label."""
    labels = _check_labels(labels, grid, len(class_names), free_label)
    msg = SemanticOccupancy(header=header, voxel_size=float(grid.size), free_label=int(free_label))
    msg.origin = Point(x=grid.min_corner[0], y=grid.min_corner[1], z=grid.min_corner[2])
    msg.dims_x, msg.dims_y, msg.dims_z = (int(d) for d in grid.dims)
    msg.labels = np.ascontiguousarray(labels).tobytes()  # C order over [x, y, z] = x-major
    msg.class_names = list(class_names)
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float32)
        if confidence.shape != labels.shape:
            raise ValueError(f"confidence shape {confidence.shape} does not match labels {labels.shape}")
        msg.confidence = array.array("f", np.ascontiguousarray(confidence).tobytes())
    return msg


def packed_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) float32 whose bits are 0x00RRGGBB (PointCloud2 `rgb` as RViz reads it)."""
    colors = np.asarray(colors, dtype=np.uint32)
    return ((colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]).astype("<u4").view("<f4")


def occupied_points_msg(
    labels: np.ndarray,
    grid: VoxelGrid,
    class_names: Sequence[str],
    free_label: int,
    header: Header,
    max_points: int = DEFAULT_MAX_POINTS,
) -> PointCloud2:
    """PointCloud2 (x, y, z, rgb, label) of the centres of non-free voxels, header frame, m.

    At most `max_points`: beyond that the voxels nearest to the frame origin (ego) are kept.
    Points are in x-major voxel order.
    """
    labels = _check_labels(labels, grid, len(class_names), free_label)
    if max_points < 0:
        raise ValueError(f"max_points must be >= 0, got {max_points}")
    flat = np.flatnonzero(labels.ravel() != free_label)
    axes = [np.float32(lo) + (np.arange(n, dtype=np.float32) + 0.5) * np.float32(grid.size)
            for lo, n in zip(grid.min_corner, labels.shape)]
    x, y, z = (axis[index] for axis, index in zip(axes, np.unravel_index(flat, labels.shape)))
    if len(flat) > max_points:
        keep = np.sort(np.argpartition(x * x + y * y + z * z, max_points - 1)[:max_points]) if max_points else []
        flat, x, y, z = flat[keep], x[keep], y[keep], z[keep]
    point_labels = labels.ravel()[flat]
    points = np.empty(len(flat), dtype=POINT_DTYPE)
    points["x"], points["y"], points["z"] = x, y, z
    points["rgb"] = packed_rgb(class_colors(class_names))[point_labels]
    points["label"] = point_labels
    return PointCloud2(
        header=header, height=1, width=len(points), fields=POINT_FIELDS, is_bigendian=False,
        point_step=POINT_DTYPE.itemsize, row_step=POINT_DTYPE.itemsize * len(points), is_dense=True,
        data=points.tobytes(),
    )


def bev_occupancy_grid(
    labels: np.ndarray,
    grid: VoxelGrid,
    obstacle_labels: Sequence[int],
    z_band: tuple[float, float],
    header: Header,
    unknown: np.ndarray | None = None,
) -> OccupancyGrid:
    """Bird's-eye nav_msgs/OccupancyGrid: 100 where a column holds an obstacle-class voxel whose
    centre z lies in z_band (m, header frame), else 0; -1 where `unknown` ((X, Y) bool) is set.

    Cell (col, row) = voxel column (i, j): width = dims_x, height = dims_y, origin at the grid's
    min corner (z = 0), resolution = voxel size.
    """
    labels = np.asarray(labels)
    if labels.shape != tuple(grid.dims):
        raise ValueError(f"labels shape {labels.shape} does not match grid dims {grid.dims}")
    z_min, z_max = z_band
    if z_max < z_min:
        raise ValueError(f"z_band must be (z_min, z_max) with z_min <= z_max, got {z_band}")
    z_centres = grid.min_corner[2] + (np.arange(labels.shape[2]) + 0.5) * grid.size
    in_band = (z_centres >= z_min) & (z_centres <= z_max)
    is_obstacle = np.zeros(max(256, int(labels.max(initial=0)) + 1), dtype=bool)
    is_obstacle[np.asarray(list(obstacle_labels), dtype=np.int64)] = True
    obstacle = is_obstacle[labels[:, :, in_band]].any(axis=2)
    cells = np.where(obstacle, np.int8(100), np.int8(0))
    if unknown is not None:
        unknown = np.asarray(unknown, dtype=bool)
        if unknown.shape != obstacle.shape:
            raise ValueError(f"unknown mask shape {unknown.shape} does not match the grid columns {obstacle.shape}")
        cells[unknown] = -1
    info = MapMetaData(map_load_time=header.stamp, resolution=float(grid.size), width=labels.shape[0],
                       height=labels.shape[1])
    info.origin.position.x, info.origin.position.y = grid.min_corner[0], grid.min_corner[1]
    info.origin.orientation.w = 1.0
    return OccupancyGrid(header=header, info=info, data=array.array("b", np.ascontiguousarray(cells.T).tobytes()))
