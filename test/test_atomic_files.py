"""Atomic multi-path writes and the clean-up of dead writers' temporaries (gausstr_core.atomic_files)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gausstr_core import atomic_files
from gausstr_core.atomic_files import StorageError, remove_stale_temporaries, temp_path, write_atomic


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_this_hosts_and_ranks_dead_temporaries_are_removed(tmp_path: Path) -> None:
    host, dead, live = atomic_files._host(), _dead_pid(), os.getppid()
    names = {
        "dead, rank 0": f".latest.pt.{host}.r0.p{dead}.tmp",
        "dead, link copy": f".epoch_1.pt.{host}.r0.p{dead}.0.tmp",
        "live process": f".latest.pt.{host}.r0.p{live}.tmp",
        "this process": temp_path(tmp_path / "latest.pt", rank=0).name,
        "other rank": f".latest.pt.{host}.r1.p{dead}.tmp",
        "other host": f".latest.pt.otherhost.r0.p{dead}.tmp",
        "not ours": ".latest.pt.abc123.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / f".bag.{host}.r0.p{dead}.tmp").mkdir()  # a bag folder being written
    removed = remove_stale_temporaries(tmp_path, rank=0)
    assert sorted(p.name for p in removed) == sorted(
        [names["dead, rank 0"], names["dead, link copy"], f".bag.{host}.r0.p{dead}.tmp"])
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {names[k] for k in ("live process", "this process", "other rank", "other host", "not ours")}


def test_one_write_lands_at_every_path_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (order.append(Path(dst).name), real_replace(src, dst)))
    write_atomic([tmp_path / "epoch_1.pt", tmp_path / "latest.pt"], lambda h: h.write(b"state"))
    assert order == ["epoch_1.pt", "latest.pt"]
    assert os.path.samefile(tmp_path / "epoch_1.pt", tmp_path / "latest.pt")
    write_atomic(tmp_path / "latest.pt", lambda h: h.write(b"newer"))  # replaces the name, not the shared file
    assert (tmp_path / "epoch_1.pt").read_bytes() == b"state" and (tmp_path / "latest.pt").read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pt", "latest.pt"]


def test_without_hard_links_the_file_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    write_atomic([tmp_path / "a", tmp_path / "b"], lambda h: h.write(b"data"))
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == b"data"
    assert not os.path.samefile(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize(("code", "need"), [(errno.ENOSPC, "it needs about 2.0 MiB"),
                                            (errno.EROFS, "it needs write permission on folder")])
def test_storage_errors_name_the_path_and_keep_the_old_file(code: int, need: str, tmp_path: Path) -> None:
    target = tmp_path / "latest.pt"
    target.write_bytes(b"previous")

    def fails(handle) -> None:
        handle.write(b"half")
        raise OSError(code, os.strerror(code))

    with pytest.raises(StorageError) as err:
        write_atomic(target, fails, size_hint=2 * 2**20)
    assert str(err.value).startswith(f"cannot write {target}: {os.strerror(code)}; {need}")
    assert "\n" not in str(err.value)
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["latest.pt"]
