"""Stand-in for `launch_ros.actions`: Node and LifecycleNode with the Jazzy keyword arguments."""

from __future__ import annotations


class Node:
    def __init__(
        self,
        *,
        executable,
        package=None,
        name=None,
        namespace=None,
        exec_name=None,
        parameters=None,
        remappings=None,
        ros_arguments=None,
        arguments=None,
        output="log",
        **kwargs,
    ) -> None:
        known_execute_process = {"emulate_tty", "respawn", "respawn_delay", "additional_env", "cwd", "env", "prefix",
                                 "sigterm_timeout", "sigkill_timeout", "condition", "on_exit"}
        unknown = sorted(set(kwargs) - known_execute_process)
        if unknown:
            raise TypeError(f"Node got unexpected keyword arguments {unknown}")
        self.executable = executable
        self.package = package
        self.name = name
        self.namespace = namespace
        self.parameters = list(parameters or [])
        self.remappings = list(remappings or [])
        self.arguments = list(arguments or [])
        self.ros_arguments = list(ros_arguments or [])
        self.output = output


class LifecycleNode(Node):
    def __init__(self, *, name, namespace, **kwargs) -> None:
        super().__init__(name=name, namespace=namespace, **kwargs)
