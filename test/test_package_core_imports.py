"""gausstr_core imports without any ROS package: an import hook rejects rclpy, rosidl* and *_msgs."""

import subprocess
import sys
from pathlib import Path

CHECK = r"""
import importlib, importlib.abc, pkgutil, sys

class RejectRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top == "rclpy" or top.startswith("rosidl") or top.endswith("_msgs"):
            raise ImportError(f"gausstr_core must not import ROS module {name}")
        return None

sys.meta_path.insert(0, RejectRos())
import gausstr_core
names = [m.name for m in pkgutil.walk_packages(gausstr_core.__path__, "gausstr_core.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_core_module_imports_without_ros(repo_root: Path) -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 5  # config, grid, gaussians, geometry, data, ...


def test_hook_really_rejects_ros(repo_root: Path) -> None:
    probe = CHECK.split("import gausstr_core")[0] + "import std_msgs.msg\n"
    result = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode != 0
    assert "must not import ROS module std_msgs" in result.stderr
