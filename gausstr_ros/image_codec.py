"""sensor_msgs images and camera info <-> arrays, with validation errors naming the problem.

Decoders return RGB uint8 tensors (3, H, W) for the model and float32 depth (H, W) in metres
(NaN where invalid, REP 118). Encoders build the messages the bag writer records.

Image checks before any pixel is decoded: the width and height come from the message (raw) or
from the JPEG SOF / PNG IHDR header (compressed) and must not exceed `max_pixels` (default 16 MP)
nor, when given, the CameraInfo size (a smaller image of the same aspect is accepted), so an image
bomb costs no memory. Every decoder failure (corrupt data, libjpeg/libpng/PIL errors) becomes an
ImageDecodeError. Bit depth: 8-bit colour and mono are used as they are; 16-bit colour and mono
(raw rgb16/bgr16/rgba16/bgra16/mono16, 16-bit PNG) are converted to 8 bits as round(v / 257);
other layouts (float, signed, Bayer, YUV raw encodings) are refused.

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
# 16-bit layouts, read as their 8-bit twin after round(v / 257)
RAW_ENCODINGS_16 = {"rgb16": "rgb8", "bgr16": "bgr8", "rgba16": "rgba8", "bgra16": "bgra8", "mono16": "mono8"}
DEFAULT_MAX_IMAGE_PIXELS = 16_000_000
DEPTH_ENCODINGS = ("32FC1", "16UC1")
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageDecodeError(ValueError):
    """An image or camera-info message that cannot be used; the message says why."""


@dataclass(frozen=True)
class ImageHeader:
    """What a compressed image's header says: kind 'JPEG' | 'PNG', width x height pixels, bits per sample."""

    kind: str
    width: int
    height: int
    bit_depth: int


@dataclass(frozen=True)
class CameraIntrinsics:
    """k: (3, 3) float64 pixel intrinsics of the optical frame `frame_id`; image width x height."""

    k: np.ndarray
    width: int
    height: int
    frame_id: str


