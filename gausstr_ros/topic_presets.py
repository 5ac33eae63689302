"""Input topic presets: the occupancy node's relative inputs -> the absolute topics of a camera source.

Plain Python (no rclpy), shared by launch/occupancy.launch.py (`topic_preset:=`) and the bag tools
(gausstr-bag writes the `nuscenes` preset's topics; the replay harness remaps the node to them):
  nuscenes  /<camera>/image_rect_compressed (CompressedImage), /<camera>/camera_info, /<camera>/depth
  raw       /<camera>/image_raw (Image), /<camera>/camera_info, /<camera>/depth
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TopicPreset:
    """Where one camera's image, CameraInfo and depth image are published."""

    image_suffix: str
    image_transport: str  # the node's image_transport parameter for these image topics

    def image_topic(self, camera: str) -> str:
        return f"/{camera}/{self.image_suffix}"

    def camera_info_topic(self, camera: str) -> str:
        return f"/{camera}/camera_info"

    def depth_topic(self, camera: str) -> str:
        return f"/{camera}/depth"

    def remappings(self, cameras: Sequence[str]) -> list[tuple[str, str]]:
        """(node-relative input, topic) for every camera: ~/input/<camera>/{image,camera_info,depth}."""
        rules = []
        for cam in cameras:
            rules += [(f"~/input/{cam}/image", self.image_topic(cam)),
                      (f"~/input/{cam}/camera_info", self.camera_info_topic(cam)),
                      (f"~/input/{cam}/depth", self.depth_topic(cam))]
        return rules


TOPIC_PRESETS = {
    "nuscenes": TopicPreset("image_rect_compressed", "compressed"),
    "raw": TopicPreset("image_raw", "raw"),
}
