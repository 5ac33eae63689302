"""Checks on a file before any loader parses it, so that nothing in a file we read can run code.

`torch.load(weights_only=False)` (the converter's allow-list path) hands a TorchScript archive to
`torch.jit.load`, which runs the archive's code; `weights_only=True` refuses it, but only after
torch has opened it. `check_torch_file` decides from the file alone: a zip archive (torch.save's
format) may hold only the entries torch.save writes (`<prefix>/data.pkl`, `data/<n>` tensor
records, `byteorder`, `version`, ...); a TorchScript archive (`code/`, `constants.pkl`, ...) or any
other entry is refused, as is the pre-2017 tar format. A non-zip file is a legacy pickle, which the
loaders read with weights_only=True or the allow-list unpickler (gausstr_core.model.safe_unpickle).
`check_npy_file` and `check_safetensors_file` check the magic bytes of the two data-only formats.
Every refusal names the file and the reason.
"""

from __future__ import annotations

import json
import pickle
import re
import stat
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from gausstr_core.errors import DamagedFileError, UnsafeFileError, UserError

ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"
# Entries torch.save writes under the archive's one top-level folder (torch 1.6 to 2.x).
TORCH_SAVE_ENTRY = re.compile(
    r"data\.pkl|byteorder|version|\.format_version|\.storage_alignment|\.data/serialization_id|\.data/version|data/\d+"
)
TORCHSCRIPT_MARKERS = ("code/", "constants.pkl", "extra/", "attributes.pkl", ".data/ts_code")
# What torch.load raises on a damaged file (beyond pickle.UnpicklingError).
TORCH_LOAD_ERRORS = (RuntimeError, EOFError, IndexError, KeyError, ValueError, TypeError, AttributeError,
                     OverflowError, UnicodeDecodeError, struct.error, zipfile.BadZipFile, OSError)


def regular_file(path: str | Path, what: str) -> Path:
    """`path` as a Path if it is a non-empty regular file; FileNotFoundError / UserError / DamagedFileError else."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{what} {path} is not a regular file")
    if info.st_size == 0:
        raise DamagedFileError(f"{what} {path} is empty")
    return path


def check_torch_file(path: str | Path, what: str = "torch file") -> Path:
    """Refuse (UnsafeFileError) a file torch.load could execute code from; see the module docstring."""
    path = regular_file(path, what)
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC:
        _check_torch_zip(path, what)
    elif tarfile.is_tarfile(path):
        raise UnsafeFileError(f"{what} {path} is in torch's legacy tar format, which is not read (it unpacks files)")
    return path


def load_torch_checked(
    path: str | Path, what: str, map_location: str | torch.device = "cpu", hint: str = ""
) -> Any:
    """check_torch_file, then torch.load(weights_only=True); damaged or non-plain content -> one clear error.

    hint: appended to the error when the file holds objects other than plain data.
    """
    path = check_torch_file(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line), None)
        if reason is None:
            raise DamagedFileError(f"{what} {path} is corrupt or not a torch file: {exc}") from exc
        raise UserError(f"{what} {path} holds objects that are not plain data ({reason}){hint}") from exc
    except TORCH_LOAD_ERRORS as exc:
        raise DamagedFileError(f"{what} {path} is corrupt or not a torch file: {exc}") from exc


def _check_torch_zip(path: Path, what: str) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        records = torch._C.PyTorchFileReader(str(path)).get_all_records()  # the listing torch.load will act on
    except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise DamagedFileError(f"{what} {path} is a damaged zip archive (truncated or corrupt): {exc}") from exc
    prefixes = {name.split("/", 1)[0] for name in names}
    inner = [name.split("/", 1)[1] if "/" in name else name for name in names]
    script = sorted({e for e in [*inner, *records] for m in TORCHSCRIPT_MARKERS if e.startswith(m)})
    if script:
        raise UnsafeFileError(
            f"{what} {path} is a TorchScript archive (holds {', '.join(script[:3])}): loading it would run its "
            "code, refused unread"
        )
    foreign = sorted({e for e in [*inner, *records] if not TORCH_SAVE_ENTRY.fullmatch(e)})
    if len(prefixes) != 1 or foreign or "data.pkl" not in records:
        detail = f"entries {foreign[:3]}" if foreign else f"top-level folders {sorted(prefixes)}"
        raise UnsafeFileError(f"{what} {path} is a zip archive but not one written by torch.save ({detail}): refused")


def check_npy_file(path: str | Path, what: str = "array file") -> Path:
    """Refuse a file that is not a .npy array (numpy would open e.g. a zip as an .npz instead)."""
    path = regular_file(path, what)
    with open(path, "rb") as handle:
        head = handle.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        raise DamagedFileError(f"{what} {path} cannot be read: it is not a .npy array file (starts with {head!r})")
    return path


def check_safetensors_file(path: str | Path, what: str = "weights file") -> Path:
    """Refuse a file whose first bytes are not a safetensors header (8-byte length + JSON object)."""
    path = regular_file(path, what)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        ok = 1 < length <= size - 8
        if ok:
            try:
                ok = isinstance(json.loads(handle.read(length)), dict)
            except (UnicodeDecodeError, json.JSONDecodeError):
                ok = False
    if not ok:
        raise DamagedFileError(f"{what} {path} is not a safetensors file (no valid header)")
    return path
