"""GaussTR checkpoints: config (plain dict) + state dict + metadata, loadable with weights_only=True.

Layout: {'config': Config.to_dict(), 'state_dict': {name: tensor}, 'meta': {'format', 'version',
'created', 'gausstr_core', 'torch', 'sha256'}, **extra}. Extras must be plain data (tensors, numbers,
strings, None, and lists/tuples/dicts of them) so the file stays loadable without unpickling code.
meta['sha256'] is `content_digest` of everything else (tensor bytes, dtypes and shapes, config,
meta, extras such as text_prototypes): loading recomputes it, so a damaged file is an error, never
a silently different weight. Files written before the digest load with a one-line warning.
Before torch reads a file, `check_torch_file` refuses TorchScript archives and anything else that
could run code. Writes are atomic and durable (gausstr_core.atomic_files).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gausstr_core
from gausstr_core.atomic_files import write_atomic
from gausstr_core.config import Config, config_from_dict
from gausstr_core.errors import DamagedFileError, UserError
from gausstr_core.file_checks import load_torch_checked
from gausstr_core.model.gausstr import GaussTR

CHECKPOINT_FORMAT = "gausstr"
CHECKPOINT_VERSION = 1
RESERVED_KEYS = ("config", "state_dict", "meta")
DIGEST_KEY = "sha256"
CONVERT_HINT = "; if it is one of the authors' mmengine .pth files, convert it first with `gausstr-convert`"

PathOrPaths = str | Path | Sequence[str | Path]
log = logging.getLogger(__name__)
_warned_undigested: set[Path] = set()


def atomic_save(obj: Any, path: PathOrPaths) -> None:
    """torch.save `obj` once, atomically and durably, at `path` (or at each of several paths, in order)."""
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    write_atomic(paths, lambda handle: torch.save(obj, handle), size_hint=_tensor_bytes(obj))


def content_digest(ckpt: dict[str, Any]) -> str:
    """sha256 over a checkpoint dict without meta['sha256']: every key, value, type, tensor dtype, shape and byte."""
    meta = {k: v for k, v in ckpt.get("meta", {}).items() if k != DIGEST_KEY}
    hasher = hashlib.sha256()
    _feed(hasher, {**ckpt, "meta": meta})
    return hasher.hexdigest()


def save_checkpoint(path: PathOrPaths, model: nn.Module, config: Config, extra: dict[str, Any] | None = None) -> None:
    """Write model weights, the full config, metadata and digest (plus plain-data `extra` entries) atomically.

    path: one path, or several that receive the same file (put in place in the given order).
    """
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
    ckpt = {"config": config.to_dict(), "state_dict": state, "meta": meta, **extra}
    meta[DIGEST_KEY] = content_digest(ckpt)
    atomic_save(ckpt, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (checked, weights_only=True, digest verified)."""
    path = Path(path)
    ckpt = load_torch_checked(path, "checkpoint", map_location, hint=CONVERT_HINT)
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in RESERVED_KEYS) or not isinstance(ckpt["meta"], dict):
        found = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(
            f"checkpoint {path} is not a GaussTR checkpoint: expected keys {list(RESERVED_KEYS)}, found {found}"
        )
    meta = ckpt["meta"]
    if meta.get("format") != CHECKPOINT_FORMAT or not isinstance(meta.get("version", 0), int) or (
        meta.get("version", 0) > CHECKPOINT_VERSION
    ):
        raise UserError(
            f"checkpoint {path}: format {meta.get('format')!r} version {meta.get('version')!r} is not readable "
            f"by this code ({CHECKPOINT_FORMAT!r} version <= {CHECKPOINT_VERSION})"
        )
    _verify_digest(ckpt, path)
    return ckpt


def _verify_digest(ckpt: dict[str, Any], path: Path) -> None:
    stored = ckpt["meta"].get(DIGEST_KEY)
    if stored is None:
        if path.resolve() not in _warned_undigested:  # once per file and process
            _warned_undigested.add(path.resolve())
            log.warning("checkpoint %s has no integrity digest (written before digests): its content is not "
                        "verified", path)
        return
    try:
        actual = content_digest(ckpt)
    except TypeError as exc:  # a damaged pickle can produce objects the digest does not cover
        raise DamagedFileError(f"checkpoint {path} is damaged: {exc}") from exc
    if actual != stored:
        raise DamagedFileError(
            f"checkpoint {path} is damaged: its content does not match the integrity digest written with it"
        )


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


def checkpoint_config(path: str | Path, ckpt: dict[str, Any] | None = None) -> Config:
    """The Config stored in the checkpoint at `path`; ckpt: that file as load_checkpoint read it, if already read."""
    saved = (load_checkpoint(path) if ckpt is None else ckpt)["config"]
    try:
        return config_from_dict(saved)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"checkpoint {path}: invalid config: {exc}") from exc


def build_model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[GaussTR, Config]:
    """GaussTR built from the checkpoint's own config, weights loaded strictly, in eval mode on `device`."""
    ckpt = load_checkpoint(path)
    config = checkpoint_config(path, ckpt)
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


def _feed(hasher: Any, value: Any) -> None:
    """Hash `value` with a type tag per node (bool != int, tuple != list), dict items in stored order."""
    if value is None:
        hasher.update(b"N")
    elif type(value) is bool:
        hasher.update(b"B1" if value else b"B0")
    elif type(value) is int:
        hasher.update(b"I%d;" % value)
    elif type(value) is float:
        hasher.update(b"F" + struct.pack("<d", value))
    elif type(value) is str:
        data = value.encode("utf-8", "surrogatepass")
        hasher.update(b"S%d;" % len(data) + data)
    elif isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        hasher.update(f"T{flat.dtype};{tuple(value.shape)};".encode())
        hasher.update(flat.view(torch.uint8).numpy().data if flat.numel() else b"")
    elif isinstance(value, (list, tuple)):
        hasher.update(b"%s%d;" % (b"L" if isinstance(value, list) else b"U", len(value)))
        for item in value:
            _feed(hasher, item)
    elif isinstance(value, dict):
        hasher.update(b"D%d;" % len(value))
        for key, item in value.items():
            _feed(hasher, key)
            _feed(hasher, item)
    else:
        raise TypeError(f"content_digest: cannot hash a {type(value).__name__}")


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0
