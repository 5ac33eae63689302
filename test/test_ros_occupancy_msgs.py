"""SemanticOccupancy / PointCloud2 / OccupancyGrid builders, checked against the documented layouts."""

from __future__ import annotations

import numpy as np
import pytest
from nav_msgs.msg import OccupancyGrid
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2

from gausstr_core.data.occ3d import OCC3D_CLASSES as OCC3D_CLASS_NAMES
from gausstr_core.grid import VoxelGrid
from gausstr_core.palette import OCC3D_COLORS
from gausstr_ros.msg import SemanticOccupancy
from gausstr_ros.occupancy_msgs import bev_occupancy_grid, occupied_points_msg, semantic_occupancy_msg
from gausstr_ros.stamps import make_header

GRID = VoxelGrid(range=(-4.0, -2.0, -1.0, 4.0, 2.0, 1.4), size=0.4)  # 20 x 10 x 6
FREE = 17
HEADER = make_header("base_link", 1_533_151_603_512_404_000)


def empty() -> np.ndarray:
    return np.full(GRID.dims, FREE, dtype=np.uint8)


def centre(i: int, j: int, k: int) -> np.ndarray:
    return np.array(GRID.min_corner) + (np.array([i, j, k]) + 0.5) * GRID.size


def test_semantic_occupancy_is_x_major_and_round_trips():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 18, GRID.dims).astype(np.uint8)
    conf = rng.random(GRID.dims).astype(np.float32)
    msg = semantic_occupancy_msg(labels, GRID, OCC3D_CLASS_NAMES, FREE, HEADER, confidence=conf)
    msg = deserialize_message(serialize_message(msg), SemanticOccupancy)
    x, y, z = GRID.dims
    assert (msg.dims_x, msg.dims_y, msg.dims_z) == (x, y, z) and msg.free_label == FREE
    assert (msg.origin.x, msg.origin.y, msg.origin.z) == GRID.min_corner and msg.voxel_size == pytest.approx(0.4)
    flat = np.frombuffer(bytes(msg.labels), np.uint8)
    for i, j, k in [(0, 0, 1), (3, 7, 5), (19, 9, 0), (11, 2, 3)]:
        assert flat[(i * y + j) * z + k] == labels[i, j, k]
        assert msg.confidence[(i * y + j) * z + k] == conf[i, j, k]
    assert list(msg.class_names) == list(OCC3D_CLASS_NAMES)
    assert msg.header.frame_id == "base_link" and msg.header.stamp.nanosec == 512_404_000


def test_semantic_occupancy_without_confidence_is_empty():
    msg = semantic_occupancy_msg(empty(), GRID, OCC3D_CLASS_NAMES, FREE, HEADER)
    assert len(msg.confidence) == 0


@pytest.mark.parametrize(
    "labels, kwargs, match",
    [
        (np.zeros((3, 3, 3), np.uint8), {}, "does not match grid dims"),
        (np.zeros(GRID.dims, np.int64), {}, "must be uint8"),
        (np.full(GRID.dims, 18, np.uint8), {}, "label 18 has no class name"),
        (np.zeros(GRID.dims, np.uint8), {"confidence": np.zeros(3)}, "confidence shape"),
    ],
)
def test_semantic_occupancy_rejects_bad_input(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        semantic_occupancy_msg(labels, GRID, OCC3D_CLASS_NAMES, FREE, HEADER, **kwargs)


def read_points(msg: PointCloud2) -> np.ndarray:
    """Decode with a dtype built from the message's own field list (as RViz would)."""
    types = {7: "<f4", 6: "<u4", 2: "u1"}
    dtype = np.dtype({"names": [f.name for f in msg.fields], "formats": [types[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    return np.frombuffer(bytes(msg.data), dtype=dtype)


def test_points_are_voxel_centres_with_palette_colours():
    labels = empty()
    cells = {(0, 0, 0): 4, (5, 9, 2): 7, (19, 3, 5): 16}
    for idx, lab in cells.items():
        labels[idx] = lab
    msg = deserialize_message(serialize_message(occupied_points_msg(labels, GRID, OCC3D_CLASS_NAMES, FREE, HEADER)),
                              PointCloud2)
    assert (msg.height, msg.width, msg.row_step) == (1, 3, 3 * msg.point_step)
    pts = read_points(msg)
    for p, (idx, lab) in zip(pts, sorted(cells.items())):
        np.testing.assert_allclose([p["x"], p["y"], p["z"]], centre(*idx), atol=1e-5)
        assert p["label"] == lab
        bits = np.array([p["rgb"]], "<f4").view("<u4")[0]
        assert [(bits >> 16) & 255, (bits >> 8) & 255, bits & 255] == OCC3D_COLORS[lab].tolist()


def test_points_cap_keeps_the_nearest_voxels():
    rng = np.random.default_rng(1)
    labels = np.where(rng.random(GRID.dims) < 0.3, 4, FREE).astype(np.uint8)
    occupied = np.argwhere(labels != FREE)
    dist = np.linalg.norm(np.array([centre(*i) for i in occupied]), axis=1)
    cap = 50
    pts = read_points(occupied_points_msg(labels, GRID, OCC3D_CLASS_NAMES, FREE, HEADER, max_points=cap))
    assert len(pts) == cap
    got = np.linalg.norm(np.stack([pts["x"], pts["y"], pts["z"]], 1), axis=1)
    assert got.max() <= np.sort(dist)[cap - 1] + 1e-5
    assert len(read_points(occupied_points_msg(labels, GRID, OCC3D_CLASS_NAMES, FREE, HEADER, max_points=0))) == 0


def test_bev_grid_marks_obstacles_in_the_height_band():
    labels = empty()
    labels[2, 3, 2] = 4  # car, centre z = -1 + 2.5 * 0.4 = 0.0
    labels[7, 1, 5] = 4  # car, centre z = 1.2: above the band
    labels[9, 8, 2] = 16  # vegetation: not an obstacle class here
    labels[12, 5, 0] = 11  # road
    unknown = np.zeros(GRID.dims[:2], bool)
    unknown[19, 9] = True
    msg = bev_occupancy_grid(labels, GRID, obstacle_labels=[4, 7], z_band=(-0.5, 1.0), header=HEADER,
                             unknown=unknown)
    msg = deserialize_message(serialize_message(msg), OccupancyGrid)
    info = msg.info
    assert (info.width, info.height, info.resolution) == (20, 10, pytest.approx(0.4))
    data = np.array(msg.data, dtype=np.int8)

    def cell(x: float, y: float) -> int:
        col = int((x - info.origin.position.x) // info.resolution)
        row = int((y - info.origin.position.y) // info.resolution)
        return int(data[row * info.width + col])

    assert cell(*centre(2, 3, 2)[:2]) == 100
    assert cell(*centre(7, 1, 5)[:2]) == 0
    assert cell(*centre(9, 8, 2)[:2]) == 0
    assert cell(*centre(19, 9, 0)[:2]) == -1
    assert (data == 100).sum() == 1 and (data == -1).sum() == 1


def test_bev_grid_rejects_bad_band_and_mask():
    with pytest.raises(ValueError, match="z_band"):
        bev_occupancy_grid(empty(), GRID, [4], (1.0, 0.0), HEADER)
    with pytest.raises(ValueError, match="unknown mask shape"):
        bev_occupancy_grid(empty(), GRID, [4], (0.0, 1.0), HEADER, unknown=np.zeros((2, 2), bool))
