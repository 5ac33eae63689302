"""Node building blocks without a ROS graph: parameters vs config/occupancy.yaml, validation, the
latest-only worker, throttled problem reporting."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus

from gausstr_ros.diagnostics import InputHealth
from gausstr_ros.inference_worker import LatestOnlyWorker
from gausstr_ros.node_outputs import OutputOptions, output_options
from gausstr_ros.node_params import (
    LIVE_PARAMETERS,
    OUTPUT_PARAMETERS,
    PARAMETERS,
    NodeSettings,
    check_parameter,
    parse_vocabulary_prompts,
)
from gausstr_ros.tools.params_yaml import render_params_yaml

REPO = Path(__file__).resolve().parents[1]


def test_declared_parameters_are_exactly_the_params_file():
    params = yaml.safe_load((REPO / "config" / "occupancy.yaml").read_text())["/**"]["ros__parameters"]
    assert set(PARAMETERS) == set(params)
    for name, value in params.items():
        assert PARAMETERS[name].default == value, name
        assert type(PARAMETERS[name].default) is type(value), name
        assert PARAMETERS[name].description, name


def test_params_file_is_generated_from_the_table():
    assert (REPO / "config" / "occupancy.yaml").read_text() == render_params_yaml(), (
        "config/occupancy.yaml is stale: python -m gausstr_ros.tools.params_yaml config/occupancy.yaml")


def test_params_yaml_writes_and_checks_the_file(tmp_path, capsys):
    from gausstr_ros.tools import params_yaml

    path = tmp_path / "occupancy.yaml"
    assert params_yaml.main([str(path), "--check"]) == 1  # missing
    assert params_yaml.main([str(path)]) == 0 and path.read_text() == render_params_yaml()
    assert params_yaml.main([str(path), "--check"]) == 0
    path.write_text(path.read_text().replace("max_markers: 500", "max_markers: 400"))
    assert params_yaml.main([str(path), "--check"]) == 1 and "not the one rendered" in capsys.readouterr().err


def test_descriptors_settings_and_output_options_derive_from_the_table():
    from rcl_interfaces.msg import ParameterType

    queue, slop = PARAMETERS["queue_size"].descriptor(), PARAMETERS["sync_slop_s"].descriptor()
    assert queue.type == ParameterType.PARAMETER_INTEGER and (queue.integer_range[0].from_value,
                                                                queue.integer_range[0].to_value) == (1, 1000)
    assert slop.type == ParameterType.PARAMETER_DOUBLE and slop.floating_point_range[0].to_value == 10.0
    transport = PARAMETERS["image_transport"].descriptor()
    assert "['raw', 'compressed']" in transport.additional_constraints and not transport.read_only
    assert PARAMETERS["autostart"].descriptor().read_only  # read once, at start
    assert PARAMETERS["cameras"].descriptor().type == ParameterType.PARAMETER_STRING_ARRAY
    settings = NodeSettings()
    assert [f.name for f in dataclasses.fields(NodeSettings)] == list(PARAMETERS)
    assert settings.cameras == tuple(PARAMETERS["cameras"].default) and settings.max_points == 15000
    assert set(OUTPUT_PARAMETERS) <= LIVE_PARAMETERS
    assert [f.name for f in dataclasses.fields(OutputOptions)] == list(OUTPUT_PARAMETERS)
    changed = dataclasses.replace(settings, max_markers=7, bev_z_min=-1.0)
    assert output_options(changed) == dataclasses.replace(OutputOptions(), max_markers=7, bev_z_min=-1.0)
    assert OutputOptions().bev_obstacle_classes == tuple(PARAMETERS["bev_obstacle_classes"].default)


@pytest.mark.parametrize(("name", "value", "words"), [
    ("device", "gpu", "cpu, cuda or cuda:N"),
    ("cameras", [], "at least one camera"),
    ("cameras", ["CAM_FRONT", "CAM_FRONT"], "repeat"),
    ("cameras", ["CAM FRONT"], "valid ROS name"),
    ("image_transport", "theora", "raw"),
    ("depth_source", "lidar", "provider"),
    ("sync_slop_s", float("nan"), "outside"),
    ("queue_size", 0, "outside"),
    ("max_markers", -1, "outside"),
    ("vocabulary_prompts", "car; road: road", "class_name: prompt"),
    ("vocabulary_prompts", "road: road", "at least two classes"),
    ("base_frame", "/", "non-empty frame"),
])
def test_invalid_values_are_refused_naming_the_parameter(name, value, words):
    reason = check_parameter(name, value)
    assert reason is not None and name in reason and words in reason


def test_valid_values_pass_and_inline_vocabulary_parses():
    for name, spec in PARAMETERS.items():
        assert check_parameter(name, spec.default) is None, name
    vocabulary = parse_vocabulary_prompts(" car: car, van; road: road ;sky: sky;")
    assert vocabulary.class_names == ["car", "road", "sky"] and vocabulary.free_class == "sky"
    assert vocabulary.prompts == ["car", "van", "road", "sky"]


def test_latest_only_worker_drops_stale_items_and_survives_errors():
    gate, seen, errors = threading.Event(), [], []

    def handler(item):
        gate.wait(5)
        if item == "bad":
            raise ValueError("bad item")
        seen.append(item)

    worker = LatestOnlyWorker(handler, lambda item, err: errors.append((item, str(err))))
    worker.submit(0)  # taken at once, blocks on the gate
    assert worker.wait_idle(0.2) is False
    replaced = [worker.submit(i) for i in range(1, 6)]  # each replaces the one waiting
    assert replaced == [False, True, True, True, True]
    gate.set()
    assert worker.wait_idle(5)
    assert seen[-1] == 5 and 1 not in seen and len(seen) <= 2
    worker.submit("bad")
    worker.submit(7)
    assert worker.wait_idle(5)
    assert worker.stats.dropped >= 4 and seen[-1] == 7
    assert errors in ([("bad", "bad item")], [])  # "bad" may be replaced by 7 before it runs
    worker.stop()
    with pytest.raises(RuntimeError, match="after stop"):
        worker.submit(8)


def test_problems_are_counted_and_warnings_throttled():
    now = [0.0]
    health = InputHealth(["a", "b"], stale_after_s=1.0, warn_period_s=5.0, clock=lambda: now[0])
    logged = [health.problem("bad image", "a", f"corrupt JPEG ({n} bytes)") for n in (100, 120, 130)]
    assert logged == [True, False, False]  # same message up to its numbers
    assert health.problem("bad image", "a", "CompressedImage is empty")  # a different problem: logged at once
    assert not health.problem("tf", "b", "missing", loggable=False)
    assert health.problem("tf", "b", "missing")  # the first loggable one
    now[0] = 6.0
    assert health.problem("bad image", "a", "CompressedImage is empty")  # after the warn period
    assert health.problem_counts() == {("bad image", "a"): 5, ("tf", "b"): 2}
    health.received("a")
    now[0] = 6.5
    assert health.stale_cameras() == ["b"]
    now[0] = 7.6
    assert health.stale_cameras() == ["a", "b"]
    array = health.diagnostics("node", Time(sec=3), {"camera sets": 4}, "waiting for calibration: tf")
    levels = {s.name: (s.level, s.message) for s in array.status}
    assert levels["node: inputs"] == (DiagnosticStatus.WARN, "stale cameras: a, b")
    assert levels["node: pipeline"] == (DiagnosticStatus.WARN, "waiting for calibration: tf")
    assert levels["node: input problems"][0] == DiagnosticStatus.WARN  # seen within recent_s
    assert array.header.stamp.sec == 3


def test_network_input_made_while_decoding_is_within_1_255_of_the_full_decode_resize_crop():
    """The node resizes in its decoding threads (partly in uint8); the model must see what the predictor's
    float ResizeCrop of the full decode gives, within 1/255 per pixel (here 0.5 / 255) at 1600x900 -> 504x896."""
    import io

    import numpy as np
    import torch
    from PIL import Image as PILImage
    from torchvision.io import ImageReadMode, decode_jpeg

    from gausstr_core.data.augment import plan_resize_crop
    from gausstr_ros.image_codec import CameraIntrinsics, compressed_image_msg
    from gausstr_ros.node_inputs import CameraMessages, decode_views
    from gausstr_ros.stamps import make_header

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:900, 0:1600]
    rgb = np.stack([(xx // 7) % 256, (yy * 3) % 256, ((xx + yy) // 5) % 256], -1) + rng.integers(0, 24, (900, 1600, 3))
    buf = io.BytesIO()
    PILImage.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=85)
    msg = compressed_image_msg(buf.getvalue(), make_header("cam", 0))
    info = CameraIntrinsics(np.array([[1000.0, 0, 800], [0, 1000, 450], [0, 0, 1]]), 1600, 900, "cam")
    frame = CameraMessages((0,), (msg,), None, 0.0)
    views = decode_views(frame, ["cam"], [info], np.eye(4)[None], (504, 896), network_input=True)
    assert views.images.dtype == torch.float32 and tuple(views.images.shape) == (1, 3, 504, 896)
    resize = plan_resize_crop((900, 1600), (504, 896))
    torch.testing.assert_close(views.original_to_input[0], resize.matrix)
    full = decode_jpeg(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8), mode=ImageReadMode.RGB)
    reference = resize.image(full[None]) / 255.0
    assert float((views.images - reference).abs().max()) <= 0.51 / 255


def test_output_recorder_names_unknown_keys():
    from gausstr_ros.tools.output_recorder import OutputRecorder

    with pytest.raises(ValueError, match=r"unknown output keys \['occupancy/pointz'\]"):
        OutputRecorder(None, keys=("occupancy", "occupancy/pointz"))
