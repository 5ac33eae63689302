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
    assert _benchmark_module().main(["--seconds", "1", "--data", data, "--out", str(out), *overrides]) == 0
    printed = capsys.readouterr().out
    found = re.search(r"IoU ([\d.]+), mIoU17 ([\d.]+), mIoU15 ([\d.]+)", printed)
    assert found, printed
    checkpoint = out / "both" / "checkpoints" / "latest.pt"
    assert f"checkpoint: {checkpoint}" in printed

    report = tmp_path / "eval.json"
    assert eval_cli.main([str(checkpoint), "--data", data, "--json", str(report), "--no-progress"]) == 0
    metrics = json.loads(report.read_text())["metrics"]
    assert f"{100 * metrics['geometry_iou']:.2f}" == found.group(1)
    assert f"{100 * metrics['miou_17']:.2f}" == found.group(2)
    assert f"{100 * metrics['miou_15']:.2f}" == found.group(3)
