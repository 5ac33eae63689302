"""Image / CompressedImage / depth / CameraInfo codecs and their validation errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from gausstr_ros.image_codec import (
    ImageDecodeError,
    camera_info_msg,
    compressed_image_msg,
    decode_depth_msg,
    decode_image_msg,
    depth_image_msg,
    image_msg,
    parse_camera_info,
)
from gausstr_ros.stamps import make_header

HEADER = make_header("CAM_FRONT", 1_500_000_000_123_456_789)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:320]
    smooth = np.stack([x * 0.7, y, (x + y) * 0.4], axis=-1)
    return np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)


def encode(rgb: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def as_hwc(t: torch.Tensor) -> np.ndarray:
    assert t.dtype == torch.uint8 and t.ndim == 3 and t.shape[0] == 3
    return t.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_raw_colour_encodings_round_trip(rgb, encoding):
    msg = image_msg(rgb, HEADER, encoding)
    assert msg.step == rgb.shape[1] * (4 if "a" in encoding else 3)
    np.testing.assert_array_equal(as_hwc(decode_image_msg(msg)), rgb)


def test_bgr8_bytes_are_really_blue_first(rgb):
    msg = image_msg(rgb, HEADER, "bgr8")
    first = np.frombuffer(msg.data, np.uint8)[:3]
    np.testing.assert_array_equal(first, rgb[0, 0, ::-1])


def test_mono8_becomes_grey_rgb(rgb):
    out = as_hwc(decode_image_msg(image_msg(rgb, HEADER, "mono8")))
    grey = rgb.mean(axis=2).round().astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_row_padding_is_skipped(rgb):
    h, w, _ = rgb.shape
    padded = np.zeros((h, w * 3 + 16), np.uint8)
    padded[:, : w * 3] = rgb.reshape(h, -1)
    msg = Image(height=h, width=w, encoding="rgb8", step=w * 3 + 16, data=padded.tobytes())
    np.testing.assert_array_equal(as_hwc(decode_image_msg(msg)), rgb)


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"encoding": "yuv422"}, "encoding 'yuv422' is not supported"),
        ({"width": 0, "step": 0, "data": b""}, "zero size"),
        ({"step": 10}, "step 10 is smaller than a row"),
        ({"data": bytes(100)}, "has 100 data bytes, expected step x height"),
    ],
)
def test_bad_raw_images_are_named(rgb, fields, match):
    msg = image_msg(rgb, HEADER, "rgb8")
    for key, value in fields.items():
        setattr(msg, key, value)
    with pytest.raises(ImageDecodeError, match=match):
        decode_image_msg(msg)


def test_jpeg_matches_an_independent_decoder(rgb):
    data = encode(rgb, "JPEG", quality=90)
    msg = compressed_image_msg(data, HEADER)
    assert bytes(msg.data) == data and msg.format == "jpeg"
    out = as_hwc(decode_image_msg(msg))
    reference = np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"))
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 2
    assert np.abs(out.astype(float) - rgb).mean() < 6  # and it is the picture we encoded


@pytest.mark.parametrize("min_size, expected", [((60, 80), (60, 80)), ((61, 80), (120, 160)), ((200, 300), (240, 320))])
def test_scaled_jpeg_decode_covers_min_size(rgb, min_size, expected):
    msg = compressed_image_msg(encode(rgb, "JPEG", quality=90), HEADER)
    out = decode_image_msg(msg, min_size=min_size)
    assert tuple(out.shape[1:]) == expected
    full = decode_image_msg(msg).float()
    reduced = torch.nn.functional.interpolate(full[None], size=expected, mode="area")[0]
    assert (out.float() - reduced).abs().mean() < 4


def test_png_is_lossless(rgb):
    out = decode_image_msg(compressed_image_msg(encode(rgb, "PNG"), HEADER, "png"))
    np.testing.assert_array_equal(as_hwc(out), rgb)


@pytest.mark.parametrize("min_size", [None, (60, 80)])
def test_corrupt_compressed_images_are_named(rgb, min_size):
    data = encode(rgb, "JPEG")
    with pytest.raises(ImageDecodeError, match="corrupt JPEG"):
        decode_image_msg(compressed_image_msg(data[: len(data) // 3], HEADER), min_size=min_size)
    with pytest.raises(ImageDecodeError, match="neither JPEG nor PNG"):
        decode_image_msg(compressed_image_msg(b"GIF89a" + bytes(50), HEADER))
    with pytest.raises(ImageDecodeError, match="is empty"):
        decode_image_msg(CompressedImage(format="jpeg"))


def test_depth_32fc1_round_trip_and_big_endian():
    depth = np.random.default_rng(1).uniform(0.5, 80, (30, 40)).astype(np.float32)
    depth[3, 4] = np.nan
    msg = depth_image_msg(depth, HEADER)
    np.testing.assert_array_equal(decode_depth_msg(msg), depth)
    big = Image(height=30, width=40, encoding="32FC1", is_bigendian=1, step=160, data=depth.astype(">f4").tobytes())
    np.testing.assert_array_equal(decode_depth_msg(big), depth)


def test_depth_16uc1_is_millimetres_with_zero_invalid():
    mm = np.array([[0, 1500], [65535, 20]], dtype=np.uint16)
    msg = Image(height=2, width=2, encoding="16UC1", step=4, data=mm.astype("<u2").tobytes())
    out = decode_depth_msg(msg)
    assert out.dtype == np.float32 and np.isnan(out[0, 0])
    np.testing.assert_allclose(out[[0, 1, 1], [1, 0, 1]], [1.5, 65.535, 0.02], rtol=1e-6)


def test_depth_wrong_encoding():
    with pytest.raises(ImageDecodeError, match="depth Image encoding 'rgb8'"):
        decode_depth_msg(image_msg(np.zeros((2, 2, 3), np.uint8), HEADER))


def test_camera_info_round_trip():
    k = np.array([[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]])
    info = parse_camera_info(camera_info_msg(k, 1600, 900, HEADER))
    np.testing.assert_array_equal(info.k, k)
    assert (info.width, info.height, info.frame_id) == (1600, 900, "CAM_FRONT")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: setattr(m, "k", [np.nan] + list(m.k[1:])), "NaN or inf"),
        (lambda m: setattr(m, "k", [0.0] + list(m.k[1:])), "focal lengths must be positive"),
        (lambda m: setattr(m, "d", [0.1, 0, 0, 0, 0]), "non-zero distortion"),
        (lambda m: setattr(m, "width", 0), "zero image size"),
        (lambda m: setattr(m, "binning_x", 2), "binning"),
    ],
)
def test_bad_camera_info_is_refused(change, match):
    msg = camera_info_msg(np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), 640, 480, HEADER)
    change(msg)
    with pytest.raises(ImageDecodeError, match=f"CameraInfo CAM_FRONT: .*{match}"):
        parse_camera_info(msg)


def test_empty_distortion_is_fine():
    msg = camera_info_msg(np.eye(3), 4, 4, HEADER)
    msg.d = []
    assert parse_camera_info(msg).width == 4
    assert isinstance(msg, CameraInfo)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_jpeg_decode_matches_cpu(rgb):
    msg = compressed_image_msg(encode(rgb, "JPEG", quality=90), HEADER)
    gpu = decode_image_msg(msg, device="cuda")
    assert gpu.is_cuda
    assert (gpu.cpu().int() - decode_image_msg(msg).int()).abs().max() <= 3
