"""sensor_msgs images and camera info <-> arrays, with validation errors naming the problem.

Decoders return RGB uint8 tensors (3, H, W) for the model and float32 depth (H, W) in metres
(NaN where invalid, REP 118). Encoders build the messages the bag writer records.

Distortion policy: the node takes rectified images only. A CameraInfo with any non-zero
distortion coefficient is refused (`parse_camera_info` raises) rather than silently ignored;
rectify upstream (e.g. image_proc) and publish the rectified CameraInfo (d = 0).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image as PILImage
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from torchvision.io import ImageReadMode, decode_jpeg, decode_png

# encoding -> (channels, source channel per R, G, B)
RAW_ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
DEPTH_ENCODINGS = ("32FC1", "16UC1")
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageDecodeError(ValueError):
    """An image or camera-info message that cannot be used; the message says why."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """k: (3, 3) float64 pixel intrinsics of the optical frame `frame_id`; image width x height."""

    k: np.ndarray
    width: int
    height: int
    frame_id: str


def decode_image_msg(
    msg: Image | CompressedImage, min_size: tuple[int, int] | None = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Image or CompressedImage -> (3, H, W) uint8 RGB on `device`.

    min_size (H, W): for JPEG on CPU, decode at the coarsest libjpeg scale (1/2, 1/4, 1/8) that
    still covers it, when one does: the result is then smaller than the original and must be
    resized by the caller (six 1600x900 views for a 112x200 input: decode + resize ~4x faster
    than full decoding, see benchmarks/ros_msgs.py). On CUDA, JPEGs are decoded by nvjpeg at full
    size.
    """
    if hasattr(msg, "format"):
        return _decode_compressed(msg, min_size, torch.device(device))
    return _decode_raw(msg).to(device)


def _decode_raw(msg: Image) -> torch.Tensor:
    if msg.encoding not in RAW_ENCODINGS:
        raise ImageDecodeError(
            f"Image encoding {msg.encoding!r} is not supported (use one of {sorted(RAW_ENCODINGS)})"
        )
    channels, order = RAW_ENCODINGS[msg.encoding]
    pixels = _raw_rows(msg, channels, np.dtype(np.uint8)).reshape(msg.height, msg.width, channels)
    return torch.from_numpy(np.ascontiguousarray(pixels[..., list(order)].transpose(2, 0, 1)))


