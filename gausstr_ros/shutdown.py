"""Clean ends on SIGINT and SIGTERM for the node and gausstr-play.

rclpy's own handlers shut the context down from inside the signal handler, while executors,
guard conditions and lifecycle transitions may still use it (an RCLError traceback, or a segfault
after "rcl_trigger_guard_condition() failed"). Instead, `init_ros(args)` starts rclpy without
its handlers and `StopSignals` turns both signals into an Event: the main loop spins in short
steps, sees the event, and tears down in order (worker, node, executor, context), exit code 0.
A second signal while stopping changes nothing (launch sends SIGINT, then SIGTERM after 5 s).
`exit_process(code)` then ends the process without the interpreter's module teardown, which takes
seconds with torch loaded on a busy machine (everything the node owns is already shut down).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

import rclpy
from rclpy.signals import SignalHandlerOptions

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def init_ros(args: list[str] | None = None) -> None:
    """rclpy.init without rclpy's signal handlers (StopSignals handles them)."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


class StopSignals:
    """While entered, SIGINT and SIGTERM set `event` instead of raising or killing; handlers restored on exit."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: list[str] = []
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        self.event.set()

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on a signal; True if one came."""
        return self.event.wait(seconds)


def exit_process(code: int) -> None:
    """Flush the standard streams and end the process with `code` now (no interpreter teardown)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to flush
            pass
    os._exit(code)
