"""GaussTRDataset on a generated tree: shapes, collate, loader workers, and bad trees."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gausstr_core.config import Config, load_config
from gausstr_core.data import Batch, GaussTRDataset, NuScenesReader, make_dataloader
from gausstr_core.data.cache import cache_path, write_cache_map
from gausstr_core.data.occ3d import occ3d_path
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tree")
    generate_dataset(out, SynthOptions(scenes=1, samples_per_scene=2, sweeps=False, seed=1))
    return out


def _config(root: Path, **data: object) -> Config:
    config = load_config(root / "gausstr_synthetic.yaml")
    config.data = dataclasses.replace(config.data, **data)
    return config


def _copy(tree: Path, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(tree, root)
    return root


def test_sample_and_batch_shapes(tree: Path) -> None:
    config = _config(tree, segmentation_kind="synthetic_classes")
    dataset = GaussTRDataset(config, "train")
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample.images.shape == (6, 3, 90, 160) and 0 <= sample.images.min() and sample.images.max() <= 1
    assert sample.features.shape == (6, 64, 9, 16) and sample.features.dtype == torch.float32
    assert sample.depths.shape == (6, 90, 160) and (sample.depths > 0).all()
    assert sample.segmentation.shape == (6, 90, 160) and sample.segmentation.dtype == torch.long
    assert sample.occ_semantics.shape == (200, 200, 16) and sample.occ_mask_camera.dtype == torch.bool
    torch.testing.assert_close(sample.original_to_input, torch.eye(3).expand(6, 3, 3))
    assert sample.cam2ego.shape == (6, 4, 4) and sample.intrinsics.shape == (6, 3, 3)
    record = NuScenesReader(tree, "v1.0-mini").sample_record(sample.token)
    torch.testing.assert_close(sample.ego2global, torch.as_tensor(record.ego2global, dtype=torch.float32))

    loader = make_dataloader(dataset, batch_size=2, num_workers=2)
    batches = list(loader)
    assert len(batches) == 1 and isinstance(batches[0], Batch)
    batch = batches[0]
    assert batch.images.shape == (2, 6, 3, 90, 160) and batch.features.shape == (2, 6, 64, 9, 16)
    assert batch.occ_semantics.shape == (2, 200, 200, 16) and batch.tokens == [r.token for r in dataset.records]


def test_other_input_size_online_features_and_no_occupancy(tree: Path) -> None:
    config = _config(tree, input_size=(45, 80), feature_source="online")
    dataset = GaussTRDataset(config, "val", load_occupancy=False)
    sample = dataset[0]
    assert sample.images.shape == (6, 3, 45, 80) and sample.depths.shape == (6, 45, 80)
    assert sample.features is None and sample.occ_semantics is None
    torch.testing.assert_close(sample.original_to_input[0], torch.tensor([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1.0]]))
    cached = GaussTRDataset(_config(tree, input_size=(40, 80)), "val")[0]
    assert cached.features.shape == (6, 64, 4, 8)  # cache maps are resized to the input grid
    with pytest.raises(ValueError, match="feature_source"):
        GaussTRDataset(_config(tree, feature_source="disk"), "val")


def test_missing_table_names_the_file(tree: Path, tmp_path: Path) -> None:
    root = _copy(tree, tmp_path)
    (root / "v1.0-mini" / "sample_data.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"v1\.0-mini/sample_data\.json"):
        NuScenesReader(root, "v1.0-mini")
    with pytest.raises(FileNotFoundError, match="version folder not found"):
        NuScenesReader(root, "v1.0-trainval")


def test_missing_image_and_bad_maps_name_sample_and_file(tree: Path, tmp_path: Path) -> None:
    root = _copy(tree, tmp_path)
    config = _config(root, dataroot=str(root), occ_root=str(root / "gts"), cache_root=str(root / "cache"))
    dataset = GaussTRDataset(config, "train")
    record = dataset.records[0]
    back = record.cameras["CAM_BACK"]

    Path(back.image_path).unlink()
    image_name = re.escape(Path(back.image_path).name)
    with pytest.raises(FileNotFoundError, match=f"sample {record.token}.*image not found: .*{image_name}"):
        dataset[0]
    shutil.copy(record.cameras["CAM_FRONT"].image_path, back.image_path)  # any valid image will do again

    feature_file = cache_path(root / "cache", "synthetic", back.sample_data_token)
    write_cache_map(root / "cache", "synthetic", back.sample_data_token, np.zeros((32, 9, 16)))
    with pytest.raises(
        ValueError,
        match=f"sample {record.token}.*{feature_file.name} has shape \\(32, 9, 16\\), "
        r"expected \(64, \*, \*\)",
    ):
        dataset[0]
    feature_file.unlink()
    with pytest.raises(FileNotFoundError, match=f"sample {record.token}.*{feature_file.name}"):
        dataset[0]

    labels = occ3d_path(root / "gts", record.scene, dataset.records[1].token)
    with np.load(labels) as data:
        arrays = dict(data)
    arrays["semantics"] = arrays["semantics"][:, :100]
    np.savez(labels, **arrays)
    with pytest.raises(ValueError, match=f"sample {dataset.records[1].token}.*labels.npz: 'semantics' has shape"):
        dataset[1]
