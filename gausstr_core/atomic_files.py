"""Atomic, durable file writes with temporaries a later run can recognise and clean up.

A write goes to `.<name>.<host>.r<rank>.p<pid>.tmp` next to its target, is fsynced, then renamed
over the target (and the folder fsynced), so a reader or a killed writer never sees a torn file.
`write_atomic` can put one written file at several paths (hard links, or copies where the file
system has none), in the order given: e.g. `epoch_3.pt` before `latest.pt`, so that a kill between
the two renames leaves `latest.pt` at the previous state and the resumed run redoes the epoch and
writes `epoch_3.pt` again; no completed file is lost. `remove_stale_temporaries` deletes the
temporaries (files or folders) of this host and rank whose writer process is gone; those of a live
process or of another rank or host are never touched. Disk-full and permission errors become one-line
`StorageError`s naming the path and what was needed; the previous file stays intact.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

TEMP_PATTERN = re.compile(r"\.(?P<target>.+)\.(?P<host>[^.]+)\.r(?P<rank>\d+)\.p(?P<pid>\d+)(?:\.\d+)?\.tmp")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)


class StorageError(OSError):
    """A write failed for lack of space or permission (or another OS error); the message is one line."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def writer_rank() -> int:
    """This process's distributed rank (torchrun's RANK), 0 when not distributed."""
    value = os.environ.get("RANK", "0")
    return int(value) if value.isdigit() else 0


def temp_path(target: Path, rank: int | None = None, index: int | None = None) -> Path:
    """The temporary file name of this host, rank and process for `target` (see module docstring)."""
    rank = writer_rank() if rank is None else rank
    extra = "" if index is None else f".{index}"
    return target.with_name(f".{target.name}.{_host()}.r{rank}.p{os.getpid()}{extra}.tmp")


def write_atomic(
    paths: Path | Sequence[Path], write: Callable[[BinaryIO], None], *, rank: int | None = None,
    size_hint: int | None = None, durable: bool = True,
) -> None:
    """Call write(handle) once, then put the result at every path in order (see module docstring).

    size_hint: bytes the file needs about, quoted when the disk is full. durable=False skips the
    fsyncs (still atomic; for many small, re-creatable files such as cache maps).
    """
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if not paths:
        raise ValueError("write_atomic: no target path")
    folder = paths[0].parent
    if any(p.parent != folder for p in paths):
        raise ValueError(f"write_atomic: targets {paths} must share one folder")
    temps = [temp_path(paths[-1], rank)] + [temp_path(p, rank, i) for i, p in enumerate(paths[:-1])]
    try:
        current = folder
        folder.mkdir(parents=True, exist_ok=True)
        current = paths[-1]  # (its temporary file)
        with open(temps[0], "wb") as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        for target, extra in zip(paths[:-1], temps[1:]):
            current = target
            _link_or_copy(temps[0], extra)
            os.replace(extra, target)
        current = paths[-1]
        os.replace(temps[0], paths[-1])
        if durable:
            _fsync_folder(folder)
    except OSError as exc:
        raise StorageError(_describe(exc, current, size_hint)) from exc
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise
        shutil.copyfile(src, dst)  # no hard links here (e.g. FAT, some network file systems)
        with open(dst, "rb+") as handle:
            os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(exc: OSError, path: Path, size_hint: int | None) -> str:
    reason = exc.strerror or str(exc)
    folder = path if path.is_dir() else path.parent
    if exc.errno in NO_SPACE:
        free = shutil.disk_usage(folder).free if folder.exists() else 0
        need = f"about {size_hint / 2**20:.1f} MiB" if size_hint else "more space"
        return f"cannot write {path}: {reason}; it needs {need}, {free / 2**20:.1f} MiB are free in {folder}"
    if exc.errno in NO_PERMISSION:
        return f"cannot write {path}: {reason}; it needs write permission on folder {folder}"
    return f"cannot write {path}: {reason}"


def process_alive(pid: int) -> bool:
    """True when a process with this id exists on this host (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | Path, rank: int | None = None) -> list[Path]:
    """Delete this host's and rank's temporaries in `folder` whose writer process is dead; returns them."""
    folder, rank = Path(folder), writer_rank() if rank is None else rank
    removed = []
    for path in sorted(folder.glob(".*.tmp")) if folder.is_dir() else []:
        match = TEMP_PATTERN.fullmatch(path.name)
        if match is None or match["host"] != _host() or int(match["rank"]) != rank:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not process_alive(pid):
            if path.is_dir():
                shutil.rmtree(path)  # e.g. a bag folder (gausstr_ros.tools.bag_writer)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed
