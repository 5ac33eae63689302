"""Exact, vectorised ray casting against a `World` (road frame, m).

Every ray is tested against every nearby solid at once in each solid's normalised local frame
(box: unit cube, cylinder: unit-radius cylinder |z| <= 1, ellipsoid: unit sphere) and against the
ground plane z = 0; the nearest hit wins. Solids whose bounding sphere lies outside the ray
bundle's cone or beyond `cull_range` are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gausstr_core.data.synthetic.scene import BOX, CYLINDER, ELLIPSOID, World
from gausstr_core.synthetic_palette import SKY_ID

_EPS = 1e-4


@dataclass
class RayHits:
    """distance (N,) along the unit direction, inf where nothing is hit; cls (N,) Occ3D ids (17 =
    sky); normal (N, 3) unit surface normals; point (N, 3) hit points. Road frame."""

    distance: torch.Tensor
    cls: torch.Tensor
    normal: torch.Tensor
    point: torch.Tensor


class RayCaster:
    """Casts grids of rays (camera images, lidar range images) into one world.

    Rays come as an (H, W) grid; they are grouped in `tile` x `tile` blocks and each block is only
    tested against the solids whose bounding sphere meets the block's cone of directions, so the
    work is about (rays x solids overlapping each ray) rather than (rays x all solids).
    """

    def __init__(
        self,
        world: World,
        cull_range: float = 150.0,
        ground_range: float = 1000.0,
        tile: int = 8,
        max_pairs: int = 4_000_000,
    ):
        s = world.solids
        self.world = world
        self.kind = torch.as_tensor(s.kind)
        self.centre = torch.as_tensor(s.centre, dtype=torch.float32)
        self.half = torch.as_tensor(s.half, dtype=torch.float32)
        self.cos = torch.as_tensor(s.yaw, dtype=torch.float32).cos()
        self.sin = torch.as_tensor(s.yaw, dtype=torch.float32).sin()
        self.cls = torch.as_tensor(s.cls)
        self.radius = torch.as_tensor(s.radius, dtype=torch.float32)
        self.cull_range = cull_range
        self.ground_range = ground_range
        self.tile = tile
        self.max_pairs = max_pairs

    def cast(self, origins: torch.Tensor, dirs: torch.Tensor) -> RayHits:
        """origins, dirs: (H, W, 3) road frame (dirs unit length, neighbours similar) -> RayHits
        with (H * W) rays in row-major order."""
        if origins.shape != dirs.shape or origins.ndim != 3 or origins.shape[-1] != 3:
            raise ValueError(
                f"RayCaster.cast: need (H, W, 3) origins and dirs, got {tuple(origins.shape)}, {tuple(dirs.shape)}"
            )
        height, width = origins.shape[:2]
        tiled_o, tiled_d = _tiles(origins.float(), self.tile), _tiles(dirs.float(), self.tile)  # (T, R, 3)
        distance, prim = self._nearest_solid(tiled_o, tiled_d)
        distance = _untile(distance, height, width, self.tile)
        prim = _untile(prim, height, width, self.tile)
        origins, dirs = origins.reshape(-1, 3).float(), dirs.reshape(-1, 3).float()

        t_ground = torch.where(dirs[:, 2] < -1e-6, -origins[:, 2] / dirs[:, 2].clamp(max=-1e-6), torch.inf)
        t_ground = torch.where((t_ground > 0) & (t_ground < self.ground_range), t_ground, torch.inf)
        on_ground = t_ground < distance
        distance = torch.minimum(distance, t_ground)
        point = origins + dirs * torch.where(torch.isfinite(distance), distance, 0.0)[:, None]

        cls = torch.full((len(origins),), SKY_ID, dtype=torch.long)
        normal = torch.zeros_like(origins)
        normal[:, 2] = 1.0
        solid = torch.isfinite(distance) & ~on_ground
        if solid.any():
            p = prim[solid]
            cls[solid] = self.cls[p]
            normal[solid] = self._normals(point[solid], p)
        if on_ground.any():
            xy = point[on_ground, :2].double().numpy()
            cls[on_ground] = torch.from_numpy(self.world.ground.classes(xy))
        return RayHits(distance, cls, normal, point)

    def _candidates(self, origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """(T, M) bool: solids whose bounding sphere may meet tile t's rays."""
        centre = origins.mean(1)  # (T, 3)
        spread = (origins - centre[:, None]).norm(dim=-1).amax(1)
        axis = dirs.mean(1)
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        half_angle = torch.arccos((dirs * axis[:, None]).sum(-1).amin(1).clamp(-1, 1))  # (T,)
        to = self.centre[None] - centre[:, None]  # (T, M, 3)
        dist = to.norm(dim=-1).clamp(min=1e-6)
        reach = self.radius[None] + spread[:, None]
        angle = torch.arccos(((to * axis[:, None]).sum(-1) / dist).clamp(-1, 1))
        margin = torch.arcsin((reach / dist).clamp(max=1.0))
        near = dist <= reach
        return (dist - reach < self.cull_range) & (near | (angle - margin <= half_angle[:, None]))

    def _nearest_solid(self, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tiles (T, R, 3) -> nearest solid distance (T, R) (inf: none) and its index (T, R)."""
        n_tiles, rays = origins.shape[:2]
        best = torch.full((n_tiles * rays,), torch.inf)
        best_idx = torch.zeros(n_tiles * rays, dtype=torch.long)
        if len(self.kind) == 0:
            return best.reshape(n_tiles, rays), best_idx.reshape(n_tiles, rays)
        step = max(1, self.max_pairs // (len(self.kind) * 4))
        flat_o, flat_d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        arange = torch.arange(rays)
        for first in range(0, n_tiles, step):
            tile_idx, prims = self._candidates(origins[first : first + step], dirs[first : first + step]).nonzero(
                as_tuple=True
            )
            if len(prims) == 0:
                continue
            ray_idx = ((tile_idx + first)[:, None] * rays + arange[None]).reshape(-1)
            prims = prims[:, None].expand(-1, rays).reshape(-1)
            t = torch.full((len(prims),), torch.inf)
            for kind, hit in ((BOX, _hit_box), (CYLINDER, _hit_cylinder), (ELLIPSOID, _hit_ellipsoid)):
                sel = (self.kind[prims] == kind).nonzero().squeeze(1)
                if len(sel):
                    o, d = self._local(flat_o[ray_idx[sel]], flat_d[ray_idx[sel]], prims[sel])
                    t[sel] = hit(o, d)
            best.scatter_reduce_(0, ray_idx, t, reduce="amin")
            won = torch.isfinite(t) & (t == best[ray_idx])
            best_idx[ray_idx[won]] = prims[won]
        return best.reshape(n_tiles, rays), best_idx.reshape(n_tiles, rays)

    def _local(
        self, origins: torch.Tensor, dirs: torch.Tensor, prims: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays (P, 3) in the normalised frames of solids `prims` (P,): origins, directions (P, 3)."""
        c, s, half = self.cos[prims], self.sin[prims], self.half[prims]
        rel = origins - self.centre[prims]
        o = torch.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], -1)
        d = torch.stack([c * dirs[:, 0] + s * dirs[:, 1], -s * dirs[:, 0] + c * dirs[:, 1], dirs[:, 2]], -1)
        return o / half, d / half

    def _normals(self, points: torch.Tensor, prims: torch.Tensor) -> torch.Tensor:
        """Unit outward normals (K, 3) of solids `prims` (K,) at surface points (K, 3)."""
        q, _ = self._local(points, points, prims)
        half = self.half[prims]
        kind = self.kind[prims]
        n = q / half  # ellipsoid: gradient of |q|^2
        box = kind == BOX
        if box.any():
            axis = q[box].abs().argmax(dim=1)
            n_box = torch.zeros_like(q[box])
            n_box.scatter_(1, axis[:, None], q[box].gather(1, axis[:, None]).sign())
            n[box] = n_box
        cyl = kind == CYLINDER
        if cyl.any():
            qc = q[cyl]
            cap = qc[:, 2].abs() > 1 - 1e-3
            zero = torch.zeros_like(qc[:, 0])
            side = torch.stack([qc[:, 0] / half[cyl, 0], qc[:, 1] / half[cyl, 1], zero], -1)
            top = torch.stack([zero, zero, qc[:, 2].sign()], -1)
            n[cyl] = torch.where(cap[:, None], top, side)
        n = n / n.norm(dim=1, keepdim=True).clamp(min=1e-9)
        c, s = self.cos[prims], self.sin[prims]
        return torch.stack([c * n[:, 0] - s * n[:, 1], s * n[:, 0] + c * n[:, 1], n[:, 2]], -1)


