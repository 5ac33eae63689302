"""Stand-in for `launch.actions`: records constructor arguments."""

from __future__ import annotations


class DeclareLaunchArgument:
    def __init__(self, name, *, default_value=None, description=None, choices=None, **kwargs) -> None:
        if kwargs:
            raise TypeError(f"DeclareLaunchArgument got unexpected keyword arguments {sorted(kwargs)}")
        if not isinstance(name, str):
            raise TypeError("DeclareLaunchArgument name must be a str")
        self.name = name
        self.default_value = default_value
        self.description = description
        self.choices = choices


class OpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None, **extra) -> None:
        if extra:
            raise TypeError(f"OpaqueFunction got unexpected keyword arguments {sorted(extra)}")
        if not callable(function):
            raise TypeError("OpaqueFunction function must be callable")
        self.function = function
        self.args = list(args or [])
        self.kwargs = dict(kwargs or {})

    def execute(self, context):
        return self.function(context, *self.args, **self.kwargs)
