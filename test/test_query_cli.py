"""gausstr-query on a synthetic keyframe: a picture per prompt and the clusters' JSON (untrained tiny model:
this checks the files, not the answers; test_query_node checks answers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_world import synthetic_world, tiny_config, untrained_checkpoint

from gausstr_core.cli import query as query_cli
from gausstr_core.cli.run_config import run_config


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder, untrained tiny checkpoint) of a one-keyframe synthetic world."""
    root = tmp_path_factory.mktemp("query_cli")
    summary = synthetic_world(root, samples_per_scene=1)
    config = run_config(tiny_config(), str(summary.config_path), None, [])
    return root / "data", untrained_checkpoint(root / "tiny.pth", config)


def test_query_cli_writes_pictures_and_json(world, tmp_path, capsys) -> None:
    data, checkpoint = world
    out = tmp_path / "out"
    assert query_cli.main([str(checkpoint), "--data", str(data), "car", "fire hydrant", "--out",
                           str(out), "--threshold", "0.3"]) == 0
    pictures = sorted(out.glob("*_query*.png"))
    assert [p.name.split("_query")[1] for p in pictures] == ["0_car.png", "1_fire_hydrant.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pictures)
    (document,) = (json.loads(p.read_text()) for p in out.glob("*_query.json"))
    assert [p["prompt"] for p in document["prompts"]] == ["car", "fire hydrant"]
    for entry in document["prompts"]:
        assert entry["threshold"] == 0.3 and 0 <= entry["max_relevance"] <= 1
        assert all(len(c["centroid"]) == 3 and c["voxel_count"] > 0 for c in entry["clusters"])
    assert "'car':" in capsys.readouterr().out


@pytest.mark.parametrize(("arguments", "message"), [
    (["car", "--threshold", "1.5"], "gausstr-query: error: query threshold must be in (0, 1)"),
    (["car", " "], "gausstr-query: error: prompt ' ': the prompt is empty"),
    (["car", "--max-clusters", "-1"], "gausstr-query: error: max_clusters must be >= 0"),
])
def test_query_cli_bad_arguments_are_one_line_errors(world, capsys, arguments, message) -> None:
    data, checkpoint = world
    assert query_cli.main([str(checkpoint), "--data", str(data), *arguments]) == 2
    assert capsys.readouterr().err.strip().startswith(message)
