"""Stand-in for ROS 2 `launch` (see test/stand_ins/README.md)."""

from __future__ import annotations


class LaunchContext:
    """Holds launch configurations (argument values) like the real LaunchContext."""

    def __init__(self) -> None:
        self.launch_configurations: dict[str, str] = {}


class LaunchDescription:
    def __init__(self, initial_entities=None, *, deprecated_reason=None) -> None:
        self.entities = list(initial_entities or [])
