"""The occupancy node's parameters: declaration (description, type, range), validation, settings.

config/occupancy.yaml lists exactly these names (test_node_params checks names and defaults).
`declare_node_parameters(node)` declares them; `read_settings(node)` validates all of them into a
NodeSettings; `check_parameter(name, value)` validates one value (used for run-time updates).
Inline vocabularies (`vocabulary_prompts`) read "class: prompt, prompt; class: prompt; free: prompt",
the last class being the free one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node

from gausstr_core.vocabulary import Vocabulary

IMAGE_TRANSPORTS = ("raw", "compressed")
DEPTH_SOURCES = ("auto", "topic", "provider", "model")  # auto: model if the checkpoint has a depth head, else its
# provider if it has one, else topic
# Parameters that can change while the node is active; the others apply at the next configure.
LIVE_PARAMETERS = frozenset({
    "vocabulary_file", "vocabulary_prompts", "publish_points", "max_points", "publish_bev", "bev_z_min", "bev_z_max",
    "bev_obstacle_classes", "publish_gaussians", "publish_markers", "max_markers", "marker_sigma_k", "standing_queries",
})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values (see config/occupancy.yaml for their meaning)."""

    checkpoint: str
    device: str
    autostart: bool
    cameras: tuple[str, ...]
    image_transport: str
    depth_source: str
    base_frame: str
    sync_slop_s: float
    queue_size: int
    max_future_s: float
    time_jump_tolerance_s: float
    tf_cache_time_s: float
    max_image_pixels: int
    gpu_preprocess: bool
    vocabulary_file: str
    vocabulary_prompts: str
    publish_points: bool
    max_points: int
    publish_bev: bool
    bev_z_min: float
    bev_z_max: float
    bev_obstacle_classes: tuple[str, ...]
    publish_gaussians: bool
    publish_markers: bool
    max_markers: int
    marker_sigma_k: float
    standing_queries: str


@dataclass(frozen=True)
class _Spec:
    default: Any
    description: str
    check: Callable[[Any], str | None] = lambda value: None
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {list(choices)}"


def _device(value: str) -> str | None:
    return None if re.fullmatch(r"cpu|cuda(:\d+)?", value) else "must be cpu, cuda or cuda:N"


def _cameras(value: list[str]) -> str | None:
    if not value:
        return "needs at least one camera name"
    bad = [c for c in value if not _NAME.match(c)]
    if bad:
        return f"camera names must be valid ROS name tokens (letters, digits, _), got {bad}"
    if len(set(value)) != len(value):
        return f"camera names repeat: {list(value)}"
    return None


def _frame(value: str) -> str | None:
    return None if value.strip("/") else "must be a non-empty frame id"


def _prompts(value: str) -> str | None:
    if not value.strip():
        return None
    try:
        parse_vocabulary_prompts(value)
    except ValueError as err:
        return str(err)
    return None


