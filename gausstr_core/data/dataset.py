"""Torch Dataset of GaussTR samples from a nuScenes tree, Occ3D gts and prepared caches.

Per view: the JPEG resized to `data.input_size` (with its `original_to_input`), the feature map of cache kind
`data.feature_kind` (only when `data.feature_source == 'cache'`; 'online' leaves features None for
a provider run during training), the depth map of cache kind `data.depth_kind` and optionally 2D
labels of `data.segmentation_kind`, all brought to the input size (see `augment`). Occupancy comes
from `<occ_root>/<scene>/<token>/labels.npz`. Every missing file or shape mismatch raises an error
that names the sample token and the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from gausstr_core.config import Config
from gausstr_core.data.augment import plan_resize_crop
from gausstr_core.data.cache import read_cache_map, read_depth_map
from gausstr_core.data.nuscenes import CameraRecord, NuScenesReader, SampleRecord
from gausstr_core.data.occ3d import load_occ3d, occ3d_path
from gausstr_core.data.sample import Sample, collate_samples

FEATURE_SOURCES = ("cache", "online")


class GaussTRDataset(Dataset):
    """Keyframes of `split`; item i is a `Sample` (see gausstr_core.data.sample for shapes)."""

    def __init__(self, config: Config, split: str, load_occupancy: bool = True, reader: NuScenesReader | None = None):
        data = config.data
        if data.feature_source not in FEATURE_SOURCES:
            raise ValueError(f"data.feature_source must be one of {FEATURE_SOURCES}, got {data.feature_source!r}")
        reader = reader or NuScenesReader(data.dataroot, data.version, tuple(data.cameras))
        self.records: list[SampleRecord] = [reader.sample_record(t) for t in reader.split_samples(split)]
        if not self.records:
            raise ValueError(f"split {split!r} has no samples in {reader.dataroot / reader.version}")
        self.cameras = tuple(data.cameras)
        self.input_size = tuple(data.input_size)
        self.cache_root = data.cache_root
        self.feature_kind = data.feature_kind if data.feature_source == "cache" else ""
        self.feature_dim = config.model.feature_dim
        self.patch_size = config.model.patch_size
        self.depth_kind = data.depth_kind
        self.segmentation_kind = data.segmentation_kind
        self.occ_root = data.occ_root if load_occupancy else ""
        self.grid_dims = config.grid.build().dims

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        try:
            views = [self._view(record.cameras[cam]) for cam in self.cameras]
            occupancy = self._occupancy(record) if self.occ_root else {}
        except (OSError, ValueError, KeyError) as err:
            raise type(err)(f"sample {record.token} (scene {record.scene}): {err}") from err

        def stack(key: str) -> torch.Tensor | None:
            values = [v[key] for v in views]
            return None if values[0] is None else torch.stack(values)

        return Sample(
            token=record.token,
            scene=record.scene,
            timestamp=record.timestamp,
            cameras=self.cameras,
            images=stack("image"),
            intrinsics=stack("intrinsics"),
            cam2ego=stack("cam2ego"),
            original_to_input=stack("original_to_input"),
            ego2global=torch.as_tensor(record.ego2global, dtype=torch.float32),
            features=stack("features"),
            depths=stack("depth"),
            segmentation=stack("segmentation"),
            **occupancy,
        )

    def _view(self, cam: CameraRecord) -> dict[str, torch.Tensor | None]:
        image = _read_image(cam)
        resize = plan_resize_crop(tuple(image.shape[-2:]), self.input_size)
        out: dict[str, torch.Tensor | None] = {
            "image": resize.image(image) / 255.0,
            "intrinsics": torch.as_tensor(cam.intrinsics, dtype=torch.float32),
            "cam2ego": torch.as_tensor(cam.cam2ego, dtype=torch.float32),
            "original_to_input": resize.matrix,
            "features": None,
            "depth": None,
            "segmentation": None,
        }
        token = cam.sample_data_token
        if self.feature_kind:
            raw = self._cache(self.feature_kind, token, (self.feature_dim, None, None))
            out["features"] = resize.features(raw, self.patch_size)
        if self.depth_kind:
            depth = read_depth_map(self.cache_root, self.depth_kind, token, (None, None))
            out["depth"] = resize.depth(torch.from_numpy(depth))
        if self.segmentation_kind:
            labels = self._cache(self.segmentation_kind, token, (None, None)).round().long()
            out["segmentation"] = resize.labels(labels)
        return out

    def _cache(self, kind: str, token: str, shape: tuple[int | None, ...]) -> torch.Tensor:
        return torch.from_numpy(read_cache_map(self.cache_root, kind, token, shape).astype("float32"))

    def _occupancy(self, record: SampleRecord) -> dict[str, torch.Tensor]:
        labels = load_occ3d(occ3d_path(self.occ_root, record.scene, record.token), self.grid_dims)
        return {
            "occ_semantics": torch.from_numpy(labels.semantics),
            "occ_mask_camera": torch.from_numpy(labels.mask_camera),
            "occ_mask_lidar": torch.from_numpy(labels.mask_lidar),
        }


def _read_image(cam: CameraRecord) -> torch.Tensor:
    """(3, H, W) uint8 RGB; checks the file exists and matches the size in sample_data."""
    if not Path(cam.image_path).is_file():
        raise FileNotFoundError(f"image not found: {cam.image_path}")
    try:
        with Image.open(cam.image_path) as handle:
            image = torch.from_numpy(np.array(handle.convert("RGB"))).permute(2, 0, 1)
    except OSError as err:
        raise ValueError(f"image {cam.image_path} cannot be decoded: {err}") from err
    if tuple(image.shape[-2:]) != (cam.height, cam.width):
        raise ValueError(
            f"image {cam.image_path} is {image.shape[-1]}x{image.shape[-2]}, sample_data says {cam.width}x{cam.height}"
        )
    return image


def make_dataloader(
    dataset: GaussTRDataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    seed: int = 0,
) -> DataLoader:
    """DataLoader yielding `Batch`es (collate_samples); `sampler` (e.g. DistributedSampler) replaces shuffle."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_samples,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
