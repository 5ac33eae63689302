"""gausstr-viz: PNGs from a checkpoint and from a dump; the drawing helpers' geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_world import synthetic_world, tiny_config, untrained_checkpoint

from gausstr_core.cli import viz as viz_cli
from gausstr_core.cli.run_config import run_config
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.predict import OccupancyPredictor
from gausstr_core.prediction_io import load_sample_views, save_prediction
from gausstr_core.viz.gaussians import bev_ellipses
from gausstr_core.viz.occupancy import top_labels

REPO = Path(__file__).resolve().parents[1]
PICTURES = ("bev", "voxels_3d", "gaussians_bev", "cameras")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("viz")
    summary = synthetic_world(root, samples_per_scene=1)
    config = tiny_config()
    checkpoint = untrained_checkpoint(root / "tiny.pth", config)
    return {"root": root, "data": str(summary.dataroot), "checkpoint": checkpoint,
            "config": run_config(config, None, str(summary.dataroot), [])}


def _check_pictures(out: Path, token: str) -> None:
    for name in PICTURES:
        path = out / f"{token}_{name}.png"
        assert path.is_file(), path
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 300
            pixels = np.asarray(image.convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, f"{path} looks blank"


def test_viz_from_checkpoint_writes_pictures(world: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = viz_cli.main(["--checkpoint", str(world["checkpoint"]), "--data", world["data"], "--index", "0",
                         "--out", str(tmp_path)])
    assert code == 0
    data = world["config"].data
    token = NuScenesReader(data.dataroot, data.version, data.cameras).split_samples("val")[0]
    _check_pictures(tmp_path, token)
    assert len(capsys.readouterr().out.split()) == len(PICTURES)


def test_viz_from_dump_writes_pictures(world: dict, tmp_path: Path) -> None:
    config = world["config"]
    reader = NuScenesReader(config.data.dataroot, config.data.version, config.data.cameras)
    token = reader.split_samples("val")[0]
    views = load_sample_views(reader.sample_record(token), config.data)
    prediction = OccupancyPredictor.from_checkpoint(world["checkpoint"], config=config).predict(views)
    dump = save_prediction(tmp_path / "dump" / f"{token}.npz", prediction, token=token, config=config)
    assert viz_cli.main(["--dump", str(dump), "--out", str(tmp_path / "pictures")]) == 0
    _check_pictures(tmp_path / "pictures", token)


def test_viz_argument_errors(world: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    common = ["--checkpoint", str(world["checkpoint"]), "--data", world["data"], "--out", str(tmp_path)]
    assert viz_cli.main(common) == 2
    assert "--sample TOKEN or --index" in capsys.readouterr().err
    assert viz_cli.main([*common, "--index", "5"]) == 2
    assert "outside split" in capsys.readouterr().err


def test_top_labels_pick_the_highest_occupied_voxel() -> None:
    free = 9
    labels = np.full((2, 2, 4), free)
    labels[0, 0, 0], labels[0, 0, 2] = 1, 3  # highest occupied: 3
    labels[1, 0, 3] = 5
    labels[0, 1, 1] = 0  # class 0 is a real class, not "empty"
    assert top_labels(labels, free).tolist() == [[3, 0], [5, -1]]


def test_bev_ellipses_follow_the_ego_axes() -> None:
    """BEV axes: horizontal = ego y, vertical = ego x; an x-elongated Gaussian stands upright."""
    means = np.array([[10.0, -5.0, 0.0], [0.0, 0.0, 0.0]])
    covariances = np.stack([np.diag([4.0, 1.0, 1.0]), np.array([[2.0, 1.0, 0], [1.0, 2.0, 0], [0, 0, 1.0]])])
    upright, diagonal = bev_ellipses(means, covariances, sigma=1.0)
    assert upright.center == (-5.0, 10.0)
    assert upright.width == pytest.approx(4.0) and upright.height == pytest.approx(2.0)  # 2 sigma along axes
    assert abs(upright.angle) % 180 == pytest.approx(90.0)
    # Major axis along x = y (eigenvalue 3): 45 degrees in (y, x) axes as well.
    assert diagonal.width == pytest.approx(2 * np.sqrt(3.0)) and diagonal.height == pytest.approx(2.0)
    assert diagonal.angle % 180 == pytest.approx(45.0)
