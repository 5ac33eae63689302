"""Benchmark the splatting renderer on a nuScenes-like scene.

Six 112x200 views of the nuScenes rig, 300 Gaussians per view (1800) placed like GaussTR's
(pixel + metric depth back-projected, scale s * depth * 7.5 / fx with s in [1, 16], rotation =
camera rotation), 128 feature channels (the PCA dims). Prints forward and forward+backward time
and peak memory of the PyTorch path on CPU, its speed against a brute-force per-pixel reference
at a small size (ratio measured in the same run), and gsplat vs torch on CUDA when available.

Usage: python benchmarks/render.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch

from gausstr_core.geometry import make_transform, quat_to_rotmat, resize_crop_matrix, rotmat_to_quat, unproject_pixels
from gausstr_core.render import project_gaussians, render_gaussians
from gausstr_core.render.projection import ALPHA_THRESHOLD, EPS2D

# (fx=fy, cx, cy, translation, rotation wxyz), docs/model_and_data_facts.md section 3
RIG = (
    (1266.42, 816.27, 491.51, (1.701, 0.016, 1.511), (0.4998, -0.5030, 0.4998, -0.4974)),
    (1260.85, 807.97, 495.33, (1.551, -0.493, 1.496), (0.2060, -0.2027, 0.6825, -0.6714)),
    (1272.60, 826.62, 479.75, (1.524, 0.495, 1.509), (0.6757, -0.6736, 0.2121, -0.2112)),
    (809.22, 829.22, 481.78, (0.028, 0.003, 1.579), (0.5038, -0.4974, -0.4942, 0.5045)),
    (1256.74, 792.11, 492.78, (1.036, 0.485, 1.591), (0.6924, -0.7032, -0.1165, 0.1120)),
    (1259.51, 807.25, 501.20, (1.015, -0.481, 1.562), (0.1228, -0.1324, -0.7004, 0.6905)),
)


def nuscenes_scene(per_view: int, channels: int, scale: float, image_size: tuple[int, int], seed: int = 0) -> dict:
    """GaussTR-like Gaussians for the six-camera rig; returns render_gaussians keyword arguments."""
    gen = torch.Generator().manual_seed(seed)
    views = len(RIG)
    intrinsics = torch.stack([torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1.0]]) for f, cx, cy, _, _ in RIG])
    cam2ego = torch.stack(
        [make_transform(quat_to_rotmat(torch.tensor(q)), torch.tensor(t)) for _, _, _, t, q in RIG]
    )
    original_to_input = resize_crop_matrix(scale).expand(views, 3, 3)
    height, width = image_size
    uv = torch.rand(views, per_view, 2, generator=gen) * torch.tensor([width, height])
    depth = torch.exp(torch.empty(views, per_view).uniform_(0.7, 3.9, generator=gen))  # 2 .. 50 m
    means = unproject_pixels(uv, depth, cam2ego, intrinsics, original_to_input)  # (views, per_view, 3)
    s = 1 + 15 * torch.rand(views, per_view, 3, generator=gen)
    scales = s * (depth * 7.5 / intrinsics[:, 0, 0, None])[..., None]
    quats = rotmat_to_quat(cam2ego[:, :3, :3])[:, None].expand(views, per_view, 4)
    gaussians = views * per_view
    return dict(
        means=means.reshape(1, gaussians, 3),
        quats=quats.reshape(1, gaussians, 4).contiguous(),
        scales=scales.reshape(1, gaussians, 3),
        opacities=torch.sigmoid(torch.randn(1, gaussians, generator=gen)),
        colors=torch.randn(1, gaussians, channels, generator=gen),
        cam2ego=cam2ego[None],
        intrinsics=intrinsics[None],
        original_to_input=original_to_input[None].contiguous(),
        image_size=image_size,
    )


def brute_force(scene: dict) -> torch.Tensor:
    """Per-pixel Python loop over depth-sorted Gaussians with gsplat's rule: (B, N, D + 1, H, W)."""
    cam2ego, ks = scene["cam2ego"], scene["original_to_input"] @ scene["intrinsics"]
    proj = project_gaussians(
        scene["means"], scene["quats"], scene["scales"], torch.linalg.inv(cam2ego), ks, scene["image_size"],
        opacities=scene["opacities"], eps2d=EPS2D, near=0.1, far=100.0,
    )
    batch, views, _ = proj.depths.shape
    height, width = scene["image_size"]
    channels = scene["colors"].shape[-1]
    out = torch.zeros(batch, views, channels + 1, height, width)
    for b in range(batch):
        opacity, colors = scene["opacities"][b].tolist(), scene["colors"][b].tolist()
        for n in range(views):
            order = [g for g in torch.argsort(proj.depths[b, n]).tolist() if proj.radii[b, n, g].min() > 0]
            mu, con, z = proj.means2d[b, n].tolist(), proj.conics[b, n].tolist(), proj.depths[b, n].tolist()
            for i in range(height):
                for j in range(width):
                    trans, acc = 1.0, [0.0] * (channels + 1)
                    for g in order:
                        du, dv = j + 0.5 - mu[g][0], i + 0.5 - mu[g][1]
                        sigma = 0.5 * (con[g][0] * du * du + con[g][2] * dv * dv) + con[g][1] * du * dv
                        alpha = min(0.999, opacity[g] * math.exp(-sigma))
                        if alpha < ALPHA_THRESHOLD:
                            continue
                        if trans * (1 - alpha) <= 1e-4:
                            break
                        acc = [a + alpha * trans * f for a, f in zip(acc, colors[g] + [z[g]])]
                        trans *= 1 - alpha
                    out[b, n, :, i, j] = torch.tensor(acc)
    return out


