"""Fused vertical resize pass (numba) against ResizeCrop.image's float PyTorch path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gausstr_core import resize_fused
from gausstr_core.data.augment import plan_resize_crop

pytestmark = pytest.mark.skipif(not resize_fused.available(), reason="numba is not installed")


@pytest.mark.parametrize("source, out, scale", [
    ((90, 160), (50, 90), None),  # downscale, no crop
    ((90, 160), (40, 64), 0.5),  # downscale then centre crop
    ((30, 40), (56, 72), 2.0),  # upscale (fewer source rows than output rows) then crop
    ((48, 64), (40, 48), 1.0),  # rows kept as they are (identity vertical pass), cropped
])
def test_vertical_pass_equals_the_float_path(source, out, scale):
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, *source), dtype=torch.uint8)
    resize = plan_resize_crop(source, out, scale=scale)
    rw, (oh, ow) = resize.resized[1], resize.out_size
    if rw != source[1]:
        rows = F.interpolate(image[None], size=(source[0], rw), mode="bilinear", align_corners=False, antialias=True)[0]
    else:
        rows = image
    expected = resize.image(rows[None])[0] / 255.0  # vertical pass (width already rw), crop, scale
    got = resize_fused.vertical_pass(rows, resize)
    assert got.dtype == torch.float32 and tuple(got.shape) == (3, oh, ow)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)  # bit for bit (both use FMA on x86-64-v3)


def test_vertical_weights_are_banded_rows_that_sum_to_one():
    start, weights = resize_fused.vertical_weights(900, 504, 0, 504)
    assert start.shape == (504,) and weights.shape[0] == 504 and weights.shape[1] <= 6
    assert (start >= 0).all() and (start + weights.shape[1] <= 900).all()
    torch.testing.assert_close(torch.from_numpy(weights.sum(1)), torch.ones(504), rtol=0, atol=1e-5)


def test_vertical_pass_refuses_wrong_input():
    resize = plan_resize_crop((90, 160), (50, 90))
    with pytest.raises(ValueError, match=r"expected \(C, h, 90\) uint8"):
        resize_fused.vertical_pass(torch.zeros(3, 90, 160, dtype=torch.uint8), resize)
    with pytest.raises(ValueError, match="uint8"):
        resize_fused.vertical_pass(torch.zeros(3, 90, 90), resize)
