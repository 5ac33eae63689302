"""Procedural, seeded driving scenes made of analytic primitives.

Everything lives in a *road frame* (x along the road, y left, z up, ground at z = 0, m); the
scene's `road2global` places it in the nuScenes global frame. Solids are boxes, vertical cylinders
and ellipsoids, each with a centre, half extents and a yaw about z; the ground is the plane z = 0
whose class depends on (x, y): lane bands, a median, sidewalks, terrain and rectangular patches.
The ego drives along its lane; no solid blocks that lane over the scene's duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gausstr_core.data.occ3d import OCC3D_CLASSES

BOX, CYLINDER, ELLIPSOID = 0, 1, 2
_ID = {name: i for i, name in enumerate(OCC3D_CLASSES)}


@dataclass
class Primitives:
    """M solids: kind (M,) BOX/CYLINDER/ELLIPSOID; centre (M, 3); half (M, 3) half extents
    (cylinder: radius, radius, half height); yaw (M,) rad; cls (M,) Occ3D ids. Road frame."""

    kind: np.ndarray
    centre: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    cls: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def radius(self) -> np.ndarray:
        """(M,) bounding-sphere radius."""
        return np.linalg.norm(self.half, axis=1)


@dataclass
class GroundLayout:
    """Ground classes: |y| bands plus patches (P, 5) rows (x0, x1, y0, y1, cls), later rows win."""

    road_half_width: float
    median_half_width: float  # 0: no median
    sidewalk_width: float
    patches: np.ndarray

    def classes(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) road-frame points -> (...) Occ3D ids of the ground there."""
        x, ay = xy[..., 0], np.abs(xy[..., 1])
        out = np.full(ay.shape, _ID["terrain"], dtype=np.int64)
        out[ay < self.road_half_width + self.sidewalk_width] = _ID["sidewalk"]
        out[ay < self.road_half_width] = _ID["driveable_surface"]
        out[ay < self.median_half_width] = _ID["other_flat"]
        y = xy[..., 1]
        near = self.patches[
            (self.patches[:, 1] > x.min(initial=np.inf)) & (self.patches[:, 0] <= x.max(initial=-np.inf))
        ]
        if len(near):
            x0, x1, y0, y1, cls = (col[None] for col in near.T)  # (1, P) each
            inside = (
                (x.reshape(-1, 1) >= x0) & (x.reshape(-1, 1) < x1) & (y.reshape(-1, 1) >= y0) & (y.reshape(-1, 1) < y1)
            )
            last = len(near) - 1 - inside[:, ::-1].argmax(axis=1)  # the last patch containing each point
            hit = inside.any(axis=1)
            flat = out.reshape(-1)
            flat[hit] = cls[0, last[hit]].astype(np.int64)
            out = flat.reshape(out.shape)
        return out


@dataclass
class EgoPath:
    """Ego motion: x = x0 + speed t, y = lane_y + wobble sin(omega t), yaw along the tangent."""

    x0: float
    lane_y: float
    speed: float  # m/s
    wobble: float  # m
    omega: float  # rad/s

    def ego2road(self, t: float) -> np.ndarray:
        """(4, 4) float64 ego pose in the road frame at time t s."""
        x = self.x0 + self.speed * t
        y = self.lane_y + self.wobble * math.sin(self.omega * t)
        yaw = math.atan2(self.wobble * self.omega * math.cos(self.omega * t), self.speed)
        return pose_2d(x, y, yaw)


@dataclass
class World:
    """One scene: solids, ground layout, ego path, sun direction (3,) and road2global (4, 4)."""

    solids: Primitives
    ground: GroundLayout
    path: EgoPath
    sun: np.ndarray
    road2global: np.ndarray


def pose_2d(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """(4, 4) float64 transform: rotation yaw about z, then translation (x, y, z)."""
    c, s = math.cos(yaw), math.sin(yaw)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:3, 3] = (x, y, z)
    return out


