"""A small transform buffer for /tf and /tf_static (tf2_ros is not on PyPI), behaving as tf2 does.

Each child frame has one parent (the latest message wins). Static edges hold one transform for
all times; dynamic edges keep a bounded, stamp-sorted history and are interpolated (translation
linearly, rotation by slerp). `lookup(target, source, stamp_ns)` returns `source_to_target`
(4, 4) float64, mapping points in `source` to `target`, chained through the common ancestor. As
in tf2, a stamp of None means "the latest time at which every dynamic edge on the path has data".
Internally quaternions are w x y z; ROS messages are x y z w.

As in tf2, a dynamic edge only links its child to its parent at the times its history covers
(+- tolerance_s), and dynamic data expires after `cache_time_s`: samples older than the edge's
newest minus the cache time are dropped, and an edge whose newest sample is more than the cache
time older than the newest dynamic sample in the buffer is removed. Loops (a /tf edge closing a
cycle with others) are not refused on arrival; a lookup that meets one fails saying so, and it
stops mattering once the looping edge no longer covers the lookup time (at most the cache time).
Failures raise TransformError, a LookupError whose `kind` is "missing frame", "disconnected",
"loop" or "extrapolation". `clear_dynamic()` forgets every dynamic edge (a clock jump back).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gausstr_core.geometry import quat_to_rotmat
from gausstr_ros.stamps import stamp_to_ns


class TransformError(LookupError):
    """A failed lookup; kind: "missing frame" | "disconnected" | "loop" | "extrapolation"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)  # sorted, ns (one entry, unused, when static)
    translations: list[np.ndarray] = field(default_factory=list)  # (3,) m
    rotations: list[np.ndarray] = field(default_factory=list)  # (4,) w x y z, unit
    matrix: np.ndarray | None = None  # static edges: child_to_parent (4, 4), made once when stored