def timed(fn, repeats: int) -> float:
    """Best wall-clock seconds of `repeats` calls (the machine may be shared: best is least disturbed)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_timings(scene: dict, repeats: int) -> tuple[float, float, float, float]:
    """Best forward (no grad) and forward+backward wall seconds, CPU seconds per forward+backward,
    and the peak RSS growth in MiB."""
    leaves = ("means", "scales", "opacities", "colors")

    def forward() -> None:
        with torch.no_grad():
            render_gaussians(**scene, backend="torch")

    def forward_backward() -> None:
        inputs = {**scene, **{k: scene[k].clone().requires_grad_(True) for k in leaves}}
        out = render_gaussians(**inputs, backend="torch")
        (out.features.square().mean() + out.depth.mean() + out.alpha.mean()).backward()

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t_fwd = timed(forward, repeats)
    cpu_start = cpu_seconds()
    t_fb = timed(forward_backward, repeats)
    cpu_fb = (cpu_seconds() - cpu_start) / repeats
    return t_fwd, t_fb, cpu_fb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    scenes = {  # smallest first, so each peak-RSS growth is that scene's own
        "6 views 112x200, 768 Gaussians, 32 channels (tiny config)": nuscenes_scene(128, 32, 0.125, (112, 200)),
        "6 views 112x200, 1800 Gaussians, 128 channels": nuscenes_scene(300, 128, 0.125, (112, 200)),
    }
    print(f"CPU, PyTorch path, {args.threads} threads, best of {args.repeats}:")
    for name, scene in scenes.items():
        t_fwd, t_fb, cpu_fb, rss = cpu_timings(scene, args.repeats)
        print(f"  {name}: forward {t_fwd * 1e3:.0f} ms, forward+backward {t_fb * 1e3:.0f} ms "
              f"({cpu_fb * 1e3:.0f} ms CPU time), peak RSS growth {rss:.0f} MiB")

    small = nuscenes_scene(per_view=50, channels=8, scale=0.0625, image_size=(56, 100), seed=1)
    start = time.perf_counter()
    reference = brute_force(small)
    t_ref = time.perf_counter() - start
    t_small = timed(lambda: render_gaussians(**small, backend="torch"), args.repeats)
    out = render_gaussians(**small, backend="torch")
    ours = torch.cat([out.features, out.depth[:, :, None]], 2)
    print("small scene (6 views 56x100, 300 Gaussians, 8 channels):")
    print(f"  brute force {t_ref * 1e3:.0f} ms, torch {t_small * 1e3:.1f} ms, ratio {t_ref / t_small:.0f}x, "
          f"max abs diff {(ours - reference).abs().max():.2e}")

    if not torch.cuda.is_available():
        print("CUDA not available: gsplat comparison skipped")
        return
    full = scenes["6 views 112x200, 1800 Gaussians, 128 channels"]
    cuda = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in full.items()}
    fast, ref = render_gaussians(**cuda, backend="gsplat"), render_gaussians(**cuda, backend="torch")
    for name in ("features", "depth", "alpha"):
        diff = (getattr(fast, name) - getattr(ref, name)).abs().max().item()
        print(f"CUDA gsplat vs torch: {name} max abs diff {diff:.2e}")
    leaves = ("means", "scales", "opacities", "colors")
    for backend in ("torch", "gsplat"):
        def step(backend: str = backend) -> None:
            inputs = {**cuda, **{k: cuda[k].clone().requires_grad_(True) for k in leaves}}
            out = render_gaussians(**inputs, backend=backend)
            (out.features.square().mean() + out.depth.mean()).backward()
            torch.cuda.synchronize()

        step()
        print(f"CUDA {backend}: forward+backward {timed(step, args.repeats) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