class _Builder:
    """Accumulates solids and ground patches."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.patches: list[tuple] = []

    def add(self, kind: int, cls: str, centre, half, yaw: float = 0.0) -> None:
        self.rows.append((kind, _ID[cls], *centre, *half, yaw))

    def patch(self, x0: float, x1: float, y0: float, y1: float, cls: str) -> None:
        self.patches.append((x0, x1, y0, y1, _ID[cls]))

    def solids(self) -> Primitives:
        a = np.asarray(self.rows, dtype=np.float64).reshape(-1, 9)
        return Primitives(a[:, 0].astype(np.int64), a[:, 2:5], a[:, 5:8], a[:, 8], a[:, 1].astype(np.int64))


def generate_world(rng: np.random.Generator, duration: float) -> World:
    """A random street scene in which the ego drives for `duration` seconds."""
    b = _Builder()
    road_hw = rng.uniform(6.0, 9.0)
    median_hw = rng.uniform(0.6, 1.2) if road_hw > 7.5 and rng.random() < 0.6 else 0.0
    sidewalk = rng.uniform(2.5, 4.5)
    parking = [rng.random() < 0.7 for _ in range(2)]  # right (y < 0), left (y > 0) curbs
    lane_y = -road_hw + (2.3 if parking[0] else 0.0) + 1.8
    speed = rng.uniform(4.0, 8.0)
    path = EgoPath(x0=0.0, lane_y=lane_y, speed=speed, wobble=rng.uniform(0.0, 0.3), omega=rng.uniform(0.3, 0.8))
    x_lo, x_hi = -90.0, speed * duration + 110.0
    ego_x = (-6.0, speed * duration + 12.0)

    for side, parked in zip((-1.0, 1.0), parking):
        _roadside(b, rng, side, road_hw, sidewalk, x_lo, x_hi)
        if parked:
            _vehicle_row(b, rng, side * (road_hw - 1.15), x_lo, x_hi, 0.6, None, 0.0 if side < 0 else math.pi)
    # Traffic standing in the other lanes and beyond the ego's stretch of its own lane.
    lanes = np.arange(-road_hw + (2.3 if parking[0] else 0.0) + 1.8, road_hw - (2.3 if parking[1] else 0.0) - 1.0, 3.5)
    for y in lanes:
        if abs(y) < median_hw + 1.2:
            continue
        own = abs(y - lane_y) < 1.0
        heading = 0.0 if y < 0 else math.pi
        _vehicle_row(b, rng, y, x_lo, x_hi, 0.35, ego_x if own else None, heading)
    if rng.random() < 0.6:  # works zone: cones or barriers along a lane edge on the far side
        _works(b, rng, road_hw, median_hw, x_lo, x_hi)
    if median_hw > 0:
        for x in np.arange(x_lo, x_hi, rng.uniform(10, 20)):
            b.add(BOX, "manmade", (x, 0.0, 0.35), (0.5, 0.3, 0.4))  # median kerb blocks

    yaw = rng.uniform(-math.pi, math.pi)
    origin = rng.uniform(200.0, 1800.0, size=2)
    azimuth = rng.uniform(0, 2 * math.pi)
    sun = np.array([math.cos(azimuth), math.sin(azimuth), rng.uniform(0.5, 1.2)])
    ground = GroundLayout(road_hw, median_hw, sidewalk, np.asarray(b.patches, dtype=np.float64).reshape(-1, 5))
    return World(b.solids(), ground, path, sun / np.linalg.norm(sun), pose_2d(origin[0], origin[1], yaw))


def _roadside(
    b: _Builder, rng: np.random.Generator, side: float, road_hw: float, sidewalk: float, x_lo: float, x_hi: float
) -> None:
    """Sidewalk furniture, pedestrians, then lots of buildings, walls and parks."""
    kerb = road_hw
    x = x_lo + rng.uniform(0, 8)
    while x < x_hi:  # poles, some with signs
        b.add(CYLINDER, "manmade", (x, side * (kerb + 0.5), 3.0), (0.2, 0.2, 3.05))
        if rng.random() < 0.4:
            b.add(BOX, "manmade", (x, side * (kerb + 0.5), 5.2), (0.15, 0.6, 0.4))
        x += rng.uniform(10, 22)
    x = x_lo + rng.uniform(0, 6)
    while x < x_hi:  # street trees in terrain pits
        y = side * (kerb + sidewalk - 1.0)
        b.patch(x - 0.7, x + 0.7, y - 0.7, y + 0.7, "terrain")
        h = rng.uniform(2.0, 3.2)
        b.add(CYLINDER, "vegetation", (x, y, h / 2 - 0.05), (0.3, 0.3, h / 2))
        r = rng.uniform(1.4, 2.4)
        b.add(ELLIPSOID, "vegetation", (x, y, h + r * 0.6), (r, r, r * 0.8))
        if rng.random() < 0.3:  # a bicycle parked next to the tree
            b.add(BOX, "bicycle", (x + 1.3, y, 0.5), (0.85, 0.3, 0.55), rng.uniform(-0.3, 0.3))
        x += rng.uniform(7, 14)
    for _ in range(int((x_hi - x_lo) / 100 * rng.uniform(8, 20))):  # pedestrians
        x = rng.uniform(x_lo, x_hi)
        y = side * (kerb + rng.uniform(0.8, sidewalk - 0.3))
        h = rng.uniform(1.55, 1.9)
        b.add(CYLINDER, "pedestrian", (x, y, h / 2 - 0.05), (0.25, 0.25, h / 2))
    x = x_lo
    edge = kerb + sidewalk
    while x < x_hi:
        length = rng.uniform(8, 24)
        setback = rng.uniform(0.0, 3.0)
        kind = rng.choice(3, p=(0.6, 0.2, 0.2))
        if kind == 0:  # building
            depth, height = rng.uniform(8, 16), rng.uniform(5, 20)
            b.add(
                BOX,
                "manmade",
                (x + length / 2, side * (edge + setback + depth / 2), height / 2 - 0.05),
                (length / 2, depth / 2, height / 2),
                rng.uniform(-0.05, 0.05),
            )
            if setback > 1.0 and rng.random() < 0.5:  # paved forecourt
                b.patch(x, x + length, *sorted((side * edge, side * (edge + setback))), "other_flat")
        elif kind == 1:  # wall or fence with hedge behind
            h = rng.uniform(1.2, 2.5)
            y = side * (edge + setback)
            b.add(BOX, "manmade", (x + length / 2, y, h / 2 - 0.05), (length / 2, 0.3, h / 2))
            for hx in np.arange(x + 1.0, x + length - 0.5, 2.0):
                r = rng.uniform(1.0, 1.6)
                b.add(ELLIPSOID, "vegetation", (hx, y + side * (r + 0.3), r * 0.8), (r, r, r * 1.1))
        else:  # park: trees and bushes on terrain
            for _ in range(int(length / 5) + 1):
                tx, ty = x + rng.uniform(1, length - 1), side * (edge + setback + rng.uniform(1, 10))
                h, r = rng.uniform(2.0, 3.5), rng.uniform(1.5, 3.0)
                b.add(CYLINDER, "vegetation", (tx, ty, h / 2 - 0.05), (0.3, 0.3, h / 2))
                b.add(ELLIPSOID, "vegetation", (tx, ty, h + r * 0.7), (r, r, r))
                bx, by = x + rng.uniform(0, length), side * (edge + setback + rng.uniform(0.5, 10))
                rb = rng.uniform(0.5, 1.2)
                b.add(ELLIPSOID, "vegetation", (bx, by, rb * 0.5), (rb, rb, rb * 0.8))
        x += length + rng.uniform(0.0, 4.0)


_VEHICLES = {  # name: (length, width, height, relative frequency)
    "car": (4.5, 1.9, 1.6, 0.75),
    "truck": (8.0, 2.5, 3.2, 0.15),
    "bus": (12.0, 2.6, 3.3, 0.10),
    "motorcycle": (2.1, 0.8, 1.3, 0.08),
}


def _vehicle_row(
    b: _Builder,
    rng: np.random.Generator,
    y: float,
    x_lo: float,
    x_hi: float,
    density: float,
    keep_out: tuple[float, float] | None,
    heading: float,
) -> None:
    """Vehicles one behind the other along y; `density` is the chance a slot is taken."""
    names = list(_VEHICLES)
    weights = np.array([v[3] for v in _VEHICLES.values()])
    x = x_lo
    while x < x_hi:
        name = names[rng.choice(len(names), p=weights / weights.sum())]
        length, width, height, _ = _VEHICLES[name]
        length *= rng.uniform(0.9, 1.1)
        centre = x + length / 2
        blocked = keep_out is not None and keep_out[0] - length < centre < keep_out[1] + length
        if rng.random() < density and not blocked:
            yaw = heading + rng.uniform(-0.04, 0.04)
            if name == "car":  # body and cabin
                b.add(BOX, "car", (centre, y, 0.45), (length / 2, width / 2, 0.5), yaw)
                b.add(
                    BOX,
                    "car",
                    (centre - 0.3 * math.cos(yaw), y, 1.2),
                    (length * 0.28, width * 0.44, height / 2 - 0.55),
                    yaw,
                )
            elif name == "truck":  # cab and cargo box
                ahead = math.cos(yaw)
                b.add(BOX, "truck", (centre + ahead * (length / 2 - 1.0), y, 1.3), (1.0, width / 2, 1.35), yaw)
                b.add(
                    BOX, "truck", (centre - ahead * 1.1, y, height / 2), (length / 2 - 1.1, width / 2, height / 2), yaw
                )
            else:  # bus, motorcycle: one block
                b.add(BOX, name, (centre, y, height / 2 - 0.05), (length / 2, width / 2, height / 2), yaw)
        x += length + rng.uniform(1.0, 6.0)


def _works(b: _Builder, rng: np.random.Generator, road_hw: float, median_hw: float, x_lo: float, x_hi: float) -> None:
    """A row of traffic cones or barriers along the far lanes."""
    x0 = rng.uniform(x_lo + 60, x_hi - 60)
    y = rng.uniform(max(median_hw, 0.5) + 0.5, road_hw - 3.0)
    if rng.random() < 0.5:
        for x in np.arange(x0, x0 + rng.uniform(15, 40), 2.0):
            b.add(CYLINDER, "traffic_cone", (x, y, 0.33), (0.25, 0.25, 0.38))
    else:
        for x in np.arange(x0, x0 + rng.uniform(15, 40), 2.2):
            b.add(BOX, "barrier", (x, y, 0.45), (1.0, 0.3, 0.5))
