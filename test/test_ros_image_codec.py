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


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand (any header, e.g. 16-bit RGB, which PIL cannot write); rows: filtered scanlines."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_compressed_header_gives_the_size_without_decoding(rgb):
    from gausstr_ros.image_codec import read_image_header

    for fmt, kwargs in (("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {})):
        header = read_image_header(compressed_image_msg(encode(rgb, fmt, **kwargs), HEADER))
        assert (header.kind, header.width, header.height, header.bit_depth) == (fmt, 320, 240, 8)


def test_image_bombs_and_wrong_sizes_are_refused_before_decoding(rgb, monkeypatch):
    import gausstr_ros.image_codec as codec

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the header is refused")

    monkeypatch.setattr(codec, "decode_png", no_decoding)
    monkeypatch.setattr(codec, "decode_jpeg", no_decoding)
    # 20000 x 20000 RGB: a 1.2 GB tensor if decoded; the header alone refuses it
    bomb = png_bytes(20000, 20000, 8, 2, b"\x00" * 1000)
    with pytest.raises(ImageDecodeError, match="20000x20000 = 400.0 MP, over the max_image_pixels limit of 16.0 MP"):
        decode_image_msg(compressed_image_msg(bomb, HEADER, "png"))
    with pytest.raises(ImageDecodeError, match="is 320x240 but its CameraInfo says 160x120: not decoded"):
        decode_image_msg(compressed_image_msg(encode(rgb, "JPEG"), HEADER), expected_size=(120, 160))
    with pytest.raises(ImageDecodeError, match="over the max_image_pixels limit"):
        decode_image_msg(compressed_image_msg(encode(rgb, "JPEG"), HEADER), max_pixels=320 * 240 - 1)
    raw = image_msg(rgb, HEADER)
    raw.width, raw.height = 40000, 40000
    with pytest.raises(ImageDecodeError, match="Image \\(rgb8\\) is 40000x40000"):
        decode_image_msg(raw)


def test_every_decoder_failure_is_a_bad_image(rgb, monkeypatch):
    import gausstr_ros.image_codec as codec

    def bomb_error(*args, **kwargs):
        raise PILImage.DecompressionBombError("too many pixels")

    monkeypatch.setattr(codec, "decode_jpeg", bomb_error)
    with pytest.raises(ImageDecodeError, match="corrupt JPEG .*DecompressionBombError"):
        decode_image_msg(compressed_image_msg(encode(rgb, "JPEG"), HEADER))


def test_16_bit_images_become_8_bit_and_other_layouts_are_refused(rgb):
    wide = (rgb.astype(np.int64) * 257 + np.where(rgb < 255, 100, 0)).astype(np.uint16)  # round(v / 257): rgb
    expected = ((wide.astype(np.uint32) + 128) // 257).astype(np.uint8)
    np.testing.assert_array_equal(expected, rgb)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in wide)
    out = decode_image_msg(compressed_image_msg(png_bytes(320, 240, 16, 2, rows), HEADER, "png"))
    np.testing.assert_array_equal(as_hwc(out), rgb)
    grey = wide[..., 0]
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, format="PNG")
    assert buf.getvalue()[24] == 16  # really a 16-bit PNG
    out = decode_image_msg(compressed_image_msg(buf.getvalue(), HEADER, "png"))
    np.testing.assert_array_equal(as_hwc(out), np.repeat(rgb[..., :1], 3, axis=2))
    raw = Image(header=HEADER, height=240, width=320, encoding="bgr16", is_bigendian=0, step=320 * 6,
                data=np.ascontiguousarray(wide[..., ::-1]).astype("<u2").tobytes())
    np.testing.assert_array_equal(as_hwc(decode_image_msg(raw)), rgb)
    mono = Image(header=HEADER, height=240, width=320, encoding="mono16", is_bigendian=1, step=640,
                 data=grey.astype(">u2").tobytes())
    np.testing.assert_array_equal(as_hwc(decode_image_msg(mono)), np.repeat(rgb[..., :1], 3, axis=2))
    for encoding in ("32FC1", "16SC1", "bayer_rggb8", "yuv422"):
        bad = Image(header=HEADER, height=2, width=2, encoding=encoding, step=8, data=bytes(16))
        with pytest.raises(ImageDecodeError, match=f"encoding '{encoding}' is not supported"):
            decode_image_msg(bad)
    twelve_bit = bytearray(encode(rgb, "JPEG"))
    sof = twelve_bit.find(b"\xff\xc0")
    twelve_bit[sof + 4] = 12
    with pytest.raises(ImageDecodeError, match="12-bit samples"):
        decode_image_msg(compressed_image_msg(bytes(twelve_bit), HEADER))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_decode_and_resize_give_the_cpu_network_input(rgb):
    """With device cuda (gpu_preprocess), decoding (nvjpeg) and the resize run on the GPU; the network input
    matches the CPU path up to nvjpeg's rounding."""
    from gausstr_core.data.augment import plan_resize_crop
    from gausstr_ros.node_inputs import resize_to_input

    msg = compressed_image_msg(encode(rgb, "JPEG", quality=90), HEADER)
    resize = plan_resize_crop((240, 320), (112, 200))
    gpu = resize_to_input(decode_image_msg(msg, device="cuda", expected_size=(240, 320)), resize)
    assert gpu.is_cuda and gpu.is_floating_point() and tuple(gpu.shape) == (3, 112, 200)
    cpu = resize_to_input(decode_image_msg(msg), resize)
    assert float((gpu.cpu() - cpu).abs().max()) <= 4 / 255
