"""One synchronised camera set (image, optional depth, calibration) -> predictor Views.

Every failure raises InputError(kind, source, message): kind names the problem class reported in
/diagnostics ("bad image", "bad depth", "camera_info", "tf"), source the camera.

Network input made here (`network_input=True`): each camera's image is decoded and resized to the
model's input in the decoding threads, with the predictor's own ResizeCrop plan (antialiased
bilinear, separable): on the CPU the horizontal pass runs in uint8 and the vertical one in float
(gausstr_core.resize_fused, reading the uint8 rows, cropping and scaling in one loop; PyTorch
without numba), so the result is within half a grey level (0.5 / 255) of the float ResizeCrop of
the full decode at a fraction of its cost (uint8 in both passes rounds twice and can be a level
off); on CUDA
(nvjpeg decode) all in float, as the predictor would. The Views then carry float images in
[0, 1], original_to_input and input-size depths, so the predictor resizes nothing.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sensor_msgs.msg import CompressedImage, Image

from gausstr_core import resize_fused
from gausstr_core.data.augment import ResizeCrop, plan_resize_crop
from gausstr_core.predict import Views
from gausstr_ros.image_codec import (
    DEFAULT_MAX_IMAGE_PIXELS,
    CameraIntrinsics,
    ImageDecodeError,
    decode_depth_msg,
    decode_image_msg,
)
from gausstr_ros.stamps import stamp_to_ns
from gausstr_ros.tf_buffer import TransformBuffer, TransformError


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
class CameraMessages:
    """One synchronised set as ROS messages, per camera (model order): the image and optional depth message
    (from the sync's SyncedMessages; decode_views turns it into the core's Views).

    stamps_ns: image stamps; arrival_s: monotonic time at which the set's first message arrived.
    """

    stamps_ns: tuple[int, ...]
    images: tuple[Image | CompressedImage, ...]
    depths: tuple[Image, ...] | None
    arrival_s: float


def camera_to_ego(
    tf: TransformBuffer, base_frame: str, cameras: Sequence[str], images: Sequence[Image | CompressedImage]
) -> np.ndarray:
    """cam2ego (N, 4, 4) float64: camera optical frame (each image's header.frame_id) -> ego frame = base_frame,
    at the image stamps."""
    matrices = []
    for camera, msg in zip(cameras, images):
        frame = msg.header.frame_id
        if not frame:
            raise InputError("bad image", camera, "image header.frame_id is empty: cannot look up its extrinsics")
        try:
            matrices.append(tf.lookup(base_frame, frame, stamp_to_ns(msg.header.stamp)))
        except TransformError as err:
            raise InputError("tf", camera, f"no transform {base_frame} <- {frame} ({err})") from err
    return np.stack(matrices)


def resize_to_input(image: torch.Tensor, resize: ResizeCrop, out: torch.Tensor | None = None) -> torch.Tensor:
    """(3, h, w) uint8 full frame at any resolution -> the network input (3, H, W) float in [0, 1]
    (ResizeCrop.image / 255; on the CPU its horizontal pass in uint8, see the module docstring).
    out: optional float32 (3, H, W) tensor on the image's device to write the result into (returned)."""
    if image.device.type != "cpu":
        result = resize.image(image) / 255.0
        return result if out is None else out.copy_(result)
    (rh, rw), (top, left), (oh, ow) = resize.resized, resize.offset, resize.out_size
    x = image[None]
    if x.shape[-1] != rw:
        x = F.interpolate(x, size=(x.shape[-2], rw), mode="bilinear", align_corners=False, antialias=True)
    if resize_fused.available():
        return resize_fused.vertical_pass(x[0], resize, out)
    x = x.float()
    if x.shape[-2] != rh:
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
    result = x[0, :, top : top + oh, left : left + ow] / 255.0
    return result if out is None else out.copy_(result)


def decode_views(
    camera_messages: CameraMessages,
    cameras: Sequence[str],
    intrinsics: Sequence[CameraIntrinsics],
    cam2ego: np.ndarray,
    input_size: tuple[int, int],
    device: str | torch.device = "cpu",
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    network_input: bool = False,
) -> Views:
    """Decode the set's images (in parallel; for the network input JPEGs at the coarsest libjpeg scale covering
    input_size (H, W); each checked against its CameraInfo size and max_pixels before decoding) and depths
    into Views: intrinsics
    (N, 3, 3) CameraInfo pixels, cam2ego (N, 4, 4) optical -> ego (base_frame), image_size = CameraInfo (H, W), and
    network_input False: images (N, 3, H, W) uint8 full frame at full resolution (what the depth provider
    sees), depths (N, h', w') m or None;
    network_input True: images (N, 3, H, W) float in [0, 1] at input_size, depths
    (N, H, W) m or None, original_to_input (N, 3, 3) original -> input pixels (see the module docstring)."""
    sizes = {(info.height, info.width) for info in intrinsics}
    if len(sizes) != 1:
        raise InputError("camera_info", ",".join(cameras),
                         f"cameras have different image sizes {sorted(sizes)}; the model needs one size")
    (height, width), = sizes
    resize = plan_resize_crop((height, width), tuple(input_size)) if network_input else None
    # network input: each decoding thread writes its camera's slot of one batch (no stacking copy)
    batch = None if resize is None else torch.empty((len(cameras), 3, *resize.out_size), device=device)

    def decode(index: int, camera: str, msg: Image | CompressedImage) -> torch.Tensor:
        try:
            image = decode_image_msg(msg, min_size=input_size if network_input else None, device=device,
                                     expected_size=(height, width), max_pixels=max_pixels)
        except ImageDecodeError as err:
            raise InputError("bad image", camera, str(err)) from err
        return image if batch is None else resize_to_input(image, resize, batch[index])

    images = list(_decode_pool().map(decode, range(len(cameras)), cameras, camera_messages.images))
    if len({tuple(i.shape) for i in images}) != 1:
        raise InputError("bad image", ",".join(cameras),
                         f"decoded images differ in size: {[tuple(i.shape[-2:]) for i in images]}")
    depths = None
    if camera_messages.depths is not None:
        maps = []
        for camera, msg in zip(cameras, camera_messages.depths):
            try:
                maps.append(decode_depth_msg(msg))
            except ImageDecodeError as err:
                raise InputError("bad depth", camera, str(err)) from err
        if len({m.shape for m in maps}) != 1:
            raise InputError("bad depth", ",".join(cameras), f"depth maps differ in size: {[m.shape for m in maps]}")
        depths = torch.from_numpy(np.stack(maps))
        if resize is not None:
            depths = resize.depth(depths.to(images[0].device))
    return Views(
        images=torch.stack(images) if batch is None else batch,
        intrinsics=torch.from_numpy(np.stack([info.k for info in intrinsics])).float(),
        cam2ego=torch.from_numpy(cam2ego).float(),
        depths=depths,
        original_to_input=None if resize is None else resize.matrix.expand(len(images), 3, 3).clone(),
        image_size=(height, width),
    )
