"""ROS-side per-frame costs: JPEG decoding of six full-resolution views and output message building.

    python benchmarks/ros_msgs.py            # ~30 s on a 2-core CPU
    python benchmarks/ros_msgs.py --device cuda   # adds nvjpeg decoding

Prints measured numbers only (median of repeats, ms) and ratios measured in the same run:
torchvision decode_jpeg vs PIL on the same bytes, libjpeg reduced-scale decoding vs full
decoding, and every cost as a fraction of the 83 ms camera period (12 Hz). The JPEG is a textured
1600x900 picture encoded at quality 90 (>= 150 KB, like nuScenes images). Markers: the first
frame constructs the Marker objects; later frames reuse them (MarkerPublisherState pool).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image as PILImage
from rclpy.serialization import serialize_message

from gausstr_core.data.occ3d import FREE_ID, OCC3D_CLASSES
from gausstr_core.grid import VoxelGrid
from gausstr_ros.gaussian_msgs import DEFAULT_MAX_MARKERS, MarkerPublisherState, gaussian_array_msg, gaussian_markers
from gausstr_ros.image_codec import compressed_image_msg, decode_image_msg
from gausstr_ros.occupancy_msgs import bev_occupancy_grid, occupied_points_msg, semantic_occupancy_msg
from gausstr_ros.stamps import make_header

PERIOD_MS = 1000 / 12
VIEWS = 6


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def resize(images: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """uint8 (3, h, w) views -> (V, 3, H, W) float in [0, 1], antialiased bilinear (as preprocessing does)."""
    return torch.cat([torch.nn.functional.interpolate(i[None].float() / 255, size=size, mode="bilinear",
                                                      antialias=True, align_corners=False) for i in images])


def textured_jpeg(rng: np.random.Generator) -> bytes:
    """1600x900 street-like picture: smooth gradients + blocks + fine noise, JPEG quality 90."""
    y, x = np.mgrid[0:900, 0:1600].astype(np.float32)
    base = np.stack([x / 1600 * 200, y / 900 * 180, (x + y) / 2500 * 150], axis=-1)
    blocks = rng.uniform(-60, 60, (18, 32, 3)).repeat(50, axis=0).repeat(50, axis=1)
    image = np.clip(base + blocks + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(image).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def row(name: str, ms: float, note: str = "") -> None:
    print(f"  {name:<44s} {ms:8.2f} ms  {ms / PERIOD_MS:6.3f} x period  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared 2-core CPU, idle OpenMP workers add ms per small op)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    header = make_header("CAM_FRONT", 0)
    jpeg = textured_jpeg(rng)
    msgs = [compressed_image_msg(jpeg, header) for _ in range(VIEWS)]
    print(f"torch threads {torch.get_num_threads()}; JPEG 1600x900 {len(jpeg) / 1024:.0f} KB; camera period "
          f"{PERIOD_MS:.1f} ms")

    print(f"decode {VIEWS} views (RGB uint8), then resize to the network input:")
    tv = median_ms(lambda: [decode_image_msg(m) for m in msgs], args.repeats)
    pil = median_ms(lambda: [np.asarray(PILImage.open(io.BytesIO(jpeg)).convert("RGB")) for _ in msgs], args.repeats)
    row("torchvision decode_jpeg, full size", tv)
    row("PIL, full size", pil, f"torchvision/PIL = {tv / pil:.2f}")
    for size in [(504, 896), (112, 200)]:
        full_then_resize = median_ms(lambda size=size: [resize([decode_image_msg(m)], size) for m in msgs],
                                     args.repeats)
        row(f"full decode + resize to {size[0]}x{size[1]}", full_then_resize)
        got = tuple(decode_image_msg(msgs[0], min_size=size).shape[1:])
        if got != (900, 1600):  # a libjpeg reduced scale covers this input size
            scaled = median_ms(lambda size=size: [resize([decode_image_msg(m, min_size=size)], size) for m in msgs],
                               args.repeats)
            ratio = f"vs full = {scaled / full_then_resize:.2f}"
            row(f"decode at {got[0]}x{got[1]} (min_size) + resize", scaled, ratio)
    if args.device != "cpu":
        gpu = median_ms(lambda: ([decode_image_msg(m, device=args.device) for m in msgs],
                                 torch.cuda.synchronize()), args.repeats)
        row(f"nvjpeg on {args.device}", gpu, f"vs CPU full = {gpu / tv:.2f}")

    print("output messages (Occ3D grid 200x200x16, 1800 Gaussians), build + serialize:")
    grid = VoxelGrid()
    labels = np.full(grid.dims, FREE_ID, np.uint8)
    occupied = rng.random(grid.dims) < 0.08  # ~51k occupied voxels, above the point cap
    labels[occupied] = rng.integers(1, 17, int(occupied.sum()))
    conf = rng.random(grid.dims).astype(np.float32)
    n = 1800
    quats = rng.normal(size=(n, 4))
    gauss = dict(means=rng.normal(size=(n, 3)) * 20, scales=rng.uniform(0.1, 2, (n, 3)),
                 quats=quats / np.linalg.norm(quats, axis=1, keepdims=True), opacities=rng.random(n),
                 labels=rng.integers(0, 17, n))
    base = make_header("base_link", 0)
    state, state_all = MarkerPublisherState(), MarkerPublisherState()  # steady state: pooled markers reused
    first = median_ms(lambda: gaussian_markers(**gauss, class_names=OCC3D_CLASSES, header=base,
                                               state=MarkerPublisherState()), 3)
    builders = {
        "SemanticOccupancy (+confidence)": lambda: semantic_occupancy_msg(labels, grid, OCC3D_CLASSES, FREE_ID, base,
                                                                          confidence=conf),
        "PointCloud2, 15000 of 51k points": lambda: occupied_points_msg(labels, grid, OCC3D_CLASSES, FREE_ID, base),
        "OccupancyGrid BEV": lambda: bev_occupancy_grid(labels, grid, range(1, 11), (-0.5, 2.5), base),
        "GaussianArray": lambda: gaussian_array_msg(**gauss, confidences=gauss["opacities"],
                                                    class_names=OCC3D_CLASSES, header=base),
        f"MarkerArray, {DEFAULT_MAX_MARKERS} SPHEREs (default cap)": lambda: gaussian_markers(
            **gauss, class_names=OCC3D_CLASSES, header=base, state=state),
        "MarkerArray, all 1800 SPHEREs": lambda: gaussian_markers(
            **gauss, class_names=OCC3D_CLASSES, header=base, state=state_all, max_markers=n),
    }
    total = 0.0
    for name, build in builders.items():
        built = median_ms(build, args.repeats)
        msg = build()
        ser = median_ms(lambda msg=msg: serialize_message(msg), args.repeats)
        row(name, built, f"+ serialize {ser:.2f} ms ({len(serialize_message(msg)) / 1024:.0f} KB)")
        total += built + ser
        all_markers = built + ser  # the last builder: uncapped markers, not part of the default total
    row("all outputs (default caps), build + serialize", total - all_markers)
    row(f"(MarkerArray first frame, {DEFAULT_MAX_MARKERS} markers constructed)", first)


if __name__ == "__main__":
    main()
