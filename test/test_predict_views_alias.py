"""Views' deprecated `img_aug` name (now `original_to_input`) still works for one release, with a warning."""

import dataclasses
import warnings

import pytest
import torch

from gausstr_core.data.augment import plan_resize_crop
from gausstr_core.predict import Views, prepare_views

INPUT = (8, 16)


def at_input(**matrix: torch.Tensor) -> Views:
    """Two views already at the network input (the same random images every call)."""
    generator = torch.Generator().manual_seed(0)
    images, depths = torch.rand(2, 3, *INPUT, generator=generator), torch.rand(2, *INPUT, generator=generator)
    k = torch.tensor([[20.0, 0, 16], [0, 20, 8], [0, 0, 1]]).expand(2, 3, 3)
    return Views(images, k, torch.eye(4).expand(2, 4, 4), depths=depths, **matrix)


def test_old_keyword_warns_and_prepares_like_the_new_one() -> None:
    matrix = plan_resize_crop((16, 32), INPUT).matrix.expand(2, 3, 3)  # 1:2 from (16, 32)
    new = at_input(original_to_input=matrix)
    with pytest.warns(DeprecationWarning, match="original_to_input"):
        old = at_input(img_aug=matrix)
    assert old.original_to_input is matrix
    ref = prepare_views(new, INPUT, 4, (16, 32))
    got = prepare_views(old, INPUT, 4, (16, 32))
    for name in ("images", "depths", "intrinsics", "cam2ego", "original_to_input"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=0, atol=0)
    torch.testing.assert_close(got.original_to_input, matrix, rtol=0, atol=0)


def test_old_attribute_reads_the_matrix_and_replace_keeps_it_silently() -> None:
    matrix = torch.diag(torch.tensor([0.5, 0.5, 1.0])).expand(2, 3, 3)
    views = at_input(original_to_input=matrix)
    with pytest.warns(DeprecationWarning, match="img_aug is deprecated"):
        assert views.img_aug is matrix
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # replace() must neither warn nor see two matrices
        moved = dataclasses.replace(views, depths=None)
        other = dataclasses.replace(views, original_to_input=2 * matrix)
    assert moved.original_to_input is matrix and moved.depths is None
    torch.testing.assert_close(other.original_to_input, 2 * matrix)


def test_both_names_at_once_is_an_error() -> None:
    matrix = torch.eye(3).expand(2, 3, 3)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not both"):
        at_input(original_to_input=matrix, img_aug=matrix)
