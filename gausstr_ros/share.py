"""The package's installed share folder (share/gausstr_ros: config/, launch/, package.xml), as ROS finds it.

Installed by colcon (CMakeLists.txt) or pip (setup.py's data_files); `make setup` links the source
tree's config/ and launch/ into the venv's share/gausstr_ros. Found through the ament index
(AMENT_PREFIX_PATH, set by a sourced ROS workspace), else under the running Python's prefix (a
venv or pip prefix without a sourced workspace). Imports no rclpy.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "gausstr_ros"


def _ament_share() -> tuple[Path | None, str]:
    """(share folder from the ament index or None, why not)."""
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None, "ament_index_python is not installed"
    try:
        return Path(get_package_share_directory(PACKAGE)), ""
    except (LookupError, OSError) as error:  # PackageNotFoundError is a KeyError; no AMENT_PREFIX_PATH: OSError
        return None, str(error).strip("'\"")


def share_candidates() -> list[tuple[Path, str]]:
    """The folders tried for share/gausstr_ros, in order, each with how it was found."""
    found, why = _ament_share()
    candidates = [] if found is None else [(found, "ament index")]
    prefix = Path(sys.prefix) / "share" / PACKAGE
    if found is None or prefix.resolve() != found.resolve():
        candidates.append((prefix, f"Python prefix{'' if found else f' (ament index: {why})'}"))
    return candidates


def share_file(relative: str) -> Path:
    """The installed file share/gausstr_ros/`relative` (e.g. 'config/occupancy.yaml').

    FileNotFoundError naming the file and every folder tried when no install has it.
    """
    tried = []
    for folder, how in share_candidates():
        path = folder / relative
        if path.is_file():
            return path
        tried.append(f"{path} ({how})")
    raise FileNotFoundError(
        f"{PACKAGE} share file {relative!r} not found; tried {'; '.join(tried)}. Install the package "
        "(colcon build, pip install, or make setup, which links config/ and launch/ into the venv)"
    )
