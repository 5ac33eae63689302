"""Prepared map caches: `<cache_root>/<kind>/<sample_data_token>.npy` + `meta.json`.

Dtypes (CACHE_DTYPES, recorded as `dtype` in meta.json): feature maps float16 (half the disk, well
inside the features' noise), depth and segmentation maps float32 (float16 depth steps are 3 cm at
32-64 m). Depth caches written as float16 by older versions still load (read_depth_map), with a
one-line warning per cache.

Feature kinds hold (C, h, w) maps, depth kinds (H, W) metres (0 = no measurement), segmentation
kinds (H, W) class ids; all cover the full original image resized to the input size recorded in
meta.json (`input_size` [H, W]). Writes are atomic (gausstr_core.atomic_files), so a killed writer
never leaves a partial map behind; reads refuse files that are not .npy arrays.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from gausstr_core.atomic_files import write_atomic
from gausstr_core.file_checks import check_npy_file

META_NAME = "meta.json"
CACHE_DTYPES = {"feature": "float16", "depth": "float32", "segmentation": "float32"}  # meta "map" -> dtype
LOG = logging.getLogger(__name__)
_warned_float16: set[tuple[str, str]] = set()


def cache_path(root: str | Path, kind: str, token: str) -> Path:
    """Path of one cached map."""
    if not kind or "/" in kind or not token:
        raise ValueError(f"cache_path: bad kind {kind!r} or token {token!r}")
    return Path(root) / kind / f"{token}.npy"


def write_cache_map(root: str | Path, kind: str, token: str, array: Any, dtype: str | None = None) -> Path:
    """Store one map (numpy array or tensor); returns its path. dtype None: CACHE_DTYPES of its
    kind of map, told by its shape: (C, h, w) feature maps float16, (H, W) maps float32."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"write_cache_map: {kind}/{token} must be numeric, got {array.dtype}")
    path = cache_path(root, kind, token)
    dtype = dtype or CACHE_DTYPES["feature" if array.ndim == 3 else "depth"]
    data = np.ascontiguousarray(array.astype(dtype))
    write_atomic(path, lambda handle: np.save(handle, data, allow_pickle=False), durable=False)
    return path


def read_cache_map(
    root: str | Path, kind: str, token: str, expected_shape: tuple[int | None, ...] | None = None
) -> np.ndarray:
    """Load one map (as stored, see CACHE_DTYPES). expected_shape may use None for free dimensions."""
    path = cache_path(root, kind, token)
    if not path.is_file():
        raise FileNotFoundError(f"cache map not found: {path} (kind {kind!r}, token {token})")
    check_npy_file(path, "cache map")  # e.g. a zip, which numpy would open as an .npz
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"cache map {path} cannot be read: {err}") from err
    if expected_shape is not None:
        ok = len(array.shape) == len(expected_shape) and all(
            want is None or want == got for want, got in zip(expected_shape, array.shape)
        )
        if not ok:
            shown = ", ".join("*" if d is None else str(d) for d in expected_shape)
            raise ValueError(f"cache map {path} has shape {tuple(array.shape)}, expected ({shown})")
    return array


def read_depth_map(
    root: str | Path, kind: str, token: str, expected_shape: tuple[int | None, ...] | None = None
) -> np.ndarray:
    """Load one depth map as float32 (m); a float16 map (older caches) is read with a one-line warning per cache."""
    array = read_cache_map(root, kind, token, expected_shape)
    if array.dtype == np.float16 and (str(root), kind) not in _warned_float16:
        _warned_float16.add((str(root), kind))
        LOG.warning(
            "depth cache %s is float16 (written by an older gausstr-prepare: ~3 cm steps at 32-64 m); "
            "rewrite it for float32 precision", Path(root) / kind,
        )
    return array.astype(np.float32)


def write_cache_meta(root: str | Path, kind: str, meta: dict[str, Any]) -> Path:
    """Write `<root>/<kind>/meta.json` (e.g. map, provider, input_size [H, W], channels, patch_size);
    `dtype` is added from CACHE_DTYPES when meta names its `map` and gives none."""
    if meta.get("map") in CACHE_DTYPES and "dtype" not in meta:
        meta = {**meta, "dtype": CACHE_DTYPES[meta["map"]]}
    path = Path(root) / kind / META_NAME
    text = json.dumps(meta, indent=2, sort_keys=True).encode()
    write_atomic(path, lambda handle: handle.write(text), durable=False)
    return path


def read_cache_meta(root: str | Path, kind: str) -> dict[str, Any]:
    """Read `<root>/<kind>/meta.json`."""
    path = Path(root) / kind / META_NAME
    if not path.is_file():
        raise FileNotFoundError(f"cache meta not found: {path} (kind {kind!r})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"cache meta {path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise ValueError(f"cache meta {path} must hold a JSON object")
    return meta
