"""GaussianArray and SPHERE MarkerArray builders."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from visualization_msgs.msg import Marker, MarkerArray

from gausstr_core.data.occ3d import OCC3D_CLASSES as OCC3D_CLASS_NAMES
from gausstr_core.palette import OCC3D_COLORS, class_colors, name_color
from gausstr_ros import marker_cdr
from gausstr_ros.gaussian_msgs import MarkerPublisherState, gaussian_array_msg, gaussian_markers
from gausstr_ros.msg import GaussianArray
from gausstr_ros.stamps import make_header

HEADER = make_header("base_link", 42)


def gaussians(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    quats = rng.normal(size=(n, 4))
    return {
        "means": rng.normal(size=(n, 3)) * 10,
        "scales": rng.uniform(0.05, 1.0, (n, 3)),
        "quats": quats / np.linalg.norm(quats, axis=1, keepdims=True),
        "opacities": rng.random(n),
        "labels": rng.integers(0, 18, n),
    }


def test_gaussian_array_is_flat_with_xyzw_quaternions():
    g = gaussians(7)
    conf = np.linspace(0, 1, 7)
    msg = gaussian_array_msg(**g, confidences=conf, class_names=OCC3D_CLASS_NAMES, header=HEADER)
    msg = deserialize_message(serialize_message(msg), GaussianArray)
    np.testing.assert_allclose(np.reshape(msg.means, (7, 3)), g["means"], rtol=1e-6)
    np.testing.assert_allclose(np.reshape(msg.scales, (7, 3)), g["scales"], rtol=1e-6)
    q = np.reshape(msg.orientations, (7, 4))
    np.testing.assert_allclose(q[:, 3], g["quats"][:, 0], rtol=1e-6)  # w last
    np.testing.assert_allclose(q[:, :3], g["quats"][:, 1:], rtol=1e-6)
    np.testing.assert_allclose(msg.opacities, g["opacities"], rtol=1e-6)
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.labels), np.uint8), g["labels"])
    np.testing.assert_allclose(msg.confidences, conf, rtol=1e-6)
    assert list(msg.class_names) == list(OCC3D_CLASS_NAMES)


@pytest.mark.parametrize("field, value, match", [
    ("means", np.zeros((3, 3)), "means has shape"),
    ("quats", np.zeros((7, 3)), "quats has shape"),
    ("labels", np.full(7, 18), "labels must index 18 class names"),
])
def test_gaussian_array_rejects_bad_shapes(field, value, match):
    g = gaussians(7) | {field: value}
    with pytest.raises(ValueError, match=match):
        gaussian_array_msg(**g, confidences=np.zeros(7), class_names=OCC3D_CLASS_NAMES, header=HEADER)


def test_markers_are_oriented_ellipsoids_in_class_colours():
    g = gaussians(5)
    state = MarkerPublisherState()
    msg = gaussian_markers(**g, class_names=OCC3D_CLASS_NAMES, header=HEADER, state=state, sigma_k=2.0)
    msg = deserialize_message(serialize_message(msg), MarkerArray)
    assert [m.id for m in msg.markers] == [0, 1, 2, 3, 4]
    for i, m in enumerate(msg.markers):
        assert m.type == Marker.SPHERE and m.action == Marker.ADD and m.header.frame_id == "base_link"
        np.testing.assert_allclose([m.pose.position.x, m.pose.position.y, m.pose.position.z], g["means"][i])
        o = m.pose.orientation
        np.testing.assert_allclose([o.w, o.x, o.y, o.z], g["quats"][i])
        np.testing.assert_allclose([m.scale.x, m.scale.y, m.scale.z], 4.0 * g["scales"][i])
        colour = OCC3D_COLORS[g["labels"][i]] / 255.0
        np.testing.assert_allclose([m.color.r, m.color.g, m.color.b], colour, atol=1e-6)
        assert m.color.a == pytest.approx(g["opacities"][i], abs=1e-6)


def test_markers_reuse_ids_and_delete_only_leftovers():
    state = MarkerPublisherState()
    first = gaussian_markers(**gaussians(6), class_names=OCC3D_CLASS_NAMES, header=HEADER, state=state)
    assert all(m.action == Marker.ADD for m in first.markers)
    second = gaussian_markers(**gaussians(4, 1), class_names=OCC3D_CLASS_NAMES, header=HEADER, state=state)
    assert [(m.id, m.action) for m in second.markers] == [(i, Marker.ADD) for i in range(4)] + [
        (4, Marker.DELETE), (5, Marker.DELETE)]
    third = gaussian_markers(**gaussians(9, 2), class_names=OCC3D_CLASS_NAMES, header=HEADER, state=state)
    assert [m.id for m in third.markers] == list(range(9))
    assert not any(m.action in (Marker.DELETE, Marker.DELETEALL) for m in third.markers)
    assert state.previous_count == 9


@pytest.mark.parametrize("frame_id", ["base_link", "ego", "a_longer_frame_name"])
def test_serialized_markers_deserialize_to_the_message_path(frame_id):
    """The CDR fast path gives, frame after frame (growing, shrinking: DELETEs), what rclpy reads as the
    markers the message path builds; frame ids of different lengths move the doubles' 8-byte phase."""
    assert marker_cdr.layout_matches()
    header = make_header(frame_id, 1_234_567_891)
    by_message, by_bytes = MarkerPublisherState(), MarkerPublisherState()
    for n, seed in ((7, 0), (3, 1), (12, 2), (0, 3), (5, 4)):
        g = gaussians(n, seed)
        expected = gaussian_markers(**g, class_names=OCC3D_CLASS_NAMES, header=header, state=by_message,
                                    sigma_k=1.5, max_markers=10)
        data = gaussian_markers(**g, class_names=OCC3D_CLASS_NAMES, header=header, state=by_bytes, sigma_k=1.5,
                                max_markers=10, serialized=True)
        assert isinstance(data, bytes)
        assert deserialize_message(data, MarkerArray) == deserialize_message(serialize_message(expected), MarkerArray)
    assert by_bytes.previous_count == by_message.previous_count == 5


def test_marker_cap_keeps_the_most_opaque():
    g = gaussians(50)
    msg = gaussian_markers(**g, class_names=OCC3D_CLASS_NAMES, header=HEADER, state=MarkerPublisherState(),
                           max_markers=10)
    alphas = sorted(m.color.a for m in msg.markers)
    np.testing.assert_allclose(alphas, np.sort(g["opacities"])[-10:], atol=1e-6)


def test_palette_is_stable_for_unknown_names():
    np.testing.assert_array_equal(name_color("car"), OCC3D_COLORS[4])
    np.testing.assert_array_equal(name_color("fire hydrant"), name_color("fire hydrant"))
    assert not np.array_equal(name_color("fire hydrant"), name_color("mailbox"))
    assert class_colors(["car", "mailbox"]).shape == (2, 3)
