"""One synchronised camera set (image, optional depth, calibration) -> predictor Views.

Every failure raises InputError(kind, source, message): kind names the problem class reported in
/diagnostics ("bad image", "bad depth", "camera_info", "tf"), source the camera.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from sensor_msgs.msg import CompressedImage, Image

from gausstr_core.predict import Views
from gausstr_ros.image_codec import CameraIntrinsics, ImageDecodeError, decode_depth_msg, decode_image_msg
from gausstr_ros.stamps import stamp_to_ns
from gausstr_ros.tf_buffer import TransformBuffer


@functools.cache
def _decode_pool() -> ThreadPoolExecutor:
    """Threads for image decoding (libjpeg and nvjpeg release the GIL): one per core, at most 6."""
    return ThreadPoolExecutor(max_workers=min(6, os.cpu_count() or 1), thread_name_prefix="gausstr_decode")


class InputError(ValueError):
    """Unusable input: `kind` of problem, `source` camera, readable message."""

    def __init__(self, kind: str, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.kind, self.source, self.message = kind, source, message


@dataclass(frozen=True)
class FrameSet:
    """One synchronised set: per camera (model order) the image and optional depth message.

    stamps_ns: image stamps; arrival_s: monotonic time at which the set's first message arrived.
    """

    stamps_ns: tuple[int, ...]
    images: tuple[Image | CompressedImage, ...]
    depths: tuple[Image, ...] | None
    arrival_s: float


@dataclass
class DecodedViews:
    views: Views
    decode_ms: float  # image + depth decoding, ms


def camera_to_base(
    tf: TransformBuffer, base_frame: str, cameras: Sequence[str], images: Sequence[Image | CompressedImage]
) -> np.ndarray:
    """(N, 4, 4) float64 camera optical frame (each image's header.frame_id) -> base_frame at the image stamps."""
    matrices = []
    for camera, msg in zip(cameras, images):
        frame = msg.header.frame_id
        if not frame:
            raise InputError("bad image", camera, "image header.frame_id is empty: cannot look up its extrinsics")
        try:
            matrices.append(tf.lookup(base_frame, frame, stamp_to_ns(msg.header.stamp)))
        except LookupError as err:
            raise InputError("tf", camera, f"no transform {base_frame} <- {frame}: {err}") from err
    return np.stack(matrices)


def decode_views(
    frame_set: FrameSet,
    cameras: Sequence[str],
    intrinsics: Sequence[CameraIntrinsics],
    cam2base: np.ndarray,
    input_size: tuple[int, int],
    device: str | torch.device = "cpu",
) -> DecodedViews:
    """Decode the set's images (in parallel; JPEGs at the coarsest libjpeg scale covering input_size (H, W)) and
    depths into Views: images (N, 3, h, w) uint8, intrinsics (N, 3, 3) CameraInfo pixels, cam2ego
    (N, 4, 4) optical -> base frame, depths (N, h', w') m or None, image_size = CameraInfo (H, W)."""
    start = time.perf_counter()
    sizes = {(info.height, info.width) for info in intrinsics}
    if len(sizes) != 1:
        raise InputError("camera_info", ",".join(cameras),
                         f"cameras have different image sizes {sorted(sizes)}; the model needs one size")
    (height, width), = sizes

    def decode(camera: str, msg: Image | CompressedImage) -> torch.Tensor:
        try:
            image = decode_image_msg(msg, min_size=input_size, device=device)
        except ImageDecodeError as err:
            raise InputError("bad image", camera, str(err)) from err
        h, w = image.shape[-2:]
        if h > height or w > width or abs(h * width - w * height) > max(h, w) * 0.02 * max(height, width):
            raise InputError("bad image", camera, f"image is {w}x{h} but its CameraInfo says {width}x{height}")
        return image

    images = list(_decode_pool().map(decode, cameras, frame_set.images))
    if len({tuple(i.shape) for i in images}) != 1:
        raise InputError("bad image", ",".join(cameras),
                         f"decoded images differ in size: {[tuple(i.shape[-2:]) for i in images]}")
    depths = None
    if frame_set.depths is not None:
        maps = []
        for camera, msg in zip(cameras, frame_set.depths):
            try:
                maps.append(decode_depth_msg(msg))
            except ImageDecodeError as err:
                raise InputError("bad depth", camera, str(err)) from err
        if len({m.shape for m in maps}) != 1:
            raise InputError("bad depth", ",".join(cameras), f"depth maps differ in size: {[m.shape for m in maps]}")
        depths = torch.from_numpy(np.stack(maps))
    views = Views(
        images=torch.stack(images),
        intrinsics=torch.from_numpy(np.stack([info.k for info in intrinsics])).float(),
        cam2ego=torch.from_numpy(cam2base).float(),
        depths=depths,
        image_size=(height, width),
    )
    return DecodedViews(views, (time.perf_counter() - start) * 1e3)