def _tiles(grid: torch.Tensor, tile: int) -> torch.Tensor:
    """(H, W, 3) -> (T, tile * tile, 3), padding the edges by repetition."""
    height, width = grid.shape[:2]
    pad_h, pad_w = -height % tile, -width % tile
    if pad_h or pad_w:
        grid = torch.nn.functional.pad(grid.permute(2, 0, 1)[None], (0, pad_w, 0, pad_h), mode="replicate")[0].permute(
            1, 2, 0
        )
    h, w = grid.shape[0] // tile, grid.shape[1] // tile
    return grid.reshape(h, tile, w, tile, 3).permute(0, 2, 1, 3, 4).reshape(h * w, tile * tile, 3)


def _untile(values: torch.Tensor, height: int, width: int, tile: int) -> torch.Tensor:
    """(T, tile * tile) -> (H * W) row-major, dropping the padding."""
    h, w = -(-height // tile), -(-width // tile)
    full = values.reshape(h, w, tile, tile).permute(0, 2, 1, 3).reshape(h * tile, w * tile)
    return full[:height, :width].reshape(-1)


def _safe_inverse(d: torch.Tensor) -> torch.Tensor:
    return 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)


def _hit_box(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Entry distance into the unit cube [-1, 1]^3, inf if missed or behind. o, d (N, M, 3)."""
    inv = _safe_inverse(d)
    t1, t2 = (-1 - o) * inv, (1 - o) * inv
    t_near = torch.minimum(t1, t2).amax(-1)
    t_far = torch.maximum(t1, t2).amin(-1)
    return torch.where((t_near <= t_far) & (t_near > _EPS), t_near, torch.inf)


def _hit_ellipsoid(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Entry distance into the unit sphere."""
    a = (d * d).sum(-1)
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - 1
    disc = b * b - a * c
    t = (-b - disc.clamp(min=0).sqrt()) / a
    return torch.where((disc >= 0) & (t > _EPS), t, torch.inf)


def _hit_cylinder(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Entry distance into the unit cylinder x^2 + y^2 <= 1, |z| <= 1."""
    a = (d[..., :2] ** 2).sum(-1).clamp(min=1e-12)
    b = (o[..., :2] * d[..., :2]).sum(-1)
    c = (o[..., :2] ** 2).sum(-1) - 1
    disc = b * b - a * c
    t_side = (-b - disc.clamp(min=0).sqrt()) / a
    z_side = o[..., 2] + t_side * d[..., 2]
    side_ok = (disc >= 0) & (t_side > _EPS) & (z_side.abs() <= 1)
    t_cap = (-torch.sign(d[..., 2]) - o[..., 2]) * _safe_inverse(d[..., 2])
    xy_cap = o[..., :2] + t_cap[..., None] * d[..., :2]
    cap_ok = (t_cap > _EPS) & ((xy_cap**2).sum(-1) <= 1)
    t = torch.where(side_ok, t_side, torch.inf)
    return torch.minimum(t, torch.where(cap_ok, t_cap, torch.inf))
