"""Predicted Gaussians -> GaussianArray and RViz MarkerArray.

Inputs are numpy arrays of one scene in the header frame (base_link): means (N, 3) m, scales
(N, 3) standard deviations m, quats (N, 4) w x y z (gausstr_core order; ROS messages get x y z w),
opacities (N,), labels (N,) class indices into class_names, confidences (N,).
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from gausstr_core.palette import class_colors
from gausstr_ros.marker_cdr import encode_marker_array
from gausstr_ros.msg import GaussianArray

DEFAULT_MAX_MARKERS = 500  # rclpy serialises a Marker in ~30 us: 1800 markers cost ~0.7 camera periods
MARKER_NAMESPACE = "gaussians"


def _check(means, scales, quats, opacities, labels, num_classes: int) -> tuple[np.ndarray, ...]:
    means, scales, quats = (np.asarray(a, dtype=np.float32) for a in (means, scales, quats))
    opacities, labels = np.asarray(opacities, dtype=np.float32), np.asarray(labels)
    n = len(opacities)  # N, as in msg/GaussianArray.msg
    shapes = {"means": (means.shape, (n, 3)), "scales": (scales.shape, (n, 3)), "quats": (quats.shape, (n, 4)),
              "opacities": (opacities.shape, (n,)), "labels": (labels.shape, (n,))}
    for name, (got, want) in shapes.items():
        if got != want:
            raise ValueError(f"Gaussians: {name} has shape {got}, expected {want} (N = {n} opacities)")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"Gaussians: labels must index {num_classes} class names, got range "
                         f"[{labels.min()}, {labels.max()}]")
    return means, scales, quats, opacities, labels.astype(np.int64)


def wxyz_to_xyzw(quats: np.ndarray) -> np.ndarray:
    """(N, 4) w x y z -> (N, 4) x y z w."""
    return np.asarray(quats)[:, [1, 2, 3, 0]]


def gaussian_array_msg(
    means: np.ndarray,
    scales: np.ndarray,
    quats: np.ndarray,
    opacities: np.ndarray,
    labels: np.ndarray,
    confidences: np.ndarray,
    class_names: Sequence[str],
    header: Header,
) -> GaussianArray:
    """All Gaussians as flat arrays (see msg/GaussianArray.msg)."""
    means, scales, quats, opacities, labels = _check(means, scales, quats, opacities, labels, len(class_names))
    confidences = np.asarray(confidences, dtype=np.float32)
    if confidences.shape != opacities.shape:
        raise ValueError(f"Gaussians: confidences has shape {confidences.shape}, expected {opacities.shape}")
    if len(class_names) > 256:
        raise ValueError(f"GaussianArray labels are uint8: at most 256 classes, got {len(class_names)}")

    def f32(a: np.ndarray) -> array.array:
        return array.array("f", np.ascontiguousarray(a, dtype="<f4").tobytes())

    return GaussianArray(
        header=header, means=f32(means), scales=f32(scales), orientations=f32(wxyz_to_xyzw(quats)),
        opacities=f32(opacities), labels=labels.astype(np.uint8).tobytes(), confidences=f32(confidences),
        class_names=list(class_names),
    )


@dataclass
class MarkerPublisherState:
    """Per-publisher marker bookkeeping: the number of markers published last frame (so that
    only ids no longer used get a DELETE) and a pool of Marker objects reused frame to frame
    (constructing rclpy Markers dominates the build time)."""

    previous_count: int = 0
    pool: list[Marker] = field(default_factory=list)

    def markers(self, count: int) -> list[Marker]:
        """`count` pooled markers (ids 0..count-1); valid until the next call."""
        self.pool.extend(Marker(id=i) for i in range(len(self.pool), count))
        return self.pool[:count]

    def leftover_deletes(self, count: int, header: Header, ns: str = MARKER_NAMESPACE) -> list[Marker]:
        """DELETE markers for ids count .. previous_count - 1, then remember `count`."""
        return [Marker(header=header, ns=ns, id=i, action=Marker.DELETE) for i in self.leftover_ids(count)]

    def leftover_ids(self, count: int) -> range:
        """Ids count .. previous_count - 1 (to DELETE), then remember `count`."""
        ids = range(count, self.previous_count)
        self.previous_count = count
        return ids


def _marker_fields(means, scales, quats, opacities, labels, class_names: Sequence[str], sigma_k: float,
                   max_markers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked Gaussians -> per SPHERE poses (n, 7) position + orientation x y z w, sizes (n, 3) and colours
    (n, 4) r g b a, float64, n <= max_markers (the most opaque kept, in their order)."""
    means, scales, quats, opacities, labels = _check(means, scales, quats, opacities, labels, len(class_names))
    if sigma_k <= 0 or max_markers < 0:
        raise ValueError(f"gaussian_markers: need sigma_k > 0 and max_markers >= 0, got {sigma_k}, {max_markers}")
    if len(means) > max_markers:
        keep = np.sort(np.argsort(-opacities, kind="stable")[:max_markers])
        means, scales, quats, opacities, labels = means[keep], scales[keep], quats[keep], opacities[keep], labels[keep]
    rgb = class_colors(class_names).astype(np.float64) / 255.0
    colours = np.concatenate([rgb[labels], np.clip(opacities, 0, 1)[:, None]], axis=1)
    poses = np.concatenate([means, wxyz_to_xyzw(quats)], axis=1).astype(np.float64)
    return poses, (2.0 * sigma_k * scales).astype(np.float64), colours


