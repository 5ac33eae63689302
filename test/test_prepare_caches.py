"""`gausstr-prepare features/depth`: caches the reader loads, resuming after a crash or a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_foundation_fakes import TINY_DINO_KWARGS, write_fake_metric3d_hub, write_tiny_dinov2, write_tiny_nuscenes

import gausstr_core.foundation.registry as registry
from gausstr_core.cli.prepare import main, parse_provider_spec
from gausstr_core.data.augment import plan_resize_crop
from gausstr_core.data.cache import read_cache_map, read_cache_meta
from gausstr_core.data.nuscenes import NuScenesReader

CAMERAS = 6


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nuscenes")
    write_tiny_nuscenes(root, samples=3)
    return root


@pytest.fixture(scope="module")
def dino_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dino")
    weights = write_tiny_dinov2(folder / "tiny.pth")
    spec = folder / "dino.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"name": "dinov2", "weights": str(weights), "input_size": [56, 84], "model_kwargs": TINY_DINO_KWARGS}
        )
    )
    return spec


def _args(command: str, tree: Path, cache: Path, kind: str, provider: str, *extra: str, size=("56", "84")) -> list[str]:
    return [
        command,
        "--dataroot",
        str(tree),
        "--version",
        "v1.0-mini",
        "--split",
        "train",
        "--cache-root",
        str(cache),
        "--kind",
        kind,
        "--provider",
        provider,
        "--input-size",
        *size,
        "--device",
        "cpu",
        *extra,
    ]


def _camera_records(tree: Path, limit: int | None = None):
    reader = NuScenesReader(tree, "v1.0-mini")
    tokens = reader.split_samples("train")[:limit]
    return [cam for token in tokens for cam in reader.sample_record(token).cameras.values()]


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")}


def test_feature_caches_match_the_provider(tree, dino_spec, tmp_path) -> None:
    cache = tmp_path / "cache"
    assert main(_args("features", tree, cache, "dino", str(dino_spec), "--limit", "2", "--batch-size", "4")) == 0
    records = _camera_records(tree, limit=2)
    assert len(list((cache / "dino").glob("*.npy"))) == 2 * CAMERAS == len(records)
    meta = read_cache_meta(cache, "dino")
    assert meta["map"] == "feature" and meta["provider"] == "dinov2"
    assert meta["input_size"] == [56, 84] and meta["channels"] == 48 and meta["patch_size"] == 14

    provider = registry.build_feature_provider(yaml.safe_load(dino_spec.read_text()))
    for record in records[::5]:  # each file holds the features of its own image
        image = torch.from_numpy(np.array(Image.open(record.image_path).convert("RGB"))).permute(2, 0, 1).float() / 255
        expected = provider(plan_resize_crop(tuple(image.shape[-2:]), (56, 84)).image(image)[None])[0]
        cached = read_cache_map(cache, "dino", record.sample_data_token, (48, 4, 6))
        assert cached.dtype.name == "float16"
        torch.testing.assert_close(torch.from_numpy(cached).float(), expected, atol=2e-2, rtol=1e-2)


def test_resume_after_injected_failure(tree, dino_spec, tmp_path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    real_build = registry.build_feature_provider
    calls = {"count": 0}

    def failing_build(spec, device=None):
        provider = real_build(spec, device)

        class FailsOnSecondBatch:
            feature_dim, patch_size = provider.feature_dim, provider.patch_size

            def __call__(self, images):
                calls["count"] += 1
                if calls["count"] == 2:
                    raise RuntimeError("injected failure")
                return provider(images)

        return FailsOnSecondBatch()

    monkeypatch.setattr(registry, "build_feature_provider", failing_build)
    with pytest.raises(RuntimeError, match="injected failure"):
        main(_args("features", tree, cache, "dino", str(dino_spec), "--batch-size", "6"))
    finished = _mtimes(cache / "dino")
    assert len(finished) == 6 and not list((cache / "dino").glob(".*"))

    calls["count"] = 10  # no more failures
    main(_args("features", tree, cache, "dino", str(dino_spec), "--batch-size", "6"))
    assert calls["count"] == 12  # only the two missing batches ran
    after = _mtimes(cache / "dino")
    assert len(after) == 3 * CAMERAS
    assert {name: after[name] for name in finished} == finished  # finished files were not rewritten

    # resuming with other settings is refused
    assert main(_args("features", tree, cache, "dino", str(dino_spec), size=("28", "42"))) == 2
    assert "was written with input_size=[56, 84]" in capsys.readouterr().err


def test_depth_resume_after_sigkill(tree, tmp_path) -> None:
    hub = write_fake_metric3d_hub(tmp_path / "Metric3D")
    provider = f"{{name: metric3d, hub_dir: {hub}, entry: metric3d_vit_small, process_size: [64, 112]}}"
    weights = tmp_path / "fake_metric3d.pth"
    torch.save({"model_state_dict": {"gain": torch.tensor(10.0)}}, weights)
    cache = tmp_path / "cache"
    args = _args("depth", tree, cache, "m3d", provider, "--option", f"weights={weights}", "--batch-size", "1")
    env = {**os.environ, "FAKE_METRIC3D_DELAY": "0.4", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen(
        [sys.executable, "-m", "gausstr_core.cli.prepare", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while len(list((cache / "m3d").glob("*.npy"))) < 3:
            assert child.poll() is None, f"prepare exited early: {child.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "prepare wrote no caches within 120 s"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stderr.close()
    finished = _mtimes(cache / "m3d")
    assert 3 <= len(finished) < 3 * CAMERAS
    for name in finished:  # every finished file is complete
        read_cache_map(cache, "m3d", name[: -len(".npy")], (56, 84))

    main(args)  # resume in-process, no delay
    after = _mtimes(cache / "m3d")
    assert len(after) == 3 * CAMERAS
    assert {name: after[name] for name in finished} == finished
    assert not [p.name for p in (cache / "m3d").iterdir() if p.name.startswith(".")]  # no partial leftovers
    assert read_cache_meta(cache, "m3d")["map"] == "depth"
    # the depth model saw the original images: depth = canonical (1 + 10 gray) x original f / 1000
    fx_original = {r.sample_data_token: r.intrinsics[0, 0] for r in _camera_records(tree)}
    for token, fx in list(fx_original.items())[::7]:
        depth = read_cache_map(cache, "m3d", token, (56, 84))
        assert depth.dtype == np.float32
        assert (depth >= fx / 1000 * 0.99).all() and (depth <= 11 * fx / 1000 * 1.01).all()


def test_parse_provider_spec(tmp_path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text('{"name": "dinov2", "weights": "/w.pth"}')
    assert parse_provider_spec(str(spec_file), ["device=cuda", "input_size=[28, 42]"]) == {
        "name": "dinov2",
        "weights": "/w.pth",
        "device": "cuda",
        "input_size": [28, 42],
    }
    assert parse_provider_spec("synthetic", ["feature_dim=8"]) == {"name": "synthetic", "feature_dim": 8}
    assert parse_provider_spec("{name: clip, model: ViT-B-16}") == {"name": "clip", "model": "ViT-B-16"}
    assert parse_provider_spec(None, [], {"name": "metric3d"}) == {"name": "metric3d"}
    with pytest.raises(ValueError, match="needs a 'name'"):
        parse_provider_spec(None)
    with pytest.raises(ValueError, match="key=value"):
        parse_provider_spec("clip", ["oops"])
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        parse_provider_spec(str(tmp_path / "absent.yaml"))


class FullFrameDepth:
    """Stand-in depth provider: insists on the original 1600x900 frames and their own intrinsics."""

    def __init__(self, device: str = "cpu") -> None:
        self.calls = 0

    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        assert images.shape[1:] == (3, 900, 1600), f"depth provider got {tuple(images.shape)}, not 1600x900 frames"
        assert float(intrinsics[0, 0, 2]) > 700  # original-pixel principal point (nuScenes cx ~800)
        columns = torch.arange(1600, dtype=torch.float32) / 100 + 1.0  # (W,), plus a per-image offset:
        return columns + images[:, 0].mean(dim=(1, 2))[:, None, None] * torch.ones(1, 900, 1)


def test_depth_provider_sees_the_original_frames(tmp_path, monkeypatch) -> None:
    tree = tmp_path / "full"
    write_tiny_nuscenes(tree, samples=1, width=1600, height=900)
    monkeypatch.setitem(registry.DEPTH_PROVIDERS, "full_frame", "test_prepare_caches:FullFrameDepth")
    cache = tmp_path / "cache"
    main(_args("depth", tree, cache, "full", "full_frame", size=("56", "84")))
    meta = read_cache_meta(cache, "full")
    assert meta["dtype"] == "float32" and meta["provider_input"] == "original"
    record = _camera_records(tree)[0]
    image = torch.from_numpy(np.array(Image.open(record.image_path).convert("RGB"))).permute(2, 0, 1)[None] / 255.0
    full = FullFrameDepth()(image, torch.as_tensor(record.intrinsics, dtype=torch.float32)[None])
    expected = plan_resize_crop((900, 1600), (56, 84)).depth(full)[0]  # as GaussTRDataset resizes depth
    cached = read_cache_map(cache, "full", record.sample_data_token, (56, 84))
    assert cached.dtype == np.float32
    np.testing.assert_allclose(cached, expected.numpy(), rtol=1e-6)


def test_old_float16_depth_caches_load_with_one_warning(tmp_path, caplog) -> None:
    from gausstr_core.data.cache import cache_path, read_depth_map, write_cache_map

    depth = np.linspace(30.0, 60.0, 12, dtype=np.float32).reshape(3, 4)
    assert write_cache_map(tmp_path, "new", "a", depth) and read_cache_map(tmp_path, "new", "a").dtype == np.float32
    assert read_cache_map(tmp_path, "new", "a").tobytes() == depth.tobytes()  # float32: exact
    assert write_cache_map(tmp_path, "feat", "a", np.zeros((2, 3, 4))) and \
        read_cache_map(tmp_path, "feat", "a").dtype == np.float16
    old = cache_path(tmp_path, "old", "a")
    old.parent.mkdir()
    for token in ("a", "b"):
        np.save(cache_path(tmp_path, "old", token), depth.astype(np.float16))
    with caplog.at_level("WARNING", logger="gausstr_core.data.cache"):
        first = read_depth_map(tmp_path, "old", "a")
        read_depth_map(tmp_path, "old", "b")
        read_depth_map(tmp_path, "new", "a")
    assert first.dtype == np.float32 and np.abs(first - depth).max() <= 0.03
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "float16" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
