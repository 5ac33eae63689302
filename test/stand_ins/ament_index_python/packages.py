"""Stand-in for `ament_index_python.packages`: share directories from STAND_IN_SHARE_<package>."""

from __future__ import annotations

import os


class PackageNotFoundError(KeyError):
    pass


def get_package_share_directory(package_name: str, print_warning: bool = True) -> str:
    key = f"STAND_IN_SHARE_{package_name}"
    if key not in os.environ:
        raise PackageNotFoundError(f"package '{package_name}' not found (stand-in: set {key})")
    return os.environ[key]
