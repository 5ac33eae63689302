"""GaussTR checkpoints: config (plain dict) + state dict + metadata, loadable with weights_only=True.

Layout: {'config': Config.to_dict(), 'state_dict': {name: tensor}, 'meta': {'format', 'version',
'created', 'gausstr_core', 'torch'}, **extra}. Extras must be plain data (tensors, numbers, strings,
None, and lists/tuples/dicts of them) so the file stays loadable without unpickling code.
"""

from __future__ import annotations

import datetime
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gausstr_core
from gausstr_core.config import Config, config_from_dict
from gausstr_core.model.gausstr import GaussTR

CHECKPOINT_FORMAT = "gausstr"
CHECKPOINT_VERSION = 1
RESERVED_KEYS = ("config", "state_dict", "meta")


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file next to `path`, fsync, then rename over `path` (never a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(path: str | Path, model: nn.Module, config: Config, extra: dict[str, Any] | None = None) -> None:
    """Write model weights, the full config and metadata (plus plain-data `extra` entries) atomically."""
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"save_checkpoint: extra keys {clash} are reserved")
    for key, value in extra.items():
        _check_plain(value, f"extra[{key!r}]")
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "gausstr_core": gausstr_core.__version__,
        "torch": str(torch.__version__),
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save({"config": config.to_dict(), "state_dict": state, "meta": meta, **extra}, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (weights_only=True). Returns its dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line), None)
        if reason is None:
            raise ValueError(f"checkpoint {path} is corrupt or not a torch file: {exc}") from exc
        raise ValueError(
            f"checkpoint {path} holds objects that are not plain weights ({reason}); if it is one of the "
            "authors' mmengine .pth files, convert it first with `gausstr-convert`"
        ) from exc
    except (RuntimeError, EOFError, IndexError, zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"checkpoint {path} is corrupt or not a torch file: {exc}") from exc
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in RESERVED_KEYS):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"checkpoint {path} is not a GaussTR checkpoint: expected keys {list(RESERVED_KEYS)}, found {found}"
        )
    meta = ckpt["meta"]
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {path}: format {meta.get('format')!r} version {meta.get('version')!r} is not readable "
            f"by this code ({CHECKPOINT_FORMAT!r} version <= {CHECKPOINT_VERSION})"
        )
    return ckpt


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict) with one error listing missing keys, unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(
        f"{k}: {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if state_dict[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        parts = [f"{label} ({len(keys)}): {', '.join(keys)}" for label, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
        raise ValueError(f"{source} does not match the model config: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def build_model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[GaussTR, Config]:
    """GaussTR built from the checkpoint's own config, weights loaded strictly, in eval mode on `device`."""
    ckpt = load_checkpoint(path)
    try:
        config = config_from_dict(ckpt["config"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"checkpoint {path}: invalid config: {exc}") from exc
    model = GaussTR(config.model)
    load_state_dict_strict(model, ckpt["state_dict"], f"checkpoint {path}")
    return model.to(device).eval(), config


def _check_plain(value: Any, where: str) -> None:
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"save_checkpoint: {where} has a key of type {type(k).__name__}; use str or int")
            _check_plain(item, f"{where}[{k!r}]")
        return
    raise TypeError(f"save_checkpoint: {where} is a {type(value).__name__}; only tensors, numbers, strings, "
                    "None and lists/dicts of them can be loaded with weights_only=True")
