"""benchmarks/learn_synthetic.py: `gausstr-eval` on the checkpoint it saved prints the mIoU it printed."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from gausstr_core.cli import eval as eval_cli

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "learn_synthetic.py"


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("learn_synthetic", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gausstr_eval_reproduces_the_benchmark_miou(
    tiny_train_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny_train_args[tiny_train_args.index("--data") + 1]
    out = tmp_path / "runs"
    overrides = ["model.scale_multiplier=0.45", "data.cameras=[CAM_FRONT,CAM_BACK]", "train.epochs=1"]
    oracle = tmp_path / "oracle.json"  # a made-up ceiling: both must print the same fractions of it
    ceiling = {"iou": 0.5, "miou17": 0.25, "miou15": 0.3, "density_iou": 0.5}
    oracle.write_text(json.dumps({"camera_mask": "raycast", "results": {"128": ceiling}}))
    argv = ["--seconds", "1", "--data", data, "--out", str(out), "--oracle", str(oracle), *overrides]
    assert _benchmark_module().main(argv) == 0
    printed = capsys.readouterr().out
    found = re.search(r"IoU ([\d.]+), mIoU15 ([\d.]+) \(headline\), mIoU17 ([\d.]+), density IoU ([\d.]+)", printed)
    assert found, printed
    fractions = printed[printed.index("against the oracle"):].splitlines()[1:5]
    assert [line.split()[0] for line in fractions] == ["iou", "miou17", "miou15", "density_iou"]
    checkpoint = out / "both" / "checkpoints" / "latest.pt"
    assert f"checkpoint: {checkpoint}" in printed

    report = tmp_path / "eval.json"
    argv = [str(checkpoint), "--data", data, "--json", str(report), "--no-progress", "--oracle", str(oracle)]
    assert eval_cli.main(argv) == 0
    evaluated = capsys.readouterr().out
    summary = json.loads(report.read_text())
    metrics = summary["metrics"]
    assert f"{100 * metrics['geometry_iou']:.2f}" == found.group(1)
    assert f"{100 * metrics['miou_15']:.2f}" == found.group(2)
    assert f"{100 * metrics['miou_17']:.2f}" == found.group(3)
    assert f"{100 * summary['density_iou']:.2f}" == found.group(4)
    assert evaluated[evaluated.index("against the oracle"):].splitlines()[1:5] == fractions
