"""Files that cannot hurt: every loader refuses code-carrying files before torch reads them, and a
checkpoint's content digest turns any damage into a clear error (never a silently different weight)."""

from __future__ import annotations

import logging
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from crafted_files import torchscript_archive

from gausstr_core.cli.convert import main as convert_main
from gausstr_core.config import Config, ModelConfig
from gausstr_core.data.cache import read_cache_map
from gausstr_core.errors import DamagedFileError, UnsafeFileError
from gausstr_core.foundation.weights import load_state_dict_file, require_path
from gausstr_core.model import GaussTR, load_checkpoint, save_checkpoint
from gausstr_core.model.checkpoint import content_digest
from gausstr_core.model.safe_unpickle import load_foreign_checkpoint
from gausstr_core.vocabulary import load_prototypes

LOADERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "checkpoint": ("model.pt", load_checkpoint),
    "foreign checkpoint": ("authors.pth", load_foreign_checkpoint),
    "prototype file": ("prototypes.pth", load_prototypes),
    "weights file": ("backbone.pth", load_state_dict_file),
    "foundation weights path": ("dinov2.pth", lambda p: require_path(p, "DINOv2 weights", "get them")),
    "cache map": ("depth/tok.npy", lambda p: read_cache_map(p.parents[1], "depth", "tok")),
}


def test_the_crafted_archive_really_creates_its_file_when_loaded_by_torch(tmp_path: Path) -> None:
    marker = tmp_path / "created"
    archive = torchscript_archive(tmp_path / "evil.pt", marker)
    assert not marker.exists()
    with pytest.warns(UserWarning, match="TorchScript"):
        torch.load(archive, weights_only=False)  # what gausstr-convert did before these checks
    assert marker.exists()


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_every_loader_refuses_a_torchscript_archive_unread(loader: str, tmp_path: Path) -> None:
    name, load = LOADERS[loader]
    marker = tmp_path / "created"
    path = tmp_path / "data" / name
    path.parent.mkdir(parents=True)
    torchscript_archive(path, marker)
    with pytest.raises((UnsafeFileError, DamagedFileError)) as err:
        load(path)
    assert str(path) in str(err.value)
    assert "TorchScript" in str(err.value) or "not a .npy" in str(err.value)
    assert not marker.exists()


def test_gausstr_convert_refuses_a_torchscript_archive_in_one_line(
    tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "created"
    src = torchscript_archive(tmp_path / "evil.pth", marker)
    rc = convert_main([str(src), str(tmp_path / "out.pt"), "--config", str(repo_root / "config/gausstr_featup.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "TorchScript" in err and str(src) in err
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_zip_entries_torch_save_never_writes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("m/hook.py", "print('hi')")
    with pytest.raises(UnsafeFileError, match=r"not one written by torch.save \(entries \['hook.py'\]\)"):
        load_state_dict_file(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", b"\x80\x02garbage"], ids=["empty", "zip", "pickle"])
def test_empty_truncated_and_garbage_files_give_one_clear_error(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    path.write_bytes(content)
    for load in (load_checkpoint, load_foreign_checkpoint):
        with pytest.raises(DamagedFileError, match=str(path)):
            load(path)


def _tiny_checkpoint(path: Path) -> dict:
    cfg = Config(model=ModelConfig(feature_dim=16, embed_dims=32, num_queries=4, num_layers=1, num_heads=2,
                                   num_points=2, ffn_dims=32, mlp_hidden=32))
    torch.manual_seed(0)
    prototypes = {"embeddings": torch.randn(16, 5), "prompts": ["car", "road", "tree", "sky", "person"]}
    save_checkpoint(path, GaussTR(cfg.model), cfg, extra={"text_prototypes": prototypes, "step": 3})
    return load_checkpoint(path)


def _same_content(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(
            a.view(torch.uint8) if a.numel() else a, b.view(torch.uint8) if b.numel() else b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same_content(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same_content(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_every_flipped_byte_is_an_error_or_changes_nothing(tmp_path: Path) -> None:
    original = tmp_path / "model.pt"
    reference = _tiny_checkpoint(original)
    data = original.read_bytes()
    rng = random.Random(14)
    # Spread over the whole file, plus the zip headers and data.pkl at the start and the directory at the end.
    segment = len(data) // 120
    positions = [i * segment + rng.randrange(segment) for i in range(120)]
    positions += [rng.randrange(2048) for _ in range(40)] + [len(data) - 1 - rng.randrange(2048) for _ in range(40)]
    damaged, outcomes = tmp_path / "damaged.pt", {"error": 0, "identical": 0}
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= rng.randrange(1, 256)
        damaged.write_bytes(bytes(flipped))
        try:
            loaded = load_checkpoint(damaged)
        except ValueError as err:  # DamagedFileError / UserError: one clear message naming the file
            assert str(damaged) in str(err), err
            outcomes["error"] += 1
            continue
        assert _same_content(loaded, reference), f"flip at byte {position} changed the content silently"
        outcomes["identical"] += 1
    assert outcomes["error"] > 0.8 * len(positions)


def test_a_changed_weight_fails_the_digest(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    _tiny_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["text_prototypes"]["embeddings"][0, 0] += 1e-3  # an extra, not only the weights, is covered
    torch.save(ckpt, path)
    with pytest.raises(DamagedFileError, match=f"checkpoint {path} is damaged: its content does not match"):
        load_checkpoint(path)


def test_a_checkpoint_without_digest_loads_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.pt"
    reference = _tiny_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["meta"]["sha256"]
    torch.save(ckpt, path)
    with caplog.at_level(logging.WARNING):
        loaded = load_checkpoint(path)
    assert [r.getMessage().count("\n") for r in caplog.records] == [0]
    assert "no integrity digest" in caplog.text and str(path) in caplog.text
    assert content_digest(loaded) == content_digest({**reference, "meta": loaded["meta"]})


def test_cache_maps_must_be_npy(tmp_path: Path) -> None:
    folder = tmp_path / "depth"
    folder.mkdir()
    with open(folder / "tok.npy", "wb") as handle:  # a zip under the .npy name: numpy would open it as an .npz
        np.savez(handle, a=np.zeros(2))
    with pytest.raises(DamagedFileError, match="not a .npy array file"):
        read_cache_map(tmp_path, "depth", "tok")