def decode_image_msg(
    msg: Image | CompressedImage,
    min_size: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
    expected_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> torch.Tensor:
    """Image or CompressedImage -> (3, H, W) uint8 RGB on `device`.

    expected_size (H, W): the CameraInfo size; the image must not be larger and must have its aspect
    (2 % slack), checked with `max_pixels` before decoding (see the module docstring).

    min_size (H, W): for JPEG on CPU, decode at the coarsest libjpeg scale (1/2, 1/4, 1/8) that
    still covers it, when one does: the result is then smaller than the original and must be
    resized by the caller (six 1600x900 views for a 112x200 input: decode + resize ~4x faster
    than full decoding, see benchmarks/ros_msgs.py). On CUDA, JPEGs are decoded by nvjpeg at full
    size.
    """
    compressed = hasattr(msg, "format")
    if compressed:
        header = read_image_header(msg)
        width, height, what = header.width, header.height, f"{header.kind} in CompressedImage"
    else:
        width, height, what = int(msg.width), int(msg.height), f"Image ({msg.encoding})"
    check_image_size(width, height, what, expected_size, max_pixels)
    if compressed:
        return _decode_compressed(msg, header, min_size, torch.device(device))
    return _decode_raw(msg).to(device)


def check_image_size(width: int, height: int, what: str, expected_size: tuple[int, int] | None = None,
                     max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """ImageDecodeError unless 0 < width x height <= max_pixels and, with expected_size (H, W), the image is no
    larger than it and of its aspect (2 % slack)."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{what} has zero size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(f"{what} is {width}x{height} = {width * height / 1e6:.1f} MP, over the "
                               f"max_image_pixels limit of {max_pixels / 1e6:.1f} MP: not decoded")
    if expected_size is not None:
        exp_h, exp_w = expected_size
        wrong_aspect = abs(height * exp_w - width * exp_h) > max(height, width) * 0.02 * max(exp_h, exp_w)
        if height > exp_h or width > exp_w or wrong_aspect:
            raise ImageDecodeError(f"{what} is {width}x{height} but its CameraInfo says {exp_w}x{exp_h}: not decoded")


def read_image_header(msg: CompressedImage) -> ImageHeader:
    """Kind, size and bit depth from the JPEG SOF or PNG IHDR header, without decoding pixels."""
    data = bytes(msg.data[:65536]) if len(msg.data) > 65536 else bytes(msg.data)
    if not data:
        raise ImageDecodeError(f"CompressedImage (format {msg.format!r}) is empty")
    if data.startswith(_PNG_MAGIC):
        if len(data) < 26 or data[12:16] != b"IHDR":
            raise ImageDecodeError(f"corrupt PNG in CompressedImage ({len(msg.data)} bytes): no IHDR header")
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return ImageHeader("PNG", width, height, data[24])
    if data.startswith(_JPEG_MAGIC):
        return _jpeg_header(data, len(msg.data))
    raise ImageDecodeError(
        f"CompressedImage (format {msg.format!r}) is neither JPEG nor PNG (starts with {data[:8].hex()})"
    )


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame; not DHT, JPG, DAC


def _jpeg_header(data: bytes, total: int) -> ImageHeader:
    """Walk the JPEG marker segments up to the first SOF (within the first 64 KiB)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_MARKERS:
            if length < 8 or i + 9 > len(data):
                break
            bits = data[i + 4]
            height, width = int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            return ImageHeader("JPEG", width, height, bits)
        if length < 2:
            break
        i += 2 + length
    raise ImageDecodeError(f"corrupt JPEG in CompressedImage ({total} bytes): no frame header (SOF) found")


def _decode_raw(msg: Image) -> torch.Tensor:
    encoding = RAW_ENCODINGS_16.get(msg.encoding, msg.encoding)
    if encoding not in RAW_ENCODINGS:
        raise ImageDecodeError(
            f"Image encoding {msg.encoding!r} is not supported (use one of "
            f"{sorted(RAW_ENCODINGS) + sorted(RAW_ENCODINGS_16)}; 16-bit ones are converted to 8 bits)"
        )
    channels, order = RAW_ENCODINGS[encoding]
    dtype = np.dtype(np.uint16 if msg.encoding in RAW_ENCODINGS_16 else np.uint8)
    pixels = _raw_rows(msg, channels, dtype).reshape(msg.height, msg.width, channels)[..., list(order)]
    if dtype.itemsize == 2:
        pixels = _to_8_bit(pixels)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def _to_8_bit(pixels: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 as round(v / 257) (65535 -> 255, 257 v -> v)."""
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


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


def _decode_compressed(msg: CompressedImage, header: ImageHeader, min_size: tuple[int, int] | None,
                       device: torch.device) -> torch.Tensor:
    data, kind = bytearray(msg.data), header.kind
    if kind == "JPEG" and header.bit_depth != 8:
        raise ImageDecodeError(f"JPEG in CompressedImage has {header.bit_depth}-bit samples; only 8-bit JPEG "
                               "is supported")
    try:
        scalable = min_size is not None and 2 * min_size[0] <= header.height and 2 * min_size[1] <= header.width
        if kind == "JPEG" and scalable and device.type == "cpu":
            return _decode_jpeg_scaled(data, min_size)
        encoded = torch.frombuffer(data, dtype=torch.uint8)
        if kind == "JPEG":
            image = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        else:
            image = decode_png(encoded, mode=ImageReadMode.RGB)
            if image.dtype == torch.uint16:  # 16-bit PNG
                image = torch.from_numpy(_to_8_bit(image.numpy()))
            image = image.to(device)
    except Exception as err:  # noqa: BLE001 -- every decoder failure (libjpeg, libpng, PIL) is a bad image
        raise ImageDecodeError(f"corrupt {kind} in CompressedImage ({len(data)} bytes): "
                               f"{type(err).__name__}: {err}") from err
    if tuple(image.shape[-2:]) != (header.height, header.width):
        raise ImageDecodeError(f"{kind} in CompressedImage decoded to {tuple(image.shape[-2:])}, its header says "
                               f"{header.height}x{header.width}")
    return image


def _decode_jpeg_scaled(data: bytearray, min_size: tuple[int, int]) -> torch.Tensor:
    """libjpeg DCT-domain downscaled decode (PIL draft) at the coarsest scale (1/2, 1/4, 1/8) covering
    min_size (H, W); the caller checks that 1/2 does (otherwise full-size decoding by torchvision is faster)."""
    with PILImage.open(io.BytesIO(data)) as img:
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
