"""gausstr-bag never leaves a partial bag: the new bag appears only when complete, a failed write
leaves the old one untouched; metadata says ros_distro jazzy; the version folder is found."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.data.synthetic.generate import SynthOptions, generate_dataset
from gausstr_ros.tools import bag_cli
from gausstr_ros.tools.bag_writer import camera_frames, write_bag


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bag_tree")
    generate_dataset(root, SynthOptions(scenes=1, samples_per_scene=2, sweeps=False, image_size=(96, 56), patch_size=8))
    return root


def _frames(tree: Path) -> list:
    reader = NuScenesReader(tree, "v1.0-mini")
    return camera_frames(reader, reader.scene_names)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def test_metadata_names_jazzy_and_the_bag_reads(tree: Path, tmp_path: Path) -> None:
    summary = write_bag(tmp_path / "bag", _frames(tree), progress=False)
    meta = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["ros_distro"] == "jazzy"
    with Reader(tmp_path / "bag") as reader:
        assert reader.message_count == sum(summary.message_counts.values()) == meta["message_count"]
    assert _siblings(tmp_path / "bag") == ["bag"]


def test_a_failed_write_leaves_the_old_bag_untouched(tree: Path, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    write_bag(bag, _frames(tree), progress=False)
    before = _digest(bag)
    calls = []

    def depth_fails_midway(record):
        calls.append(record)
        if len(calls) == 5:
            raise OSError("disk gone")
        return np.ones((4, 6), np.float32)

    with pytest.raises(OSError, match="disk gone"):
        write_bag(bag, _frames(tree), depth=depth_fails_midway, overwrite=True, progress=False)
    assert _digest(bag) == before and _siblings(bag) == ["bag"]


def test_a_failed_final_rename_puts_the_old_bag_back(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = tmp_path / "bag"
    write_bag(bag, _frames(tree), progress=False)
    before = _digest(bag)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        if Path(dst).parent == tmp_path:  # not the bag writer's own renames inside the folder
            calls.append((Path(src).name, Path(dst).name))
            if len(calls) == 2:  # the new bag -> bag, after the old one was moved aside
                raise OSError("rename refused")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="rename refused"):
        write_bag(bag, _frames(tree), overwrite=True, progress=False)
    assert calls[0][0] == "bag" and calls[0][1].startswith(".bag.") and calls[1][1] == "bag"
    assert _digest(bag) == before and _siblings(bag) == ["bag"]


def test_the_only_version_folder_is_found(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # config defaults name v1.0-trainval; the tree holds only v1.0-mini
    assert bag_cli.main([str(tmp_path / "bag"), "--dataroot", str(tree), "--quiet", "--limit", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    two = tmp_path / "two"
    shutil.copytree(tree / "v1.0-mini", two / "v1.0-mini")
    shutil.copytree(tree / "v1.0-mini", two / "v1.0-other")
    assert bag_cli.main([str(tmp_path / "bag2"), "--dataroot", str(two), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 other v1.0-* folders (['v1.0-mini', 'v1.0-other'])" in err
