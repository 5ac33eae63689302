"""Every gausstr-* console script ends a user error (bad path, bad option, wrong rig, missing cache,
damaged file) with one line on stderr and exit code 2; programming errors keep their traceback."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_world import synthetic_world, tiny_config, untrained_checkpoint

from gausstr_core.cli import convert, eval, prepare, synth, train, viz
from gausstr_core.cli.entry import console_script
from gausstr_ros.tools import bag_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_errors")
    data = synthetic_world(root, samples_per_scene=1).dataroot
    checkpoint = untrained_checkpoint(root / "tiny.pth", tiny_config())
    damaged = root / "damaged.pth"
    damaged.write_bytes(checkpoint.read_bytes()[:-200])
    empty = root / "empty.pth"
    empty.write_bytes(b"")
    no_cache = root / "no_cache"
    shutil.copytree(data, no_cache, ignore=shutil.ignore_patterns("cache"))
    return {"root": root, "data": data, "ckpt": checkpoint, "damaged": damaged, "empty": empty,
            "no_cache": no_cache, "missing": root / "absent", "out": root / "out"}


def _run(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


CASES: dict[str, tuple[Callable, str, list[tuple[str, list[str], str]]]] = {
    "synth": (synth.main, "gausstr-synth", [
        ("bad option value", ["--out", "{out}", "--image-size", "64by36"], "size must look like"),
        ("existing tree", ["--out", "{data}", "--version", "v1.0-mini"], "already exists"),
    ]),
    "prepare": (prepare.main, "gausstr-prepare", [
        ("unknown command", ["frobnicate"], "invalid choice"),
        ("missing vocabulary", ["text", "--vocabulary", "{missing}", "--provider", "synthetic", "--out", "{out}"],
         "not found"),
        ("missing dataroot", ["features", "--dataroot", "{missing}", "--version", "v1.0-mini", "--provider",
                              "synthetic", "--cache-root", "{out}"], "not found"),
    ]),
    "convert": (convert.main, "gausstr-convert", [
        ("missing file", ["{missing}", "{out}/a.pt", "--config", "config/gausstr_featup.yaml"], "not found"),
        ("empty file", ["{empty}", "{out}/a.pt", "--config", "config/gausstr_featup.yaml"], "is empty"),
        ("truncated file", ["{damaged}", "{out}/a.pt", "--config", "config/gausstr_featup.yaml"], "damaged"),
        ("missing config", ["{ckpt}", "{out}/a.pt", "--config", "{missing}"], "not found"),
    ]),
    "train": (train.main, "gausstr-train", [
        ("missing config", ["{missing}"], "not found"),
        ("missing data folder", ["config/tiny.yaml", "--data", "{missing}"], "not found"),
        ("unknown config key", ["config/tiny.yaml", "--data", "{data}", "train.nope=1"], "nope"),
        ("missing cache", ["config/tiny.yaml", "--data", "{no_cache}", "--device", "cpu", "--work-dir", "{out}/t",
                           "--no-progress", "data.input_size=[112,200]"], "not found"),
        ("bad option value", ["config/tiny.yaml", "--max-steps", "many"], "invalid int value"),
    ]),
    "eval": (eval.main, "gausstr-eval", [
        ("missing checkpoint", ["{missing}", "--data", "{data}"], "checkpoint not found"),
        ("damaged checkpoint", ["{damaged}", "--data", "{data}"], "damaged"),
        ("wrong rig", ["{ckpt}", "--data", "{data}", "--no-progress", "data.cameras=[CAM_NOPE]"], "no CAM_NOPE image"),
        ("unknown split", ["{ckpt}", "--data", "{data}", "--split", "nope", "--no-progress"], "unknown split"),
        ("missing cache", ["{ckpt}", "--data", "{no_cache}", "--no-progress", "data.input_size=[112,200]"],
         "not found"),
        ("missing data folder", ["{ckpt}", "--data", "{missing}"], "not found"),
    ]),
    "viz": (viz.main, "gausstr-viz", [
        ("missing dump", ["--dump", "{missing}", "--out", "{out}"], "not found"),
        ("index outside split", ["--checkpoint", "{ckpt}", "--data", "{data}", "--index", "99", "--out", "{out}"],
         "outside split"),
        ("missing option", ["--checkpoint", "{ckpt}"], "required"),
    ]),
    "bag": (bag_cli.main, "gausstr-bag", [
        ("missing dataroot", ["{out}/b", "--dataroot", "{missing}"], "not found"),
        ("wrong rig", ["{out}/b", "--dataroot", "{data}", "--cameras", "CAM_NOPE", "--quiet"], "no CAM_NOPE image"),
        ("unknown scene", ["{out}/b", "--dataroot", "{data}", "--scene", "nope"], "unknown scene"),
        ("bad limit", ["{out}/b", "--limit", "0"], "--limit must be >= 1"),
        ("missing version folder", ["{out}/b", "--dataroot", "{data}", "--version", "v1.0-nope"],
         "version folder not found"),
        ("not a bag folder", ["{root}", "--dataroot", "{data}", "--force", "--quiet"], "not a ROS 2 bag folder"),
    ]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_user_errors_are_one_line_with_exit_code_2(
    script: str, world: dict[str, Path], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    main, prog, cases = CASES[script]
    for label, argv, fragment in cases:
        code, err = _run(main, [a.format(**{k: str(v) for k, v in world.items()}) for a in argv], capsys)
        lines = [line for line in err.splitlines() if "error" in line or "Traceback" in line]
        assert code == 2, f"{prog} {label}: exit {code}, stderr {err!r}"
        assert len(lines) == 1 and lines[0].startswith(f"{prog}") and ": error: " in lines[0], f"{label}: {err!r}"
        assert fragment in lines[0], f"{prog} {label}: {lines[0]!r}"


@pytest.mark.ros
def test_gausstr_play_refuses_a_missing_bag_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gausstr_ros.tools import play

    code, err = _run(play.main, [str(tmp_path / "absent")], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("gausstr-play: error: ")


def test_programming_errors_keep_their_traceback(capsys: pytest.CaptureFixture) -> None:
    @console_script("gausstr-x")
    def buggy(argv: list[str] | None = None) -> int:
        return {}["missing"]  # a KeyError: a bug, not bad input

    with pytest.raises(KeyError):
        buggy([])
    assert capsys.readouterr().err == ""