def _raw_rows(msg: Image, channels: int, dtype: np.dtype) -> np.ndarray:
    """Validated (H, W * channels) view of the pixel rows of a raw Image (row padding removed)."""
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    if width == 0 or height == 0:
        raise ImageDecodeError(f"Image ({msg.encoding}) has zero size {width}x{height}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            f"Image ({msg.encoding}, {width}x{height}) step {step} is smaller than a row of {row_bytes} bytes"
        )
    if len(msg.data) != step * height:
        raise ImageDecodeError(
            f"Image ({msg.encoding}, {width}x{height}) has {len(msg.data)} data bytes, expected step x height = "
            f"{step} x {height} = {step * height}"
        )
    if step % dtype.itemsize:
        raise ImageDecodeError(f"Image ({msg.encoding}) step {step} is not a multiple of {dtype.itemsize}")
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(msg.data, dtype=dtype).reshape(height, step // dtype.itemsize)
    return rows[:, : width * channels]


def _decode_compressed(msg: CompressedImage, min_size: tuple[int, int] | None, device: torch.device) -> torch.Tensor:
    data = bytearray(msg.data)
    if not data:
        raise ImageDecodeError(f"CompressedImage (format {msg.format!r}) is empty")
    if data.startswith(_JPEG_MAGIC):
        kind = "JPEG"
    elif data.startswith(_PNG_MAGIC):
        kind = "PNG"
    else:
        raise ImageDecodeError(
            f"CompressedImage (format {msg.format!r}) is neither JPEG nor PNG (starts with {data[:8].hex()})"
        )
    try:
        if kind == "JPEG" and min_size is not None and device.type == "cpu":
            scaled = _decode_jpeg_scaled(data, min_size)
            if scaled is not None:
                return scaled
        encoded = torch.frombuffer(data, dtype=torch.uint8)
        if kind == "JPEG":
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        return decode_png(encoded, mode=ImageReadMode.RGB).to(device)
    except (RuntimeError, OSError, ValueError) as err:
        raise ImageDecodeError(f"corrupt {kind} in CompressedImage ({len(data)} bytes): {err}") from err


def _decode_jpeg_scaled(data: bytearray, min_size: tuple[int, int]) -> torch.Tensor | None:
    """libjpeg DCT-domain downscaled decode (PIL draft), or None when no scale <= 1/2 covers min_size
    (full-size decoding is faster with torchvision)."""
    with PILImage.open(io.BytesIO(data)) as img:
        width, height = img.size
        if 2 * int(min_size[0]) > height or 2 * int(min_size[1]) > width:
            return None
        img.draft("RGB", (int(min_size[1]), int(min_size[0])))
        pixels = np.asarray(img.convert("RGB"))
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def decode_depth_msg(msg: Image) -> np.ndarray:
    """Depth Image -> (H, W) float32 metres; 32FC1 is metres, 16UC1 millimetres (0 = invalid -> NaN)."""
    if msg.encoding == "32FC1":
        depth = _raw_rows(msg, 1, np.dtype(np.float32)).astype(np.float32)
    elif msg.encoding == "16UC1":
        mm = _raw_rows(msg, 1, np.dtype(np.uint16))
        depth = np.where(mm == 0, np.float32(np.nan), mm.astype(np.float32) * np.float32(1e-3))
    else:
        raise ImageDecodeError(f"depth Image encoding {msg.encoding!r} is not supported (use 32FC1 or 16UC1)")
    return depth.reshape(msg.height, msg.width)


def parse_camera_info(msg: CameraInfo) -> CameraIntrinsics:
    """Validate a CameraInfo of a rectified camera and return its intrinsics.

    Refused (ImageDecodeError): zero image size, non-finite K, non-positive focal lengths, a K
    that is not upper triangular with k[2, 2] = 1, binning or a partial ROI, and any non-zero
    distortion coefficient (see the module docstring).
    """
    name = msg.header.frame_id or "<no frame_id>"
    if msg.width == 0 or msg.height == 0:
        raise ImageDecodeError(f"CameraInfo {name}: zero image size {msg.width}x{msg.height}")
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(k).all():
        raise ImageDecodeError(f"CameraInfo {name}: K contains NaN or inf: {k.ravel().tolist()}")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ImageDecodeError(f"CameraInfo {name}: focal lengths must be positive, got fx={k[0, 0]}, fy={k[1, 1]}")
    if k[1, 0] != 0 or k[2, 0] != 0 or k[2, 1] != 0 or k[2, 2] != 1:
        raise ImageDecodeError(f"CameraInfo {name}: K must be upper triangular with K[2,2] = 1, got {k.tolist()}")
    d = np.asarray(msg.d, dtype=np.float64)
    if not np.isfinite(d).all() or np.any(d != 0):
        raise ImageDecodeError(
            f"CameraInfo {name}: non-zero distortion ({msg.distortion_model} d={d.tolist()}); only rectified "
            "images are accepted: rectify upstream (e.g. image_proc) and publish CameraInfo with d = 0"
        )
    roi = msg.roi
    partial_roi = roi.width not in (0, msg.width) or roi.height not in (0, msg.height) or roi.x_offset or roi.y_offset
    if msg.binning_x > 1 or msg.binning_y > 1 or partial_roi:
        raise ImageDecodeError(f"CameraInfo {name}: binning and regions of interest are not supported")
    return CameraIntrinsics(k=k, width=int(msg.width), height=int(msg.height), frame_id=msg.header.frame_id)


def image_msg(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB -> Image in `encoding` (rgb8, bgr8, rgba8, bgra8 or mono8 as the mean)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image_msg: expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    if encoding not in RAW_ENCODINGS:
        raise ValueError(f"image_msg: encoding {encoding!r} not in {sorted(RAW_ENCODINGS)}")
    channels, order = RAW_ENCODINGS[encoding]
    if channels == 1:
        pixels = rgb.mean(axis=2, keepdims=True).round().astype(np.uint8)
    else:
        pixels = rgb[..., list(order)]
        if channels == 4:
            pixels = np.concatenate([pixels, np.full_like(rgb[..., :1], 255)], axis=2)
    height, width = rgb.shape[:2]
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                 step=width * channels, data=np.ascontiguousarray(pixels).tobytes())


def compressed_image_msg(data: bytes, header: Header, fmt: str = "jpeg") -> CompressedImage:
    """Already-encoded bytes (e.g. an original JPEG file) -> CompressedImage, bytes kept as they are."""
    return CompressedImage(header=header, format=fmt, data=bytes(data))


def depth_image_msg(depth: np.ndarray, header: Header) -> Image:
    """(H, W) metres -> 32FC1 Image (little endian)."""
    depth = np.asarray(depth, dtype="<f4")
    if depth.ndim != 2:
        raise ValueError(f"depth_image_msg: expected (H, W) depth, got shape {depth.shape}")
    height, width = depth.shape
    return Image(header=header, height=height, width=width, encoding="32FC1", is_bigendian=0,
                 step=width * 4, data=np.ascontiguousarray(depth).tobytes())


def camera_info_msg(k: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    """Rectified pinhole CameraInfo: K, R = I, P = [K | 0], no distortion (plumb_bob, d = 0)."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return CameraInfo(header=header, width=int(width), height=int(height), distortion_model="plumb_bob",
                      d=[0.0] * 5, k=k.ravel(), r=np.eye(3).ravel(), p=p.ravel())
