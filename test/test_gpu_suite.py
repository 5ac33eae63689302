"""benchmarks/gpu.py --dry-run: every stage of the GPU suite at tiny sizes on the CPU, each in its own
process, with the JSON report written after every stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ros]


def test_dry_run_runs_every_stage(repo_root: Path, tmp_path: Path, ros_domain_id: int) -> None:
    sys.path.insert(0, str(repo_root))
    from benchmarks.gpu import STAGES

    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu.py", "--dry-run", "--out", str(out)], cwd=repo_root,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and list(report["stages"]) == list(STAGES)
    for name, result in report["stages"].items():
        assert result["status"] == "ok", (name, result)
    stages = report["stages"]
    assert stages["gpu_tests"]["rc"] in (0, 5) and stages["gpu_tests"]["files"]
    assert stages["decoder_heads"]["eager_ms"] > 0 and stages["decoder_heads"]["compile_ms"] > 0
    assert stages["voxelise"]["gaussians"] > 0 and stages["semantics"]["touched_voxels"] > 0
    assert stages["node_e2e"]["rate_hz"] > 0 and stages["node_e2e"]["outputs"] >= 2
    assert "decoder + heads < 15 ms" in proc.stdout and "end to end >= 20 Hz" in proc.stdout


def test_unknown_stage_is_refused(repo_root: Path) -> None:
    proc = subprocess.run([sys.executable, "benchmarks/gpu.py", "--dry-run", "--only", "warp_drive"], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown stages ['warp_drive']" in proc.stderr
