"""gausstr-eval on a tiny synthetic world: metrics equal an independent computation from predict()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_world import synthetic_world, tiny_config, untrained_checkpoint
from torchvision.io import decode_jpeg, read_file

from gausstr_core.cli import eval as eval_cli
from gausstr_core.cli.run_config import run_config
from gausstr_core.data.cache import read_cache_map
from gausstr_core.data.nuscenes import NuScenesReader
from gausstr_core.predict import OccupancyPredictor, Views
from gausstr_core.prediction_io import load_prediction
from gausstr_core.resources import resolve_resource

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One scene with two keyframes (the split file makes it both train and val); a tiny checkpoint
    whose data section is the tiny config's defaults, so eval must take the data from --data."""
    root = tmp_path_factory.mktemp("eval")
    summary = synthetic_world(root, samples_per_scene=2)
    config = tiny_config()
    checkpoint = untrained_checkpoint(root / "tiny.pth", config)
    json_path, dump_dir = root / "out" / "metrics.json", root / "dumps"
    code = eval_cli.main([str(checkpoint), "--data", str(summary.dataroot), "--split", "val", "--limit", "2",
                          "--json", str(json_path), "--dump-dir", str(dump_dir), "--no-progress",
                          "data.input_size=[112,200]"])
    return {"root": root, "summary": summary, "checkpoint": checkpoint, "code": code, "json": json_path,
            "dumps": dump_dir, "config": run_config(config, None, str(summary.dataroot), ["data.input_size=[112,200]"])}


@pytest.fixture(scope="module")
def independent(world: dict) -> dict:
    """Predict each val sample from JPEGs + depth cache read here, score with a numpy confusion matrix.

    Returns per-class IoU (None where undefined), the summary numbers and the labels by token."""
    config = world["config"]
    data = config.data
    predictor = OccupancyPredictor.from_checkpoint(world["checkpoint"], config=config)
    vocabulary = yaml.safe_load(resolve_resource(config.inference.vocabulary, "vocabulary").read_text())
    occ3d_of_class = np.array([c["occ3d_id"] for c in vocabulary["classes"]])
    reader = NuScenesReader(data.dataroot, data.version, data.cameras)
    confusion = np.zeros((18, 18), dtype=np.int64)
    labels = {}
    for token in reader.split_samples("val")[:2]:
        record = reader.sample_record(token)
        cams = [record.cameras[c] for c in data.cameras]
        views = Views(
            images=torch.stack([decode_jpeg(read_file(c.image_path)) for c in cams]),
            intrinsics=torch.tensor(np.stack([c.intrinsics for c in cams]), dtype=torch.float32),
            cam2ego=torch.tensor(np.stack([c.cam2ego for c in cams]), dtype=torch.float32),
            depths=torch.tensor(np.stack([read_cache_map(data.cache_root, data.depth_kind, c.sample_data_token)
                                          for c in cams]).astype(np.float32)),
        )
        prediction = predictor.predict(views)
        labels[token] = prediction.labels
        pred = occ3d_of_class[prediction.labels.numpy()]
        with np.load(Path(data.occ_root) / record.scene / token / "labels.npz") as gt:
            mask = gt["mask_camera"].astype(bool)
            np.add.at(confusion, (gt["semantics"][mask].astype(np.int64), pred[mask]), 1)
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = {}
    for c in range(17):
        iou[c] = tp[c] / union[c] if union[c] > 0 else None
    def mean(classes: list[int]) -> float:
        return float(np.mean([iou[c] for c in classes if iou[c] is not None]))
    occupied_pred = confusion[:, :17].sum(0).sum()
    occupied_gt = confusion[:17, :].sum()
    occupied_both = confusion[:17, :17].sum()
    return {
        "iou": iou,
        "miou_17": mean(list(range(17))),
        "miou_15": mean([c for c in range(17) if c not in (0, 12)]),
        "geometry_iou": occupied_both / (occupied_pred + occupied_gt - occupied_both),
        "voxels": int(confusion.sum()),
        "labels": labels,
    }


def test_eval_metrics_equal_independent_computation(world: dict, independent: dict) -> None:
    assert world["code"] == 0
    summary = json.loads(world["json"].read_text())
    assert summary["samples"] == 2 and summary["split"] == "val" and summary["mask"] == "camera"
    metrics = summary["metrics"]
    expected = independent
    names = list(metrics["per_class_iou"])
    assert len(names) == 17
    for c, name in enumerate(names):
        if expected["iou"][c] is None:
            assert metrics["per_class_iou"][name] is None, name
        else:
            assert metrics["per_class_iou"][name] == pytest.approx(expected["iou"][c], abs=1e-9), name
    assert metrics["miou_17"] == pytest.approx(expected["miou_17"], abs=1e-9)
    assert metrics["miou_15"] == pytest.approx(expected["miou_15"], abs=1e-9)
    assert metrics["geometry_iou"] == pytest.approx(expected["geometry_iou"], abs=1e-9)
    assert metrics["num_voxels"] == expected["voxels"]
    assert set(summary["timings_ms"]) >= {"preprocess", "model", "voxelize", "semantics", "total"}


def test_eval_dumps_hold_the_predictions(world: dict, independent: dict) -> None:
    summary = json.loads(world["json"].read_text())
    dumps = sorted(world["dumps"].glob("*.npz"))
    assert sorted(p.stem for p in dumps) == sorted(summary["tokens"])
    prediction, meta = load_prediction(world["dumps"] / f"{summary['tokens'][0]}.npz")
    assert meta["token"] == summary["tokens"][0]
    assert meta["config"].data.dataroot == str(world["summary"].dataroot)
    assert prediction.labels.dtype == torch.uint8
    assert torch.equal(prediction.labels, independent["labels"][meta["token"]])
    assert prediction.class_names[prediction.free_label] == "sky"
    assert prediction.gaussians.means.shape[0] == 1
    assert prediction.class_probs.shape == (prediction.gaussians.means.shape[1], len(prediction.class_names))


def test_eval_errors_are_reported(world: dict, capsys: pytest.CaptureFixture) -> None:
    data = str(world["summary"].dataroot)
    assert eval_cli.main([str(world["checkpoint"]), "--data", data, "--split", "nope", "--no-progress"]) == 2
    assert "unknown split 'nope'" in capsys.readouterr().err
    assert eval_cli.main([str(world["checkpoint"]), "--data", data, "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err
    assert eval_cli.main([str(world["root"] / "missing.pth"), "--data", data]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_eval_with_cached_features(world: dict, tmp_path: Path) -> None:
    """--features cache feeds the prepared feature maps (the same provider's float16 output)."""
    out = tmp_path / "cached.json"
    code = eval_cli.main([str(world["checkpoint"]), "--data", str(world["summary"].dataroot), "--limit", "1",
                          "--features", "cache", "--json", str(out), "--no-progress"])
    assert code == 0
    summary = json.loads(out.read_text())
    assert summary["samples"] == 1 and summary["timings_ms"]["features"] == 0.0
    assert summary["metrics"]["num_voxels"] > 0