PARAMETERS: dict[str, _Spec] = {
    "checkpoint": _Spec("", "path to a gausstr checkpoint (.pth); required to configure"),
    "device": _Spec("cpu", "torch device: cpu | cuda | cuda:N", _device),
    "autostart": _Spec(True, "configure and activate the lifecycle node on start"),
    "cameras": _Spec(
        ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"],
        "camera names in the model's view order; per camera ~/input/<camera>/image, camera_info and depth",
        _cameras,
    ),
    "image_transport": _Spec("compressed", "raw (sensor_msgs/Image) | compressed (sensor_msgs/CompressedImage)",
                             _one_of(IMAGE_TRANSPORTS)),
    "depth_source": _Spec("auto", "auto: the checkpoint's depth head if it has one, else its depth provider if it "
                          "configures one, else the depth topics | topic: 32FC1/16UC1 ~/input/<camera>/depth | "
                          "provider: the checkpoint's depth provider | model: the checkpoint's depth head (no depth "
                          "network, no depth topic)", _one_of(DEPTH_SOURCES)),
    "base_frame": _Spec("base_link", "output frame; camera extrinsics from /tf_static + /tf (base_frame <- camera)",
                        _frame),
    "sync_slop_s": _Spec(0.06, "max stamp spread of one camera set, s", float_range=(0.0, 10.0)),
    "queue_size": _Spec(10, "messages kept per camera by the approximate-time synchroniser", int_range=(1, 1000)),
    "max_future_s": _Spec(2.0, "input stamps further ahead of the node's clock are dropped, s (not while a sim "
                          "clock reads 0)", float_range=(0.0, 1e6)),
    "time_jump_tolerance_s": _Spec(1.0, "a jump back of the clock, or of every camera's stamps together, beyond "
                                   "this resets the synchroniser, the dynamic transforms and the worker, s",
                                   float_range=(0.0, 1e6)),
    "tf_cache_time_s": _Spec(10.0, "dynamic /tf data kept behind the newest, s (tf2's cache time)",
                             float_range=(0.01, 1e6)),
    "max_image_pixels": _Spec(16_000_000, "images with more pixels (read from the header) are refused before "
                              "decoding", int_range=(1, 1_000_000_000)),
    "gpu_preprocess": _Spec(True, "with a CUDA device: decode JPEGs (nvjpeg) and resize on the GPU"),
    "vocabulary_file": _Spec("", "vocabulary YAML (empty: the checkpoint's vocabulary); changeable at run time"),
    "vocabulary_prompts": _Spec("", "inline classes 'car: car, van; road: road; sky: sky' (last = free); "
                                "overrides vocabulary_file; changeable at run time", _prompts),
    "publish_points": _Spec(True, "publish ~/occupancy/points (PointCloud2 of occupied voxel centres)"),
    "max_points": _Spec(15000, "cap on published points (nearest to the ego kept)", int_range=(0, 10_000_000)),
    "publish_bev": _Spec(True, "publish ~/occupancy/bev (nav_msgs/OccupancyGrid)"),
    "bev_z_min": _Spec(-0.5, "lower end of the BEV obstacle height band, m (base_frame z)", float_range=(-100, 100)),
    "bev_z_max": _Spec(2.5, "upper end of the BEV obstacle height band, m (base_frame z)", float_range=(-100, 100)),
    "bev_obstacle_classes": _Spec(
        ["barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian", "traffic_cone",
         "trailer", "truck", "manmade", "vegetation"],
        "vocabulary classes that are obstacles in the BEV grid (names not in the vocabulary are ignored)",
    ),
    "publish_gaussians": _Spec(True, "publish ~/gaussians (GaussianArray)"),
    "publish_markers": _Spec(True, "publish ~/gaussians/markers (MarkerArray, one SPHERE per Gaussian)"),
    "max_markers": _Spec(500, "cap on markers (most opaque kept)", int_range=(0, 100_000)),
    "marker_sigma_k": _Spec(1.0, "marker diameter = 2 x marker_sigma_k x sigma per axis", float_range=(0.01, 10.0)),
    "standing_queries": _Spec("", "prompts answered with every prediction on ~/query/relevance and ~/query/clusters, "
                              "separated by ';' (e.g. 'car; fire hydrant'); changeable at run time"),
}


def declare_node_parameters(node: Node) -> None:
    """Declare every parameter with its description, type and range."""
    for name, spec in PARAMETERS.items():
        descriptor = ParameterDescriptor(name=name, description=spec.description, type=_type_of(spec.default))
        if spec.int_range is not None:
            descriptor.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1])]
        if spec.float_range is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.float_range[0]), to_value=float(spec.float_range[1]))
            ]
        node.declare_parameter(name, spec.default, descriptor)


