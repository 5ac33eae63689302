"""Cache maps and Occ3D label files: round trips, atomic writes, errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gausstr_core.data.cache import cache_path, read_cache_map, read_cache_meta, write_cache_map, write_cache_meta
from gausstr_core.data.occ3d import OCC3D_SHAPE, Occ3DLabels, load_occ3d, occ3d_path, write_occ3d


def test_cache_round_trip_is_float16_and_atomic(tmp_path: Path) -> None:
    values = torch.randn(8, 4, 6) * 10
    path = write_cache_map(tmp_path, "feat", "tok1", values)
    assert path == cache_path(tmp_path, "feat", "tok1") == tmp_path / "feat" / "tok1.npy"
    back = read_cache_map(tmp_path, "feat", "tok1", (8, None, None))
    assert back.dtype == np.float16
    np.testing.assert_allclose(back.astype(np.float32), values.numpy(), rtol=1e-3, atol=1e-2)
    assert sorted(p.name for p in (tmp_path / "feat").iterdir()) == ["tok1.npy"]  # no temporary left
    write_cache_meta(tmp_path, "feat", {"provider": "x", "input_size": [32, 48], "channels": 8})
    assert read_cache_meta(tmp_path, "feat")["input_size"] == [32, 48]


def test_cache_errors_name_file_and_shape(tmp_path: Path) -> None:
    write_cache_map(tmp_path, "depth", "tok", np.ones((5, 7)))
    with pytest.raises(ValueError, match=r"tok\.npy has shape \(5, 7\), expected \(6, \*\)"):
        read_cache_map(tmp_path, "depth", "tok", (6, None))
    with pytest.raises(FileNotFoundError, match=r"depth/missing\.npy"):
        read_cache_map(tmp_path, "depth", "missing")
    (tmp_path / "depth" / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"broken\.npy cannot be read"):
        read_cache_map(tmp_path, "depth", "broken")
    with pytest.raises(FileNotFoundError, match=r"meta\.json"):
        read_cache_meta(tmp_path, "depth")
    with pytest.raises(TypeError, match="numeric"):
        write_cache_map(tmp_path, "depth", "s", np.array(["a"]))


def test_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cache_map(tmp_path, "feat", "tok", np.zeros((2, 2)))

    def broken_save(handle, data, allow_pickle=False):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_cache_map(tmp_path, "feat", "tok", np.ones((2, 2)))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "feat").iterdir()) == ["tok.npy"]
    np.testing.assert_array_equal(read_cache_map(tmp_path, "feat", "tok"), np.zeros((2, 2)))


def _labels(seed: int = 0) -> Occ3DLabels:
    rng = np.random.default_rng(seed)
    return Occ3DLabels(
        semantics=rng.integers(0, 18, OCC3D_SHAPE).astype(np.uint8),
        mask_camera=rng.random(OCC3D_SHAPE) < 0.3,
        mask_lidar=rng.random(OCC3D_SHAPE) < 0.2,
    )


def test_occ3d_round_trip(tmp_path: Path) -> None:
    labels = _labels()
    path = occ3d_path(tmp_path / "gts", "scene-0001", "abc")
    assert path == tmp_path / "gts" / "scene-0001" / "abc" / "labels.npz"
    write_occ3d(path, labels)
    with np.load(path) as raw:  # the released layout: uint8 masks
        assert raw["mask_camera"].dtype == np.uint8 and set(raw.files) == {"semantics", "mask_camera", "mask_lidar"}
    back = load_occ3d(path)
    np.testing.assert_array_equal(back.semantics, labels.semantics)
    np.testing.assert_array_equal(back.mask_camera, labels.mask_camera)
    assert back.mask_lidar.dtype == bool
    assert [p.name for p in path.parent.iterdir()] == ["labels.npz"]


def test_occ3d_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.npz"
    with pytest.raises(FileNotFoundError, match=str(path)):
        load_occ3d(path)
    labels = _labels()
    np.savez(path, semantics=labels.semantics[:, :, :8], mask_camera=labels.mask_camera, mask_lidar=labels.mask_lidar)
    with pytest.raises(
        ValueError, match=r"labels\.npz: 'semantics' has shape \(200, 200, 8\), expected \(200, 200, 16\)"
    ):
        load_occ3d(path)
    np.savez(path, semantics=labels.semantics)
    with pytest.raises(KeyError, match="lack array 'mask_camera'"):
        load_occ3d(path)
    np.savez(path, semantics=labels.semantics + 20, mask_camera=labels.mask_camera, mask_lidar=labels.mask_lidar)
    with pytest.raises(ValueError, match="semantics hold id"):
        load_occ3d(path)