def gaussian_markers(
    means: np.ndarray,
    scales: np.ndarray,
    quats: np.ndarray,
    opacities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    header: Header,
    state: MarkerPublisherState,
    sigma_k: float = 1.0,
    max_markers: int = DEFAULT_MAX_MARKERS,
    ns: str = MARKER_NAMESPACE,
    serialized: bool = False,
) -> MarkerArray | bytes:
    """One SPHERE per Gaussian: pose = mean + orientation, scale = 2 x sigma_k x sigma per axis
    (the sigma_k ellipsoid), class colour, alpha = opacity.

    Beyond `max_markers` the most opaque Gaussians are kept. Ids are 0..n-1 each frame (RViz
    updates markers in place); ids used last frame and not now get a DELETE (no DELETEALL).
    serialized False: a MarkerArray whose ADD markers are `state`'s pooled objects (publish it before the
    next call); True: the same array as CDR bytes for `Publisher.publish`, built by numpy without message
    objects (marker_cdr; only where marker_cdr.layout_matches()).
    """
    fields = _marker_fields(means, scales, quats, opacities, labels, class_names, sigma_k, max_markers)
    if serialized:
        return _serialized_markers(*fields, header, ns, state)
    poses, sizes, colours = (a.tolist() for a in fields)
    markers = state.markers(len(poses))
    for m, pose, size, colour in zip(markers, poses, sizes, colours):
        m.header, m.ns, m.type, m.action = header, ns, Marker.SPHERE, Marker.ADD
        p, o, s, c = m.pose.position, m.pose.orientation, m.scale, m.color
        p.x, p.y, p.z, o.x, o.y, o.z, o.w = pose
        s.x, s.y, s.z = size
        c.r, c.g, c.b, c.a = colour
    return MarkerArray(markers=markers + state.leftover_deletes(len(markers), header, ns))


def _serialized_markers(poses: np.ndarray, sizes: np.ndarray, colours: np.ndarray, header: Header, ns: str,
                        state: MarkerPublisherState) -> bytes:
    count, deletes = len(poses), len(state.leftover_ids(len(poses)))
    delete_poses = np.zeros((deletes, 7))
    delete_poses[:, 6] = 1.0  # a default Pose's orientation is the identity quaternion
    return encode_marker_array(
        header, ns, np.arange(count + deletes),
        np.concatenate([np.full(count, Marker.SPHERE), np.zeros(deletes, dtype=np.int64)]),
        np.concatenate([np.full(count, Marker.ADD), np.full(deletes, Marker.DELETE)]),
        np.concatenate([poses, delete_poses]), np.concatenate([sizes, np.zeros((deletes, 3))]),
        np.concatenate([colours, np.zeros((deletes, 4))]),
    )
