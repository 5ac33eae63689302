"""The packages pip-installed into a temporary prefix find their resources without the source tree.

The install (`pip install --prefix`, from a copy of the sources) runs in child processes started
with `python -S` in an empty working directory: PYTHONPATH holds the install's site-packages and
then this environment's (torch, rclpy and the generated gausstr_ros interfaces, which CMake builds
there), and no .pth file runs, so the source tree is not on sys.path. AMENT_PREFIX_PATH lists the
install before this environment, as a sourced colcon overlay would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from node_rig import (
    CAMERAS,
    HEIGHT,
    WIDTH,
    K,
    Rig,
    camera_to_ego,
    palette_image,
    tiny_checkpoint,
    wait_log,
    wait_output,
)

from gausstr_core.predict import OccupancyPredictor, Views
from gausstr_core.resources import packaged_vocabularies, resolve_resource, vocabulary_file
from gausstr_ros.share import share_file

REPO = Path(__file__).resolve().parents[1]
# What setup.py reads: the packages and the files it ships as data.
SOURCES = ("setup.py", "pyproject.toml", "package.xml", "gausstr_core", "gausstr_ros", "config", "launch", "scripts",
           "resource")
ENV_PURELIB = Path(sysconfig.get_paths()["purelib"])  # this environment's site-packages
SHARE_FILES = ("config/occupancy.yaml", "config/tiny.yaml", "launch/occupancy.launch.py")

# Run by the installed packages: predict on the views in argv[2] with the checkpoint argv[1] and
# report where every module and resource came from.
PREDICT = """
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
import gausstr_core
from gausstr_core.predict import OccupancyPredictor, Views
from gausstr_core.resources import vocabulary_file
from gausstr_ros.share import share_file
import gausstr_ros.msg
views = np.load(sys.argv[2])
prediction = OccupancyPredictor.from_checkpoint(sys.argv[1]).predict(Views(
    images=torch.from_numpy(views["images"]), intrinsics=torch.from_numpy(views["intrinsics"]),
    cam2ego=torch.from_numpy(views["cam2ego"]), depths=torch.from_numpy(views["depths"])))
np.save(sys.argv[3], prediction.labels.numpy())
print(json.dumps({
    "modules": {n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.startswith("gausstr")},
    "vocabulary": str(vocabulary_file("vocabulary_occ3d.yaml")), "class_names": prediction.class_names,
    "share": {name: str(share_file(name)) for name in sys.argv[4:]},
}))
"""


@dataclass
class Install:
    prefix: Path
    purelib: Path  # the prefix's site-packages
    checkpoint: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.purelib), str(ENV_PURELIB)]),
                "AMENT_PREFIX_PATH": os.pathsep.join([str(self.prefix), sys.prefix]), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    prefix = root / "prefix"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--ignore-installed", "--no-compile", "--prefix", str(prefix), str(source)],
                   cwd=root, check=True, capture_output=True, text=True)
    purelib = Path(sysconfig.get_paths(scheme="posix_prefix", vars={"base": str(prefix), "platbase": str(prefix)})[
        "purelib"])
    assert (purelib / "gausstr_core" / "__init__.py").is_file(), sorted(str(p) for p in prefix.rglob("*"))[:40]
    return Install(prefix, purelib, tiny_checkpoint(root / "tiny.pth"))


def rig_views() -> Views:
    """The node rig's two 80x48 palette images, 12 m depth everywhere."""
    return Views(
        images=torch.from_numpy(np.stack([palette_image(i) for i in range(len(CAMERAS))])).permute(0, 3, 1, 2),
        intrinsics=torch.tensor(np.stack([K] * len(CAMERAS)), dtype=torch.float32),
        cam2ego=torch.tensor(np.stack([camera_to_ego(yaw) for yaw in (0.0, np.pi)]), dtype=torch.float32),
        depths=torch.full((len(CAMERAS), HEIGHT, WIDTH), 12.0),
    )


def packaged_class_names(path: Path) -> list[str]:
    return [c["name"] for c in yaml.safe_load(path.read_text())["classes"]]


