"""Launch the GaussTR occupancy lifecycle node (ROS 2 Jazzy), optionally with RViz.

    ros2 launch gausstr_ros occupancy.launch.py checkpoint:=/path/model.pth topic_preset:=nuscenes \
        use_sim_time:=true rviz:=true [device:=cuda] [depth_source:=topic] [vocabulary_file:=vocab.yaml]

topic_preset maps the node's relative inputs ~/input/<camera>/{image,camera_info,depth} to the topics
of a camera source: `nuscenes` (compressed images; the topics gausstr-bag writes) or `raw` (Image), the
table of gausstr_ros/topic_presets.py.
The cameras come from the `cameras` argument (comma-separated) or else from the params file;
device, depth_source and vocabulary_file override the params file when given.
"""

from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from gausstr_ros.topic_presets import TOPIC_PRESETS  # plain Python, no rclpy: the presets the bag tools use

PACKAGE = "gausstr_ros"
TRUE = ("true", "1", "yes", "on")


def _params_cameras(params_file: str) -> list[str]:
    """The `cameras` parameter of the first section of a ROS params file that sets it."""
    sections = yaml.safe_load(Path(params_file).read_text()) or {}
    for section in sections.values():
        cameras = (section or {}).get("ros__parameters", {}).get("cameras")
        if cameras:
            return [str(c) for c in cameras]
    raise RuntimeError(f"no 'cameras' parameter in {params_file}; pass cameras:=CAM_A,CAM_B")


def _launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    preset = arg("topic_preset")
    if preset not in TOPIC_PRESETS:
        raise RuntimeError(f"topic_preset {preset!r} is not one of {sorted(TOPIC_PRESETS)}")
    params_file = arg("params_file")
    cameras = [c.strip() for c in arg("cameras").split(",") if c.strip()] or _params_cameras(params_file)
    use_sim_time = arg("use_sim_time").lower() in TRUE
    overrides = {
        "autostart": arg("autostart").lower() in TRUE,
        "cameras": cameras,
        "image_transport": TOPIC_PRESETS[preset].image_transport,
        "use_sim_time": use_sim_time,
    }
    for name in ("checkpoint", "device", "depth_source", "vocabulary_file"):
        if arg(name):
            overrides[name] = arg(name)
    actions = [
        LifecycleNode(
            package=PACKAGE,
            executable="occupancy_node",
            name="gausstr_occupancy",
            namespace=arg("namespace"),
            parameters=[params_file, overrides],
            remappings=TOPIC_PRESETS[preset].remappings(cameras),
            output="screen",
        )
    ]
    if arg("rviz").lower() in TRUE:
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", str(Path(get_package_share_directory(PACKAGE)) / "config" / "gausstr.rviz")],
                parameters=[{"use_sim_time": use_sim_time}],
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    return LaunchDescription(
        [
            DeclareLaunchArgument("checkpoint", default_value="", description="GaussTR checkpoint (.pth)"),
            DeclareLaunchArgument(
                "params_file", default_value=str(share / "config" / "occupancy.yaml"), description="node parameters"
            ),
            DeclareLaunchArgument("device", default_value="", description="torch device (default: params file)"),
            DeclareLaunchArgument(
                "depth_source", default_value="",
                description="auto | topic | provider | model (default: params file; auto: the checkpoint's depth head "
                "if any, else its provider if any, else topic)",
            ),
            DeclareLaunchArgument(
                "vocabulary_file", default_value="", description="vocabulary YAML (default: the checkpoint's)"
            ),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
            DeclareLaunchArgument(
                "topic_preset", default_value="nuscenes", description=f"input topics: {' | '.join(TOPIC_PRESETS)}"
            ),
            DeclareLaunchArgument("cameras", default_value="", description="comma-separated (default: params file)"),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            DeclareLaunchArgument("autostart", default_value="true", description="configure + activate on start"),
            DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 with config/gausstr.rviz"),
            OpaqueFunction(function=_launch_setup),
        ]
    )
