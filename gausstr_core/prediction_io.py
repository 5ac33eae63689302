"""Predictor inputs from a nuScenes-format tree, and prediction dumps.

`load_sample_views` builds the same Views the ROS node builds from a bag: the decoded original
JPEGs, original-pixel intrinsics, cam2ego, and the depth maps of the `data.depth_kind` cache
(the bag's depth topics carry exactly these maps); feature maps from the cache only on request.

Dump file (`save_prediction`, one `.npz` per sample, no pickled objects): labels (X, Y, Z) uint8,
confidence and density (X, Y, Z) float16, Gaussians means (G, 3), scales (G, 3), quats (G, 4),
covariances (G, 3, 3), opacities (G,) float32, class_probs (G, K) float16, gaussian_labels (G,)
int64, timings, and a JSON `meta` string: token, vocabulary, grid, config. Gaussian features are
not stored (read back as a (1, G, 0) tensor).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import decode_jpeg, read_file

from gausstr_core.config import Config, DataConfig, config_from_dict
from gausstr_core.data.cache import read_cache_map, read_depth_map
from gausstr_core.data.nuscenes import SampleRecord
from gausstr_core.gaussians import Gaussians
from gausstr_core.grid import VoxelGrid
from gausstr_core.predict import Prediction, Views
from gausstr_core.vocabulary import Vocabulary

_GAUSSIAN_FIELDS = ("means", "scales", "quats", "covariances", "opacities")


def load_sample_views(record: SampleRecord, data: DataConfig, *, depth: bool = True, features: bool = False) -> Views:
    """Views of one keyframe in data.cameras order.

    depth: read depths from the `data.depth_kind` cache (else None: the depth provider runs);
    features: read the `data.feature_kind` cache (else None: the feature provider runs).
    """
    cameras = [record.cameras[name] for name in data.cameras]
    sizes = {(c.height, c.width) for c in cameras}
    if len(sizes) != 1:
        raise ValueError(f"sample {record.token}: cameras have different image sizes {sorted(sizes)}")
    images = []
    for camera in cameras:
        if not Path(camera.image_path).is_file():
            raise FileNotFoundError(f"sample {record.token}: image not found: {camera.image_path}")
        images.append(decode_jpeg(read_file(camera.image_path)))

    def cached(kind: str, shape: tuple[int | None, ...], read=read_cache_map) -> torch.Tensor:
        maps = [read(data.cache_root, kind, c.sample_data_token, shape) for c in cameras]
        return torch.from_numpy(np.stack(maps).astype(np.float32))

    return Views(
        images=torch.stack(images),
        intrinsics=torch.from_numpy(np.stack([c.intrinsics for c in cameras])).float(),
        cam2ego=torch.from_numpy(np.stack([c.cam2ego for c in cameras])).float(),
        depths=cached(data.depth_kind, (None, None), read_depth_map) if depth else None,
        features=cached(data.feature_kind, (None, None, None)) if features else None,
        image_size=sizes.pop(),
    )


def save_prediction(path: str | Path, prediction: Prediction, token: str = "", config: Config | None = None) -> Path:
    """Write one prediction dump (module docstring); atomic (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gaussians = prediction.gaussians
    arrays = {name: getattr(gaussians, name)[0].detach().float().cpu().numpy() for name in _GAUSSIAN_FIELDS}
    meta = {
        "token": token,
        "vocabulary": prediction.vocabulary.to_dict(),
        "grid": {"range": list(prediction.grid.range), "size": prediction.grid.size},
        "config": None if config is None else config.to_dict(),
        "timings": prediction.timings,
    }
    arrays.update(
        labels=prediction.labels.cpu().numpy(),
        confidence=prediction.confidence.cpu().numpy().astype(np.float16),
        density=prediction.density.cpu().numpy().astype(np.float16),
        class_probs=prediction.class_probs.cpu().numpy().astype(np.float16),
        gaussian_labels=prediction.gaussian_labels.cpu().numpy(),
        meta=np.array(json.dumps(meta)),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_prediction(path: str | Path) -> tuple[Prediction, dict[str, Any]]:
    """Read a dump -> (Prediction on CPU, meta) with meta['config'] a Config (or None) and meta['token']."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction dump not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"prediction dump {path} cannot be read: {err}") from err
    missing = sorted({*_GAUSSIAN_FIELDS, "labels", "confidence", "density", "class_probs", "gaussian_labels",
                      "meta"} - set(arrays))
    if missing:
        raise ValueError(f"prediction dump {path} lacks {missing}")
    meta = json.loads(str(arrays["meta"]))
    vocabulary = Vocabulary.from_dict(meta["vocabulary"], source=f"{path} vocabulary")
    fields = {name: torch.from_numpy(arrays[name])[None] for name in _GAUSSIAN_FIELDS}
    gaussians = Gaussians(**fields, features=torch.zeros(1, fields["means"].shape[1], 0))
    prediction = Prediction(
        gaussians=gaussians,
        class_probs=torch.from_numpy(arrays["class_probs"]).float(),
        gaussian_labels=torch.from_numpy(arrays["gaussian_labels"]),
        labels=torch.from_numpy(arrays["labels"]),
        confidence=torch.from_numpy(arrays["confidence"]).float(),
        density=torch.from_numpy(arrays["density"]).float(),
        class_names=vocabulary.class_names,
        free_label=vocabulary.free_label,
        grid=VoxelGrid(range=tuple(meta["grid"]["range"]), size=meta["grid"]["size"]),
        vocabulary=vocabulary,
        timings=dict(meta["timings"]),
    )
    meta["config"] = None if meta["config"] is None else config_from_dict(meta["config"])
    return prediction, meta
