"""Reliability of occupancy_node (own process, real rclpy): bad inputs are warned about (throttled),
reported in /diagnostics, and output resumes with good input; checkpoint failures fail configure with
a clear message; lifecycle services and run-time vocabulary changes work."""

from __future__ import annotations

import pytest
from node_rig import (  # noqa: F401 -- the pytest fixtures checkpoint, ros
    CAMERAS,
    PERIOD_S,
    Rig,
    checkpoint_fixture,
    ros_fixture,
    set_parameter,
    spin_for,
    start_node,
    state,
    transition,
    wait_log,
    wait_output,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_bad_inputs_are_reported_and_output_resumes(checkpoint, ros, tmp_path):
    from gausstr_ros.tools.output_recorder import OutputRecorder
    from gausstr_ros.tools.replay_session import input_topics, spin_until, wait_for_subscriptions

    node = ros
    recorder = OutputRecorder(node)
    rig = Rig(node)
    with start_node(checkpoint, tmp_path / "node.log") as proc:
        assert wait_for_subscriptions(node, input_topics(CAMERAS, depth=True), 120), proc.log()
        # A TF that never comes: sets wait (no output), a throttled warning after the grace period.
        for _ in range(14):
            rig.publish_set()
            spin_for(node, PERIOD_S)
        assert recorder.count("occupancy") == 0
        wait_log(proc, "tf (left): no transform base_link <- left yet", node, recorder)
        assert any("waiting for calibration" in m for m in recorder.diagnostic_messages())
        rig.publish_tf()
        wait_output(node, recorder, rig, 0, "the transforms came")

        cases = {  # what: (defects, log text, diagnostics problem key)
            "corrupt JPEG": ({"image": {"left": {"data": rig.jpegs[0][:40] + b"\x00" * 200}}}, "corrupt JPEG",
                             "bad image left"),
            "wrong image encoding": ({"image": {"right": {"data": b"GIF89a" + b"\x00" * 64}}},
                                     "neither JPEG nor PNG", "bad image right"),
            "wrong depth encoding": ({"depth": {"left": {"encoding": "rgb8"}}}, "depth Image encoding 'rgb8'",
                                     "bad depth left"),
            "zero-size image": ({"image": {"left": {"data": b""}}}, "is empty", "bad image left"),
            "NaN CameraInfo": ({"info": {"right": {"k": [float("nan")] * 9}}}, "K contains NaN", "camera_info right"),
        }
        for what, (defects, message, key) in cases.items():
            before, counted = recorder.count("occupancy"), int(recorder.diagnostic_values().get(key, 0))
            rig.publish_set(**defects)
            wait_log(proc, message, node, recorder)
            wait_output(node, recorder, rig, before, what)
            assert spin_until(node, lambda k=key, c=counted: int(recorder.diagnostic_values().get(k, 0)) > c, 5), what

        # Out-of-order stamps: images a little older than the last ones are dropped and counted; one camera's
        # image far in the past alone is dropped too (no reset: the other camera did not jump).
        before = recorder.count("occupancy")
        rig.publish_set(stamp_ns=rig.stamp_ns - int(PERIOD_S * 1e9))
        wait_log(proc, "is not newer than the previous one", node, recorder)
        rig.publish_set(cameras=["left"], stamp_ns=rig.stamp_ns - 500 * 10**9)
        wait_output(node, recorder, rig, before, "out-of-order stamps")
        wait_log(proc, "jumped back on this camera alone (the others did not): dropped", node, recorder)
        assert "time jumped back" not in proc.log()

        # A missing camera: no sets, the camera is reported stale; output resumes when it is back.
        before = recorder.count("occupancy")
        for _ in range(10):
            rig.publish_set(cameras=["left"])
            spin_for(node, PERIOD_S)
        wait_log(proc, "stale camera (right)", node, recorder)
        assert any("stale cameras: right" in m for m in recorder.diagnostic_messages())
        wait_output(node, recorder, rig, recorder.count("occupancy"), "the camera came back")

        # A 10x burst: stale sets are dropped (latest only), the node keeps up and stays responsive.
        before = recorder.count("occupancy")
        for _ in range(40):
            rig.publish_set()
            spin_for(node, PERIOD_S / 10)
        spin_for(node, 3.0)
        burst_outputs = recorder.count("occupancy") - before
        assert 1 <= burst_outputs < 40
        spin_for(node, 1.5)
        values = recorder.diagnostic_values()
        assert int(values["sets dropped (model busy)"]) > 0, values
        wait_output(node, recorder, rig, recorder.count("occupancy"), "the burst")

        assert proc.alive(), proc.log()
        log = proc.log()
        # throttled: the same problem is not logged once per message
        assert log.count("no transform base_link <- left yet") <= 3, log
        assert proc.stop() == 0, proc.log()



def test_checkpoint_failures_lifecycle_and_run_time_vocabulary(checkpoint, ros, tmp_path):
    from lifecycle_msgs.msg import Transition

    from gausstr_ros.tools.output_recorder import OutputRecorder, occupancy_labels

    node = ros
    missing, corrupt = tmp_path / "missing.pth", tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint" * 20)
    recorder = OutputRecorder(node)
    rig = Rig(node)
    with start_node(missing, tmp_path / "node.log") as proc:
        wait_log(proc, f"configure failed: cannot load checkpoint '{missing}': checkpoint not found", node, recorder)
        assert state(node) == "unconfigured"
        assert set_parameter(node, "checkpoint", str(corrupt)).successful
        assert not transition(node, Transition.TRANSITION_CONFIGURE)
        wait_log(proc, f"cannot load checkpoint '{corrupt}'", node, recorder)
        assert "corrupt or not a torch file" in proc.log()
        assert state(node) == "unconfigured" and proc.alive()

        assert set_parameter(node, "checkpoint", str(checkpoint)).successful
        assert transition(node, Transition.TRANSITION_CONFIGURE) and state(node) == "inactive"
        assert transition(node, Transition.TRANSITION_ACTIVATE) and state(node) == "active"
        rig.publish_tf()
        wait_output(node, recorder, rig, 0, "activation")
        assert len(recorder.messages["occupancy"][-1].msg.class_names) == 16

        rejected = set_parameter(node, "vocabulary_prompts", "car car; road")
        assert not rejected.successful and "vocabulary_prompts" in rejected.reason
        assert set_parameter(node, "vocabulary_prompts", "car: car, van; road: road; sky: sky").successful
        before = recorder.count("occupancy")
        wait_output(node, recorder, rig, before, "the vocabulary change")
        msg = recorder.messages["occupancy"][-1].msg
        assert list(msg.class_names) == ["car", "road", "sky"] and msg.free_label == 2
        assert occupancy_labels(msg).max() <= 2
        assert "vocabulary now 'inline'" in proc.log() and "configured:" in proc.log()
        assert proc.log().count("configured:") == 1  # no model reload

        assert transition(node, Transition.TRANSITION_DEACTIVATE) and state(node) == "inactive"
        count = recorder.count("occupancy")
        for _ in range(6):
            rig.publish_set()
            spin_for(node, PERIOD_S)
        assert recorder.count("occupancy") == count
        assert transition(node, Transition.TRANSITION_CLEANUP) and state(node) == "unconfigured"
        assert proc.stop() == 0, proc.log()
