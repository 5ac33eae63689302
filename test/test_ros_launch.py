"""launch/occupancy.launch.py executed against stand-in launch/launch_ros modules, and the params
file read by the real rcl parameter parser."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gausstr_ros.tools.bag_writer import camera_info_topic, depth_topic, image_topic

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "occupancy.launch.py"
PARAMS_FILE = ROOT / "config" / "occupancy.yaml"
STAND_INS = Path(__file__).resolve().parent / "stand_ins"
NUSCENES = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
STAND_IN_MODULES = ("launch", "launch_ros", "ament_index_python")


def yaml_params() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]


@pytest.fixture
def launch_file(monkeypatch):
    """The launch module loaded with the stand-ins first on sys.path (removed again afterwards)."""
    monkeypatch.syspath_prepend(str(STAND_INS))
    monkeypatch.setenv("STAND_IN_SHARE_gausstr_ros", str(ROOT))  # the source tree has config/ like share/
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in STAND_IN_MODULES}
    for key in saved:
        del sys.modules[key]
    spec = importlib.util.spec_from_file_location("occupancy_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for key in [k for k in sys.modules if k.split(".")[0] in STAND_IN_MODULES]:
        del sys.modules[key]
    sys.modules.update(saved)


def run_launch(module, **arguments: str) -> list:
    """Resolve declared arguments (defaults + `arguments`) and execute the OpaqueFunction."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    entities = module.generate_launch_description().entities
    declared = {e.name: e for e in entities if isinstance(e, DeclareLaunchArgument)}
    unknown = sorted(set(arguments) - set(declared))
    assert not unknown, f"launch arguments {unknown} are not declared"
    context = LaunchContext()
    context.launch_configurations = {name: d.default_value for name, d in declared.items()}
    context.launch_configurations.update(arguments)
    actions = []
    for entity in entities:
        if isinstance(entity, OpaqueFunction):
            actions += entity.execute(context)
    return actions


def node_of(actions: list):
    from launch_ros.actions import LifecycleNode

    nodes = [a for a in actions if isinstance(a, LifecycleNode)]
    assert len(nodes) == 1
    return nodes[0]


def test_lifecycle_node_with_params_file_and_declared_overrides(launch_file):
    node = node_of(run_launch(launch_file, checkpoint="/models/tiny.pth", device="cuda:0", use_sim_time="true",
                              depth_source="topic", vocabulary_file="/v/occ3d.yaml"))
    assert (node.package, node.executable, node.name, node.namespace) == (
        "gausstr_ros", "occupancy_node", "gausstr_occupancy", "")
    params_file, overrides = node.parameters
    assert Path(params_file) == PARAMS_FILE
    declared = yaml_params()
    assert set(overrides) - {"use_sim_time"} <= set(declared)
    assert overrides["checkpoint"] == "/models/tiny.pth" and overrides["device"] == "cuda:0"
    assert overrides["depth_source"] == "topic" and overrides["vocabulary_file"] == "/v/occ3d.yaml"
    assert overrides["use_sim_time"] is True and overrides["autostart"] is True
    for key, value in overrides.items():  # same types as the params file, so the node accepts them
        if key != "use_sim_time":
            assert type(value) is type(declared[key]), key


def test_unset_arguments_leave_the_params_file_in_charge(launch_file):
    _, overrides = node_of(run_launch(launch_file)).parameters
    for name in ("checkpoint", "device", "depth_source", "vocabulary_file"):
        assert name not in overrides, name
    assert overrides["use_sim_time"] is False


def remap_dict(node) -> dict[str, str]:
    rules = dict(node.remappings)
    assert len(rules) == len(node.remappings)
    return rules


def test_nuscenes_preset_matches_the_bag_topics(launch_file):
    node = node_of(run_launch(launch_file, topic_preset="nuscenes"))
    rules = remap_dict(node)
    expected = {}
    for cam in NUSCENES:
        expected[f"~/input/{cam}/image"] = image_topic(cam)
        expected[f"~/input/{cam}/camera_info"] = camera_info_topic(cam)
        expected[f"~/input/{cam}/depth"] = depth_topic(cam)
    assert rules == expected
    assert node.parameters[1]["image_transport"] == "compressed"
    assert node.parameters[1]["cameras"] == yaml_params()["cameras"] == NUSCENES


