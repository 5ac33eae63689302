"""Locating and reading foundation-model weight files, with errors that say what to download."""

from __future__ import annotations

from pathlib import Path

import torch

from gausstr_core.errors import DamagedFileError
from gausstr_core.file_checks import check_safetensors_file, check_torch_file, load_torch_checked


class WeightsNotFoundError(FileNotFoundError):
    """Model weights are missing locally (and could not be fetched): the message says what to get and where."""


def require_path(path: str | Path | None, what: str, how_to_get: str, *, is_dir: bool = False) -> Path:
    """Return `path` as a Path if it exists (a directory when `is_dir`), else raise WeightsNotFoundError.

    A file must pass check_torch_file (or check_safetensors_file for .safetensors).

    `what` names the weights (e.g. "DINOv2 ViT-B/14-reg weights"), `how_to_get` says where to
    download them and which spec key to point at the file.
    """
    if path is None or str(path) == "":
        raise WeightsNotFoundError(f"{what}: no path given. {how_to_get}")
    resolved = Path(path).expanduser()
    exists = resolved.is_dir() if is_dir else resolved.is_file()
    if not exists:
        kind = "directory" if is_dir else "file"
        raise WeightsNotFoundError(f"{what}: {kind} not found: {resolved}. {how_to_get}")
    if not is_dir:  # before timm / open_clip / torch read it: no TorchScript or foreign zip entries
        check = check_safetensors_file if resolved.suffix == ".safetensors" else check_torch_file
        check(resolved, what)
    return resolved


def looks_like_path(value: str) -> bool:
    """True when `value` names a local file rather than a hub name / pretrained tag."""
    return value.startswith((".", "/", "~")) or Path(value).suffix in {".pth", ".pt", ".bin", ".safetensors", ".ckpt"}


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file (checked, weights_only); unwraps 'state_dict' nesting."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        check_safetensors_file(path, "weights file")
        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as exc:
            raise DamagedFileError(f"weights file {path} is damaged: {exc}") from exc
    loaded = load_torch_checked(path, "weights file")
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(loaded).__name__}")
    return loaded
