"""TransformBuffer against plain numpy composition of 4x4 matrices."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped

from gausstr_ros.stamps import ns_to_stamp
from gausstr_ros.tf_buffer import TransformBuffer

SEC = 1_000_000_000


def rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def axis_angle_quat(axis: np.ndarray, angle: float) -> np.ndarray:
    """w x y z, written independently of the code under test."""
    axis = axis / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def matrix(rot: np.ndarray, trans) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rot, trans
    return out


@pytest.fixture
def rig():
    """base_link -> mount -> CAM_FRONT and base_link -> CAM_BACK (static); map -> base_link (dynamic)."""
    rng = np.random.default_rng(0)
    buf = TransformBuffer(tolerance_s=0.05)
    truth = {}
    for parent, child in [("base_link", "mount"), ("mount", "CAM_FRONT"), ("base_link", "CAM_BACK")]:
        axis, angle, trans = rng.normal(size=3), rng.uniform(-3, 3), rng.normal(size=3)
        buf.set_transform(parent, child, trans, axis_angle_quat(axis, angle), static=True)
        truth[child] = matrix(rodrigues(axis, angle), trans)
    return buf, truth


def test_chains_through_parents_and_siblings(rig):
    buf, t = rig
    cam_front_to_base = t["mount"] @ t["CAM_FRONT"]
    np.testing.assert_allclose(buf.lookup("base_link", "CAM_FRONT"), cam_front_to_base, atol=1e-12)
    np.testing.assert_allclose(buf.lookup("CAM_FRONT", "base_link"), np.linalg.inv(cam_front_to_base), atol=1e-12)
    np.testing.assert_allclose(
        buf.lookup("CAM_BACK", "CAM_FRONT"), np.linalg.inv(t["CAM_BACK"]) @ cam_front_to_base, atol=1e-12
    )
    np.testing.assert_allclose(buf.lookup("/mount", "mount"), np.eye(4), atol=1e-12)
    assert buf.frames() == ["CAM_BACK", "CAM_FRONT", "base_link", "mount"]


def test_dynamic_edge_interpolates_translation_linearly_and_rotation_by_slerp(rig):
    buf, t = rig
    q0 = axis_angle_quat(np.array([0.3, -0.2, 1.0]), 0.4)
    axis, theta = np.array([1.0, 2.0, 0.5]), 0.9
    r0 = rodrigues(np.array([0.3, -0.2, 1.0]), 0.4)
    # q1 = q0 * q(axis, theta) (Hamilton product): R1 = R0 @ rodrigues(axis, theta)
    w0, v0 = q0[0], q0[1:]
    qa = axis_angle_quat(axis, theta)
    wa, va = qa[0], qa[1:]
    q1 = np.concatenate([[w0 * wa - v0 @ va], w0 * va + wa * v0 + np.cross(v0, va)])
    buf.set_transform("map", "base_link", [10.0, 0.0, 0.0], q0, stamp_ns=100 * SEC)
    buf.set_transform("map", "base_link", [12.0, 4.0, -2.0], q1, stamp_ns=101 * SEC)
    for w in (0.0, 0.25, 0.5, 1.0):
        expected = matrix(r0 @ rodrigues(axis, w * theta), [10.0 + 2 * w, 4 * w, -2 * w])
        got = buf.lookup("map", "base_link", int((100 + w) * SEC))
        np.testing.assert_allclose(got, expected, atol=1e-9)
    # A camera point into the map at the midpoint: composition of both edges.
    cam_to_map = buf.lookup("map", "CAM_FRONT", int(100.5 * SEC))
    expected = matrix(r0 @ rodrigues(axis, 0.5 * theta), [11.0, 2.0, -1.0]) @ t["mount"] @ t["CAM_FRONT"]
    np.testing.assert_allclose(cam_to_map, expected, atol=1e-9)
    # None: latest common time of the dynamic edges on the path.
    np.testing.assert_allclose(buf.lookup("map", "base_link"), buf.lookup("map", "base_link", 101 * SEC))


def test_extrapolation_within_tolerance_holds_and_beyond_fails(rig):
    buf, _ = rig
    buf.set_transform("map", "base_link", [1, 2, 3], [1, 0, 0, 0], stamp_ns=50 * SEC)
    buf.set_transform("map", "base_link", [2, 2, 3], [1, 0, 0, 0], stamp_ns=51 * SEC)
    np.testing.assert_allclose(buf.lookup("map", "base_link", 51 * SEC + 40_000_000)[:3, 3], [2, 2, 3])
    with pytest.raises(LookupError, match=r"'CAM_FRONT' to 'map'.*'map' -> 'base_link'"):
        buf.lookup("map", "CAM_FRONT", 52 * SEC)
    with pytest.raises(LookupError, match="has data only for"):
        buf.lookup("map", "base_link", 49 * SEC)
    assert not buf.can_transform("map", "base_link", 49 * SEC)
    assert buf.can_transform("map", "base_link", 50 * SEC)


def test_missing_and_disconnected_frames_are_named(rig):
    buf, _ = rig
    with pytest.raises(LookupError, match="'CAM_LEFT' does not exist"):
        buf.lookup("base_link", "CAM_LEFT")
    buf.set_transform("odom", "imu", [0, 0, 0], [1, 0, 0, 0], static=True)
    with pytest.raises(LookupError, match="'imu' to 'base_link': the frames are not connected"):
        buf.lookup("base_link", "imu")


def test_history_is_bounded_by_count_and_time():
    buf = TransformBuffer(cache_time_s=1.0, max_history=5)
    for i in range(20):
        buf.set_transform("map", "base_link", [i, 0, 0], [1, 0, 0, 0], stamp_ns=i * SEC // 10)
    assert len(buf._edges["base_link"].stamps) == 5
    buf2 = TransformBuffer(cache_time_s=1.0, max_history=100)
    for i in range(30):
        buf2.set_transform("map", "base_link", [i, 0, 0], [1, 0, 0, 0], stamp_ns=i * SEC // 10)
    assert buf2._edges["base_link"].stamps[0] == 19 * SEC // 10


def test_out_of_order_samples_are_sorted_and_reparenting_replaces_the_edge():
    buf = TransformBuffer()
    buf.set_transform("map", "base_link", [2, 0, 0], [1, 0, 0, 0], stamp_ns=2 * SEC)
    buf.set_transform("map", "base_link", [0, 0, 0], [1, 0, 0, 0], stamp_ns=0)
    np.testing.assert_allclose(buf.lookup("map", "base_link", SEC)[:3, 3], [1, 0, 0])
    buf.set_transform("odom", "base_link", [5, 0, 0], [1, 0, 0, 0], static=True)
    np.testing.assert_allclose(buf.lookup("odom", "base_link", SEC)[:3, 3], [5, 0, 0])
    with pytest.raises(LookupError, match="'map' does not exist"):
        buf.lookup("map", "base_link")


def test_tf_messages_are_read_with_xyzw_quaternions():
    buf = TransformBuffer()
    ts = TransformStamped()
    ts.header.frame_id = "/base_link"
    ts.header.stamp = ns_to_stamp(3 * SEC)
    ts.child_frame_id = "CAM_FRONT"
    ts.transform.translation.x, ts.transform.translation.y, ts.transform.translation.z = 1.0, 2.0, 3.0
    q = axis_angle_quat(np.array([0.0, 0.0, 1.0]), np.pi / 2)  # w x y z
    r = ts.transform.rotation
    r.x, r.y, r.z, r.w = q[1], q[2], q[3], q[0]
    buf.add_message(SimpleNamespace(transforms=[ts]), static=True)
    expected = matrix(rodrigues(np.array([0.0, 0.0, 1.0]), np.pi / 2), [1, 2, 3])
    np.testing.assert_allclose(buf.lookup("base_link", "CAM_FRONT", 123), expected, atol=1e-12)


@pytest.mark.parametrize(
    "args, match",
    [
        (("a", "a", [0, 0, 0], [1, 0, 0, 0]), "own parent"),
        (("", "a", [0, 0, 0], [1, 0, 0, 0]), "empty parent"),
        (("a", "b", [0, 0], [1, 0, 0, 0]), "3/4 finite"),
        (("a", "b", [0, 0, np.nan], [1, 0, 0, 0]), "3/4 finite"),
        (("a", "b", [0, 0, 0], [0, 0, 0, 0]), "zero quaternion"),
    ],
)
def test_bad_transforms_are_rejected(args, match):
    with pytest.raises(ValueError, match=match):
        TransformBuffer().set_transform(*args)


def test_failures_name_their_kind(rig):
    from gausstr_ros.tf_buffer import TransformError

    buf, _ = rig
    buf.set_transform("map", "base_link", [1, 2, 3], [1, 0, 0, 0], stamp_ns=50 * SEC)
    buf.set_transform("odom", "imu", [0, 0, 0], [1, 0, 0, 0], static=True)
    for args, kind in ((("base_link", "CAM_LEFT"), "missing frame"), (("base_link", "imu"), "disconnected"),
                       (("map", "CAM_FRONT", 60 * SEC), "extrapolation")):
        with pytest.raises(TransformError) as err:
            buf.lookup(*args)
        assert err.value.kind == kind and str(err.value).startswith(f"{kind}: ")


def test_a_looping_tf_fails_lookups_saying_loop_and_stops_mattering_within_the_cache_time():
    """The failure: one /tf `left -> base_link` while `base_link -> left` is static disabled every later lookup."""
    from gausstr_ros.tf_buffer import TransformError

    buf = TransformBuffer(cache_time_s=10.0, tolerance_s=0.1)
    buf.set_transform("base_link", "left", [0, 1, 0], [1, 0, 0, 0], static=True)
    buf.set_transform("left", "base_link", [0, -1, 0], [1, 0, 0, 0], stamp_ns=100 * SEC)
    for stamp in (100 * SEC, None):
        with pytest.raises(TransformError, match="contains a loop: left -> base_link -> left") as err:
            buf.lookup("base_link", "left", stamp)
        assert err.value.kind == "loop"
    # later lookups (beyond the looping sample's time) work again, as in tf2
    np.testing.assert_allclose(buf.lookup("base_link", "left", 101 * SEC)[:3, 3], [0, 1, 0])
    # and the looping edge leaves the buffer once other dynamic data is a cache time newer
    buf.set_transform("map", "odom", [0, 0, 0], [1, 0, 0, 0], stamp_ns=111 * SEC)
    assert "base_link" not in buf._edges
    np.testing.assert_allclose(buf.lookup("base_link", "left")[:3, 3], [0, 1, 0])


def test_dynamic_edges_expire_after_the_cache_time_and_clear_dynamic_keeps_static(rig):
    buf, truth = rig
    buf.set_transform("map", "base_link", [1, 0, 0], [1, 0, 0, 0], stamp_ns=10 * SEC)
    buf.set_transform("odom", "map", [0, 0, 0], [1, 0, 0, 0], stamp_ns=25 * SEC)  # 15 s newer: map -> base_link expires
    assert "base_link" not in buf._edges
    with pytest.raises(LookupError, match="'odom' -> 'map' has data only for"):
        buf.lookup("map", "base_link", 10 * SEC)
    buf.set_transform("map", "base_link", [1, 0, 0], [1, 0, 0, 0], stamp_ns=25 * SEC)
    buf.clear_dynamic()
    assert "map" not in buf.frames()
    np.testing.assert_allclose(buf.lookup("base_link", "CAM_BACK", 3 * SEC), truth["CAM_BACK"])
