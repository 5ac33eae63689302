"""Prepared map caches: `<cache_root>/<kind>/<sample_data_token>.npy` (float16) + `meta.json`.

Feature kinds hold (C, h, w) maps, depth kinds (H, W) metres (0 = no measurement), segmentation
kinds (H, W) class ids; all cover the full original image resized to the input size recorded in
meta.json (`input_size` [H, W]). Writes are atomic (gausstr_core.atomic_files), so a killed writer
never leaves a partial map behind; reads refuse files that are not .npy arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gausstr_core.atomic_files import write_atomic
from gausstr_core.file_checks import check_npy_file

META_NAME = "meta.json"


def cache_path(root: str | Path, kind: str, token: str) -> Path:
    """Path of one cached map."""
    if not kind or "/" in kind or not token:
        raise ValueError(f"cache_path: bad kind {kind!r} or token {token!r}")
    return Path(root) / kind / f"{token}.npy"


def write_cache_map(root: str | Path, kind: str, token: str, array: Any) -> Path:
    """Store one map (numpy array or tensor) as float16; returns its path."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"write_cache_map: {kind}/{token} must be numeric, got {array.dtype}")
    path = cache_path(root, kind, token)
    data = np.ascontiguousarray(array.astype(np.float16))
    write_atomic(path, lambda handle: np.save(handle, data, allow_pickle=False), durable=False)
    return path


def read_cache_map(
    root: str | Path, kind: str, token: str, expected_shape: tuple[int | None, ...] | None = None
) -> np.ndarray:
    """Load one map (float16). expected_shape may use None for free dimensions."""
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


def write_cache_meta(root: str | Path, kind: str, meta: dict[str, Any]) -> Path:
    """Write `<root>/<kind>/meta.json` (e.g. provider, input_size [H, W], channels, patch_size)."""
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
