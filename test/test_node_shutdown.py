"""SIGINT and SIGTERM end occupancy_node (own process) within 2 s with exit code 0, no traceback and no
segfault, in every lifecycle state; signals are sent as launch sends them (SIGINT, SIGTERM 5 s later).
Before: an active node outlived launch's 5 s, a node whose configure failed segfaulted (-11), and
lifecycle publishers did not exist until activation."""

from __future__ import annotations

import signal
import time

import pytest
from node_rig import (
    CAMERAS,
    PERIOD_S,
    Rig,
    checkpoint_fixture,  # noqa: F401 -- the pytest fixtures checkpoint, ros
    spin_for,
    transition,
    wait_log,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]
STATES = ("configure failed", "inactive", "active", "finalized")


def launch_style_stop(process, first: int) -> tuple[float, int]:
    """Send `first`; as launch does, SIGTERM after 5 s if still running, kill after 10 s. (seconds to exit, code)."""
    import subprocess

    start = time.monotonic()
    process.send_signal(first)
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            process.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            process.send_signal(sig)
    process.wait()
    return time.monotonic() - start, process.returncode


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("state", STATES)
def test_signals_end_the_node_cleanly_in_every_state(state, first, checkpoint, tmp_path, ros_domain_id):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.msg import Transition

    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import NodeProcess

    rclpy.init()
    node = rclpy.create_node("shutdown_tester")
    try:
        recorder = OutputRecorder(node)
        ckpt = tmp_path / "missing.pth" if state == "configure failed" else checkpoint
        with NodeProcess(ckpt, CAMERAS, tmp_path / "node.log", depth_source="topic",
                         autostart=state in ("configure failed", "active", "finalized")) as proc:
            if state == "configure failed":
                wait_log(proc, "configure failed", node, recorder, timeout_s=120)
            elif state == "inactive":
                assert transition(node, Transition.TRANSITION_CONFIGURE, timeout_s=120)
                # lifecycle publishers exist once configured, and are silent while inactive
                assert node.count_publishers("/gausstr_occupancy/occupancy") == 1
                got = []
                node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
                spin_for(node, 2.0)
                assert got == []
            else:
                wait_log(proc, "active: waiting for 2 camera streams", node, recorder, timeout_s=120)
                if state == "active":
                    rig = Rig(node)
                    rig.publish_tf()
                    for _ in range(4):
                        rig.publish_set()
                        spin_for(node, PERIOD_S)
                else:
                    assert transition(node, Transition.TRANSITION_ACTIVE_SHUTDOWN)
            seconds, code = launch_style_stop(proc.process, first)
            log = proc.log()
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert code == 0, f"exit code {code}\n{log}"
    assert seconds < 2.0, f"took {seconds:.1f} s\n{log}"
    assert "Traceback" not in log and "failed" not in log.replace("configure failed", ""), log
