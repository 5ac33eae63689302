"""Input health of the occupancy node: rates, stale cameras, counted problems, latency -> /diagnostics.

Times are monotonic wall seconds (`clock`), independent of ROS / simulated time. A problem is a
(kind, source) pair such as ("corrupt image", "CAM_FRONT") with a count and its last message;
`problem()` says when to log it: repeats of one message (numbers aside) at most once per
`warn_period_s` per pair (throttled warnings), a different message at once.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")


@dataclass
class _Problem:
    count: int = 0
    last_message: str = ""
    last_time: float = -float("inf")
    last_logged: float = -float("inf")
    last_logged_pattern: str = ""  # the last logged message with its numbers masked


class InputHealth:
    """Per-camera arrival statistics, problems and output latency of one node."""

    def __init__(
        self,
        cameras: Sequence[str],
        stale_after_s: float = 1.0,
        window_s: float = 5.0,
        warn_period_s: float = 5.0,
        recent_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cameras = list(cameras)
        self._stale_after = stale_after_s
        self._window = window_s
        self._warn_period = warn_period_s
        self._recent = recent_s
        self._clock = clock
        self._arrivals: dict[str, deque[float]] = {c: deque() for c in self.cameras}
        self._ever: set[str] = set()
        self._problems: dict[tuple[str, str], _Problem] = {}
        self._latencies: deque[tuple[float, float]] = deque(maxlen=50)  # (pipeline, processing) ms
        self.outputs = 0

    def received(self, camera: str) -> None:
        """An image of `camera` arrived now."""
        now = self._clock()
        arrivals = self._arrivals[camera]
        arrivals.append(now)
        self._ever.add(camera)
        while arrivals and arrivals[0] < now - self._window:
            arrivals.popleft()

    def rate_hz(self, camera: str) -> float:
        now = self._clock()
        recent = [t for t in self._arrivals[camera] if t >= now - self._window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def ever_received(self, camera: str) -> bool:
        """Whether any image of `camera` arrived since this InputHealth was made."""
        return camera in self._ever

    def stale_cameras(self) -> list[str]:
        """Cameras without an image for more than stale_after_s (or never)."""
        now = self._clock()
        return [c for c, a in self._arrivals.items() if not a or now - a[-1] > self._stale_after]

    def problem(self, kind: str, source: str, message: str, loggable: bool = True) -> bool:
        """Count a problem; True when it should be logged now: a loggable message that differs from the
        last one logged for (kind, source) in more than its numbers, or any after warn_period_s."""
        now = self._clock()
        entry = self._problems.setdefault((kind, source), _Problem())
        entry.count += 1
        entry.last_message, entry.last_time = message, now
        pattern = _NUMBERS.sub("#", message)
        if loggable and (pattern != entry.last_logged_pattern or now - entry.last_logged >= self._warn_period):
            entry.last_logged, entry.last_logged_pattern = now, pattern
            return True
        return False

    def problem_counts(self) -> dict[tuple[str, str], int]:
        return {key: p.count for key, p in self._problems.items()}

    def recent_problems(self) -> dict[tuple[str, str], str]:
        """(kind, source) -> last message, for problems seen within recent_s."""
        now = self._clock()
        return {key: p.last_message for key, p in self._problems.items() if now - p.last_time <= self._recent}

    def output(self, pipeline_ms: float, processing_ms: float) -> None:
        self.outputs += 1
        self._latencies.append((pipeline_ms, processing_ms))

    def diagnostics(self, node_name: str, stamp: Time, pipeline: Mapping[str, object],
                    pipeline_problem: str = "") -> DiagnosticArray:
        """Three statuses: inputs (rates, staleness), input problems, pipeline (`pipeline` key-values,
        latency). pipeline_problem: a non-empty reason makes the pipeline status WARN."""
        stale = self.stale_cameras()
        inputs = DiagnosticStatus(name=f"{node_name}: inputs", hardware_id="cameras")
        inputs.level = DiagnosticStatus.WARN if stale else DiagnosticStatus.OK
        inputs.message = f"stale cameras: {', '.join(stale)}" if stale else f"all {len(self.cameras)} cameras fresh"
        now = self._clock()
        for camera, arrivals in self._arrivals.items():
            age = f"{now - arrivals[-1]:.2f}" if arrivals else "never"
            inputs.values += [KeyValue(key=f"{camera} image rate Hz", value=f"{self.rate_hz(camera):.2f}"),
                              KeyValue(key=f"{camera} last image age s", value=age)]

        recent = self.recent_problems()
        problems = DiagnosticStatus(name=f"{node_name}: input problems", hardware_id="inputs")
        problems.level = DiagnosticStatus.WARN if recent else DiagnosticStatus.OK
        problems.message = "; ".join(f"{kind} ({source}): {msg}" for (kind, source), msg in recent.items()) or "none"
        problems.values = [KeyValue(key=f"{kind} {source}", value=str(count))
                           for (kind, source), count in self.problem_counts().items()]

        status = DiagnosticStatus(name=f"{node_name}: pipeline", hardware_id="inference")
        status.level = DiagnosticStatus.WARN if pipeline_problem else DiagnosticStatus.OK
        status.message = pipeline_problem or "running"
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in pipeline.items()]
        status.values.append(KeyValue(key="outputs", value=str(self.outputs)))
        if self._latencies:
            pipe = [p for p, _ in self._latencies]
            proc = [q for _, q in self._latencies]
            status.values += [
                KeyValue(key="pipeline latency ms (mean)", value=f"{sum(pipe) / len(pipe):.1f}"),
                KeyValue(key="pipeline latency ms (max)", value=f"{max(pipe):.1f}"),
                KeyValue(key="processing time ms (mean)", value=f"{sum(proc) / len(proc):.1f}"),
            ]
        return DiagnosticArray(header=Header(stamp=stamp), status=[inputs, problems, status])