class TransformBuffer:
    """Transform tree with time-stamped history.

    cache_time_s: dynamic history kept behind the newest stamp of each edge.
    max_history: cap on samples per dynamic edge (memory bound at any publish rate).
    tolerance_s: how far a lookup may lie outside an edge's history (the edge is then held at
    its nearest sample) before it fails as an extrapolation.
    """

    def __init__(self, cache_time_s: float = 10.0, max_history: int = 1000, tolerance_s: float = 0.1) -> None:
        if cache_time_s <= 0 or max_history < 1 or tolerance_s < 0:
            raise ValueError(
                f"TransformBuffer: need cache_time_s > 0, max_history >= 1, tolerance_s >= 0; "
                f"got {cache_time_s}, {max_history}, {tolerance_s}"
            )
        self._cache_ns = int(cache_time_s * 1e9)
        self._max_history = max_history
        self._tolerance_ns = int(tolerance_s * 1e9)
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.Lock()

    def set_transform(
        self,
        parent: str,
        child: str,
        translation: Iterable[float],
        rotation_wxyz: Iterable[float],
        stamp_ns: int = 0,
        static: bool = False,
    ) -> None:
        """Store child_to_parent: translation (3,) m, rotation (4,) w x y z (normalised here)."""
        parent, child = _frame(parent, "parent"), _frame(child, "child")
        if parent == child:
            raise ValueError(f"TransformBuffer: frame {child!r} cannot be its own parent")
        t = np.asarray(list(translation), dtype=np.float64)
        q = np.asarray(list(rotation_wxyz), dtype=np.float64)
        if t.shape != (3,) or q.shape != (4,) or not (np.isfinite(t).all() and np.isfinite(q).all()):
            raise ValueError(f"TransformBuffer: {parent} -> {child}: translation/rotation must be 3/4 finite numbers")
        norm = np.linalg.norm(q)
        if norm < 1e-9:
            raise ValueError(f"TransformBuffer: {parent} -> {child}: zero quaternion")
        q = q / norm
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                edge = self._edges[child] = _Edge(parent, static)
            if static:
                edge.stamps[:], edge.translations[:], edge.rotations[:] = [int(stamp_ns)], [t], [q]
                edge.matrix = _matrix(t, q)
                return
            i = bisect.bisect_left(edge.stamps, stamp_ns)
            if i < len(edge.stamps) and edge.stamps[i] == stamp_ns:
                edge.translations[i], edge.rotations[i] = t, q
            else:
                edge.stamps.insert(i, int(stamp_ns))
                edge.translations.insert(i, t)
                edge.rotations.insert(i, q)
            cut = max(bisect.bisect_left(edge.stamps, edge.stamps[-1] - self._cache_ns),
                      len(edge.stamps) - self._max_history)
            if cut > 0:
                del edge.stamps[:cut], edge.translations[:cut], edge.rotations[:cut]
            newest = max(e.stamps[-1] for e in self._edges.values() if not e.static)
            for name in [c for c, e in self._edges.items() if not e.static and e.stamps[-1] < newest - self._cache_ns]:
                del self._edges[name]

    def clear_dynamic(self) -> None:
        """Forget every dynamic edge (static ones stay), e.g. after the clock jumped back."""
        with self._lock:
            self._edges = {child: e for child, e in self._edges.items() if e.static}

    def add_message(self, msg: Any, static: bool = False) -> None:
        """Store every geometry_msgs/TransformStamped of a tf2_msgs/TFMessage (or one TransformStamped)."""
        for ts in getattr(msg, "transforms", [msg]):
            tr, rot = ts.transform.translation, ts.transform.rotation
            self.set_transform(
                ts.header.frame_id, ts.child_frame_id, (tr.x, tr.y, tr.z), (rot.w, rot.x, rot.y, rot.z),
                stamp_to_ns(ts.header.stamp), static,
            )

    def frames(self) -> list[str]:
        with self._lock:
            return self._known()

    def can_transform(self, target: str, source: str, stamp_ns: int | None = None) -> bool:
        try:
            self.lookup(target, source, stamp_ns)
        except LookupError:
            return False
        return True

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> np.ndarray:
        """source_to_target (4, 4) float64 at `stamp_ns` (None: latest common time).

        Raises TransformError naming the frames and the kind of failure: a frame is unknown
        (missing frame), the path meets a loop (loop), the frames are not connected at that time
        (disconnected), or the stamp lies beyond `tolerance_s` outside a dynamic edge's history
        (extrapolation).
        """
        target, source = _frame(target, "target"), _frame(source, "source")
        with self._lock:
            source_path, source_stale = self._path_to_root(source, stamp_ns)
            target_path, target_stale = self._path_to_root(target, stamp_ns)
            common = next((f for f in source_path if f in set(target_path)), None)
            if common is None:
                stale = source_stale or target_stale
                if stale is not None:
                    raise self._extrapolation(stale, stamp_ns, source, target)
                raise TransformError(
                    "disconnected", f"no transform from {source!r} to {target!r}: the frames are not connected "
                    f"(root of {source!r}: {source_path[-1]!r}, root of {target!r}: {target_path[-1]!r})"
                )
            up = source_path[: source_path.index(common)]
            down = target_path[: target_path.index(common)]
            if stamp_ns is None:
                stamp_ns = self._latest_common_stamp(up + down)
            source_to_common = self._chain(up, stamp_ns, source, target)
            target_to_common = self._chain(down, stamp_ns, source, target)
        return _rigid_inverse(target_to_common) @ source_to_common

    def _path_to_root(self, frame: str, stamp_ns: int | None) -> tuple[list[str], str | None]:
        """Frames from `frame` up to its root at `stamp_ns`, and the child of a dynamic edge that would
        continue the path but does not cover stamp_ns (None if the path ends at a true root)."""
        known = frame in self._edges or any(e.parent == frame for e in self._edges.values())
        if not known:
            raise TransformError("missing frame", f"frame {frame!r} does not exist in the transform buffer "
                                 f"(known: {self._known()})")
        path = [frame]
        while path[-1] in self._edges:
            edge = self._edges[path[-1]]
            if stamp_ns is not None and not edge.static and not self._covers(edge, stamp_ns):
                return path, path[-1]
            if edge.parent in path:
                cycle = [*path[path.index(edge.parent):], edge.parent]
                raise TransformError("loop", f"the transform tree contains a loop: {' -> '.join(cycle)} "
                                     "(each frame's parent, /tf and /tf_static together)")
            path.append(edge.parent)
        return path, None

    def _known(self) -> list[str]:
        return sorted(set(self._edges) | {e.parent for e in self._edges.values()})

    def _covers(self, edge: _Edge, stamp_ns: int) -> bool:
        return edge.stamps[0] - self._tolerance_ns <= stamp_ns <= edge.stamps[-1] + self._tolerance_ns

    def _extrapolation(self, child: str, stamp_ns: int, source: str, target: str) -> TransformError:
        edge = self._edges[child]
        stamps = edge.stamps
        return TransformError(
            "extrapolation",
            f"no transform from {source!r} to {target!r} at t={stamp_ns * 1e-9:.3f} s: edge "
            f"{edge.parent!r} -> {child!r} has data only for [{stamps[0] * 1e-9:.3f}, {stamps[-1] * 1e-9:.3f}] s "
            f"(tolerance {self._tolerance_ns * 1e-9:.3f} s)",
        )

    def _latest_common_stamp(self, frames: list[str]) -> int:
        dynamic = [self._edges[f].stamps[-1] for f in frames if not self._edges[f].static]
        return min(dynamic) if dynamic else 0

    def _chain(self, frames: list[str], stamp_ns: int, source: str, target: str) -> np.ndarray:
        """Product of child_to_parent along `frames` (child first) -> frames[0]_to_ancestor."""
        out = np.eye(4)
        for child in frames:
            out = self._edge_matrix(child, stamp_ns, source, target) @ out
        return out

    def _edge_matrix(self, child: str, stamp_ns: int, source: str, target: str) -> np.ndarray:
        edge = self._edges[child]
        if edge.static:
            return edge.matrix
        stamps = edge.stamps
        if not self._covers(edge, stamp_ns):
            raise self._extrapolation(child, stamp_ns, source, target)
        i = bisect.bisect_left(stamps, stamp_ns)
        if i == 0:
            return _matrix(edge.translations[0], edge.rotations[0])
        if i == len(stamps):
            return _matrix(edge.translations[-1], edge.rotations[-1])
        w = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        translation = (1 - w) * edge.translations[i - 1] + w * edge.translations[i]
        return _matrix(translation, slerp(edge.rotations[i - 1], edge.rotations[i], w))


def slerp(q0: np.ndarray, q1: np.ndarray, w: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions (4,) (shortest arc), w in [0, 1]."""
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: normalised lerp is exact to float precision
        q = (1 - w) * q0 + w * q1
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - w) * theta) * q0 + np.sin(w * theta) * q1) / np.sin(theta)


def _matrix(translation: np.ndarray, rotation_wxyz: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = quat_to_rotmat(torch.from_numpy(rotation_wxyz)).numpy()
    out[:3, 3] = translation
    return out


def _rigid_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a rigid (4, 4) transform: [R^T, -R^T t]."""
    out = np.eye(4)
    out[:3, :3] = matrix[:3, :3].T
    out[:3, 3] = -matrix[:3, :3].T @ matrix[:3, 3]
    return out


def _frame(name: str, role: str) -> str:
    name = str(name).lstrip("/")
    if not name:
        raise ValueError(f"TransformBuffer: empty {role} frame id")
    return name
