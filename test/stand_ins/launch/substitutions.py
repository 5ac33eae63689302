"""Stand-in for `launch.substitutions`."""

from __future__ import annotations


class LaunchConfiguration:
    def __init__(self, variable_name, *, default=None) -> None:
        self.variable_name = variable_name
        self.default = default

    def perform(self, context) -> str:
        if self.variable_name in context.launch_configurations:
            return context.launch_configurations[self.variable_name]
        if self.default is not None:
            return self.default
        raise LookupError(f"launch configuration {self.variable_name!r} does not exist")