@pytest.mark.slow
def test_the_installed_core_predicts_with_its_packaged_vocabulary(install: Install, tmp_path: Path) -> None:
    views = rig_views()
    np.savez(tmp_path / "views.npz", **{f: getattr(views, f).contiguous().numpy()
                                         for f in ("images", "intrinsics", "cam2ego", "depths")})
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-S", "-c", PREDICT, str(install.checkpoint), str(tmp_path / "views.npz"),
         str(tmp_path / "labels.npy"), *SHARE_FILES], cwd=elsewhere, env=install.env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    modules = report["modules"]
    assert Path(modules["gausstr_core"]).is_relative_to(install.purelib)
    assert not Path(modules["gausstr_core"]).resolve().is_relative_to(REPO)
    for name, file in modules.items():  # the sources from the install, the generated interfaces from the env
        if file is not None:
            home = ENV_PURELIB if name.startswith(("gausstr_ros.msg", "gausstr_ros.srv")) else install.purelib
            assert Path(file).is_relative_to(home), (name, file)
    vocabulary = Path(report["vocabulary"])
    assert vocabulary.is_relative_to(install.purelib) and report["class_names"] == packaged_class_names(vocabulary)
    for name in SHARE_FILES:
        assert Path(report["share"][name]) == install.prefix / "share" / "gausstr_ros" / name
    # The installed code predicts what the source tree does.
    torch.set_num_threads(1)
    here = OccupancyPredictor.from_checkpoint(install.checkpoint).predict(views)
    assert np.array_equal(np.load(tmp_path / "labels.npy"), here.labels.numpy())


@pytest.mark.slow
@pytest.mark.ros
def test_the_installed_node_runs_on_its_installed_parameters_file(
    install: Install, tmp_path: Path, ros_domain_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rclpy

    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import NodeProcess

    for key, value in install.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    params = install.prefix / "share" / "gausstr_ros" / "config" / "occupancy.yaml"
    executable = [sys.executable, "-S", str(install.prefix / "lib" / "gausstr_ros" / "occupancy_node"),
                  "--ros-args", "--params-file", str(params), "--"]  # then NodeProcess's own --ros-args
    rclpy.init()
    node = rclpy.create_node("install_tester")
    try:
        recorder = OutputRecorder(node)
        with NodeProcess(install.checkpoint, CAMERAS, tmp_path / "node.log", executable=executable,
                         depth_source="topic", sync_slop_s=0.05) as proc:
            wait_log(proc, f"active: waiting for {len(CAMERAS)} camera streams", node, recorder, timeout_s=120)
            rig = Rig(node)
            rig.publish_tf()
            wait_output(node, recorder, rig, 0, "camera sets from the installed node's rig", proc=proc)
        occupancy = recorder.messages["occupancy"][-1].msg
        packaged = install.purelib / "gausstr_core" / "vocabularies" / "vocabulary_occ3d.yaml"
        assert list(occupancy.class_names) == packaged_class_names(packaged)
    finally:
        node.destroy_node()
        rclpy.shutdown()


def test_a_relative_vocabulary_name_is_found_as_given_else_packaged(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = vocabulary_file("vocabulary_occ3d.yaml")
    assert "vocabulary_occ3d.yaml" in packaged_vocabularies()
    monkeypatch.chdir(tmp_path)
    # configs and checkpoints written before the move name it config/vocabulary_occ3d.yaml
    assert resolve_resource("config/vocabulary_occ3d.yaml", "vocabulary file") == packaged
    (tmp_path / "vocabulary_occ3d.yaml").write_text("name: mine\n")
    assert resolve_resource("vocabulary_occ3d.yaml", "vocabulary file") == Path("vocabulary_occ3d.yaml")
    with pytest.raises(FileNotFoundError, match=r"vocabulary file not found: tried mine\.yaml; no packaged .*"
                                                r"vocabulary_occ3d\.yaml"):
        resolve_resource("mine.yaml", "vocabulary file")
    with pytest.raises(FileNotFoundError, match=r"vocabulary file not found: tried /absent/v\.yaml$"):
        resolve_resource("/absent/v.yaml", "vocabulary file")


def test_a_missing_share_file_names_the_file_and_the_folders_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    with pytest.raises(FileNotFoundError) as error:
        share_file("config/absent.yaml")
    message = str(error.value)
    assert "'config/absent.yaml'" in message and "AMENT_PREFIX_PATH" in message
    assert str(Path(sys.prefix) / "share" / "gausstr_ros" / "config" / "absent.yaml") in message