def test_raw_preset_and_custom_cameras(launch_file):
    node = node_of(run_launch(launch_file, topic_preset="raw", cameras="left, right", namespace="car1"))
    assert node.namespace == "car1"
    assert remap_dict(node) == {
        "~/input/left/image": "/left/image_raw", "~/input/left/camera_info": "/left/camera_info",
        "~/input/left/depth": "/left/depth", "~/input/right/image": "/right/image_raw",
        "~/input/right/camera_info": "/right/camera_info", "~/input/right/depth": "/right/depth",
    }
    assert node.parameters[1]["cameras"] == ["left", "right"]
    assert node.parameters[1]["image_transport"] == "raw"


def test_unknown_preset_is_named(launch_file):
    with pytest.raises(RuntimeError, match="topic_preset 'kitti' is not one of"):
        run_launch(launch_file, topic_preset="kitti")


def test_rviz_switch(launch_file):
    from launch_ros.actions import LifecycleNode

    assert len(run_launch(launch_file)) == 1
    actions = run_launch(launch_file, rviz="true", use_sim_time="True")
    rviz = [a for a in actions if not isinstance(a, LifecycleNode)]
    assert len(rviz) == 1 and (rviz[0].package, rviz[0].executable) == ("rviz2", "rviz2")
    flag, config = rviz[0].arguments
    assert flag == "-d" and Path(config) == ROOT / "config" / "gausstr.rviz" and Path(config).is_file()
    assert rviz[0].parameters == [{"use_sim_time": True}]


def test_launch_file_imports_only_ros_launch_modules_and_the_topic_presets():
    tree = ast.parse(LAUNCH_FILE.read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m.split(".")[0] for m in modules - {"gausstr_ros.topic_presets"}} <= {
        "launch", "launch_ros", "ament_index_python", "yaml", "pathlib"}
    # what a `ros2 launch` process loads from the package: no rclpy, no torch
    out = subprocess.run([sys.executable, "-c", "import sys, gausstr_ros.topic_presets; "
                          "print(sorted({'rclpy', 'torch', 'numpy'} & set(sys.modules)))"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


PARAM_DUMP = """
import json, sys, rclpy
rclpy.init(args=["--ros-args", "--params-file", sys.argv[1], "-p", "use_sim_time:=true"])
node = rclpy.create_node("gausstr_occupancy", automatically_declare_parameters_from_overrides=True)
print(json.dumps({name: p.value for name, p in node.get_parameters_by_prefix("").items()}))
node.destroy_node()
rclpy.shutdown()
"""


def test_params_file_is_read_by_rcl_with_the_intended_types(ros_domain_id):
    out = subprocess.run([sys.executable, "-c", PARAM_DUMP, str(PARAMS_FILE)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    params = json.loads(out.stdout.strip().splitlines()[-1])
    for builtin in ("use_sim_time", "start_type_description_service"):
        params.pop(builtin)
    assert params == yaml_params()  # every name and value survives the real parser
    assert isinstance(params["sync_slop_s"], float) and isinstance(params["max_points"], int)
    assert isinstance(params["bev_z_min"], float) and isinstance(params["publish_points"], bool)


def test_rviz_config_shows_the_node_outputs_and_cameras():
    config = yaml.safe_load((ROOT / "config" / "gausstr.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "map"
    displays = {d["Class"].split("/")[-1] + ":" + d["Topic"]["Value"]: d for d in manager["Displays"] if "Topic" in d}
    points = displays["PointCloud2:/gausstr_occupancy/occupancy/points"]
    assert points["Style"] == "Boxes" and points["Size (m)"] == 0.4 and points["Color Transformer"] == "RGB8"
    assert displays["MarkerArray:/gausstr_occupancy/gaussians/markers"]["Enabled"]
    for cam in yaml_params()["cameras"]:
        assert f"Image:{image_topic(cam)}" in displays


def test_setup_makes_the_venv_a_package_prefix_for_launch():
    """Before: after the README's set-up, share/gausstr_ros had no config/ or launch/, so the launch file's
    default params file did not exist there, and launch_ros found no lib/gausstr_ros/occupancy_node."""
    import os

    prefix = Path(sys.prefix)
    share = prefix / "share" / "gausstr_ros"
    assert (share / "config" / "occupancy.yaml").read_text() == PARAMS_FILE.read_text()
    assert (share / "launch" / "occupancy.launch.py").read_text() == LAUNCH_FILE.read_text()
    assert (share / "config" / "gausstr.rviz").is_file()
    executable = prefix / "lib" / "gausstr_ros" / "occupancy_node"
    assert executable.is_file() and os.access(executable, os.X_OK)