def check_parameter(name: str, value: Any) -> str | None:
    """None if `value` is valid for parameter `name`, else the reason (naming the parameter)."""
    spec = PARAMETERS.get(name)
    if spec is None:
        return None  # not ours (use_sim_time, ...)
    if spec.float_range is not None and not (math.isfinite(value) and spec.float_range[0] <= value
                                             <= spec.float_range[1]):
        return f"parameter {name!r} = {value!r} is outside {list(spec.float_range)}"
    if spec.int_range is not None and not spec.int_range[0] <= value <= spec.int_range[1]:
        return f"parameter {name!r} = {value!r} is outside {list(spec.int_range)}"
    reason = spec.check(value)
    return None if reason is None else f"parameter {name!r} = {value!r}: {reason}"


def read_settings(node: Node) -> NodeSettings:
    """All parameters, validated together; ValueError lists every invalid one."""
    values = {name: node.get_parameter(name).value for name in PARAMETERS}
    problems = [reason for name, value in values.items() if (reason := check_parameter(name, value))]
    if values["bev_z_max"] < values["bev_z_min"]:
        problems.append(f"bev_z_max ({values['bev_z_max']}) must be >= bev_z_min ({values['bev_z_min']})")
    if problems:
        raise ValueError("invalid parameters: " + "; ".join(problems))
    values["cameras"] = tuple(values["cameras"])
    values["bev_obstacle_classes"] = tuple(values["bev_obstacle_classes"])
    values["base_frame"] = values["base_frame"].strip("/")
    return NodeSettings(**values)


def resolve_depth_source(
    requested: str, checkpoint_has_provider: bool, checkpoint_has_head: bool = False
) -> tuple[str, str]:
    """depth_source parameter -> (the source used: 'topic' | 'provider' | 'model', why, for the log); ValueError
    when the checkpoint cannot serve the request. checkpoint_has_head: its model predicts depth (model.depth_head)."""
    if requested == "auto":
        if checkpoint_has_head:
            return "model", "depth_source auto: the checkpoint's model has a depth head"
        if checkpoint_has_provider:
            return "provider", "depth_source auto: the checkpoint configures a depth provider"
        return "topic", "depth_source auto: the checkpoint configures no depth provider, so the depth topics"
    if requested == "model" and not checkpoint_has_head:
        raise ValueError("depth_source is 'model' but the checkpoint's model has no depth head (model.depth_head: "
                         "false); set depth_source:=auto, provider or topic")
    if requested == "provider" and not checkpoint_has_provider:
        raise ValueError("depth_source is 'provider' but the checkpoint configures no depth provider "
                         "(data.depth_provider); publish depth images and set depth_source:=topic (or auto)")
    return requested, f"depth_source {requested}"


def parse_vocabulary_prompts(text: str) -> Vocabulary:
    """'car: car, van; road: road; sky: sky' -> Vocabulary (last class = free; no Occ3D mapping)."""
    classes = []
    for index, entry in enumerate(part.strip() for part in text.split(";")):
        if not entry:
            continue
        name, colon, prompts = entry.partition(":")
        name = name.strip()
        prompt_list = [p.strip() for p in prompts.split(",") if p.strip()]
        if not colon or not _NAME.match(name) or not prompt_list:
            raise ValueError(
                f"vocabulary_prompts entry {index} {entry!r} must look like 'class_name: prompt, prompt'"
            )
        classes.append({"name": name, "prompts": prompt_list})
    if len(classes) < 2:
        raise ValueError("vocabulary_prompts needs at least two classes (the last one is the free class)")
    return Vocabulary.from_dict({"name": "inline", "free_class": classes[-1]["name"], "classes": classes},
                                source="vocabulary_prompts")


def _type_of(default: Any) -> int:
    if isinstance(default, bool):
        return ParameterType.PARAMETER_BOOL
    if isinstance(default, int):
        return ParameterType.PARAMETER_INTEGER
    if isinstance(default, float):
        return ParameterType.PARAMETER_DOUBLE
    if isinstance(default, str):
        return ParameterType.PARAMETER_STRING
    return ParameterType.PARAMETER_STRING_ARRAY
