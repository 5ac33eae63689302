"""nuScenes camera records -> ROS 2 bag (MCAP or sqlite3) replayable by `ros2 bag play`.

Topics, as the common nuScenes ROS 2 converters write them (docs/model_and_data_facts.md section 4; the
`nuscenes` preset of gausstr_ros.topic_presets):
  /<CAM>/image_rect_compressed  sensor_msgs/CompressedImage, the original JPEG bytes, frame <CAM>
  /<CAM>/camera_info            sensor_msgs/CameraInfo, K from calibration, no distortion
  /<CAM>/depth                  sensor_msgs/Image 32FC1 metres (optional; same field of view as
                                the image, at the depth source's resolution; NaN = no measurement)
  /tf                           map -> base_link (ego pose at each image's stamp)
  /tf_static                    base_link -> <CAM> (optical frame), transient local; rewritten
                                with all cameras whenever a calibration changes
Message stamps and bag log times are dataset time (ns). metadata.yaml records the offered QoS.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from geometry_msgs.msg import TransformStamped
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from tf2_msgs.msg import TFMessage
from tqdm import tqdm

from gausstr_core.atomic_files import remove_stale_temporaries, temp_path
from gausstr_core.data.cache import read_cache_map
from gausstr_core.data.nuscenes import CameraRecord, NuScenesReader
from gausstr_core.foundation.base import DepthProvider
from gausstr_core.geometry import resize_crop_matrix, rotmat_to_quat
from gausstr_ros.image_codec import camera_info_msg, compressed_image_msg, decode_image_msg, depth_image_msg
from gausstr_ros.qos import OUTPUT_QOS, TF_QOS, TF_STATIC_QOS, to_bag_qos
from gausstr_ros.stamps import make_header
from gausstr_ros.topic_presets import TOPIC_PRESETS

MAP_FRAME = "map"
BASE_FRAME = "base_link"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 9  # rosbag2 metadata version of ROS 2 Jazzy
ROS_DISTRO = "jazzy"

DepthSource = Callable[[CameraRecord], np.ndarray]  # record -> (H, W) float32 depth, m (NaN = none)


BAG_TOPICS = TOPIC_PRESETS["nuscenes"]  # the topics written (see the module docstring)
image_topic, camera_info_topic, depth_topic = (BAG_TOPICS.image_topic, BAG_TOPICS.camera_info_topic,
                                              BAG_TOPICS.depth_topic)


@dataclass
class BagSummary:
    path: Path
    message_counts: dict[str, int] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0


def camera_frames(
    reader: NuScenesReader, scenes: Sequence[str], keyframes_only: bool = True, limit: int | None = None
) -> list[tuple[str, CameraRecord]]:
    """(camera, record) of the scenes in time order: keyframe images, or every image (sweeps).

    limit: at most this many images per camera and scene (keyframes: samples).
    """
    frames: list[tuple[str, CameraRecord]] = []
    for scene in scenes:
        if keyframes_only:
            tokens = reader.scene_samples(scene)[:limit]
            scene_frames = [(cam, rec) for t in tokens for cam, rec in reader.sample_record(t).cameras.items()]
        else:
            counts: dict[str, int] = {}
            scene_frames = []
            for entry in reader.sweeps(scene):
                cam = entry["camera"]
                counts[cam] = counts.get(cam, 0) + 1
                if limit is None or counts[cam] <= limit:
                    scene_frames.append((cam, entry["record"]))
        frames.extend(sorted(scene_frames, key=lambda f: f[1].timestamp))
    return frames


def cache_depth_source(cache_root: str | Path, kind: str) -> DepthSource:
    """Depth maps prepared in `<cache_root>/<kind>/<sample_data_token>.npy` (0 = no measurement)."""

    def load(record: CameraRecord) -> np.ndarray:
        depth = read_cache_map(cache_root, kind, record.sample_data_token, expected_shape=(None, None))
        depth = depth.astype(np.float32)
        depth[depth <= 0] = np.nan
        return depth

    return load


def provider_depth_source(provider: DepthProvider, input_size: tuple[int, int]) -> DepthSource:
    """Run a depth provider on each image resized to input_size (H, W); depth at that size."""

    def estimate(record: CameraRecord) -> np.ndarray:
        data = Path(record.image_path).read_bytes()
        image = decode_image_msg(compressed_image_msg(data, make_header("", 0), _format(record.image_path)))
        height, width = image.shape[1:]
        scale = (input_size[1] / width, input_size[0] / height)
        resized = torch.nn.functional.interpolate(image[None].float() / 255, size=tuple(input_size), mode="bilinear",
                                                  antialias=True, align_corners=False)
        k = resize_crop_matrix(scale) @ torch.as_tensor(record.intrinsics, dtype=torch.float32)
        with torch.no_grad():
            depth = provider(resized.clamp(0, 1), k[None])[0]
        return depth.float().cpu().numpy()

    return estimate


def _format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        return "jpeg"
    if suffix == ".png":
        return "png"
    raise ValueError(f"image {path}: expected a .jpg/.jpeg or .png file")


def transform_msg(parent: str, child: str, child_to_parent: np.ndarray, stamp_ns: int) -> TransformStamped:
    """(4, 4) child_to_parent -> TransformStamped (quaternion x y z w)."""
    msg = TransformStamped(header=make_header(parent, stamp_ns), child_frame_id=child)
    t, r = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in child_to_parent[:3, 3])
    w, x, y, z = rotmat_to_quat(torch.as_tensor(child_to_parent[:3, :3], dtype=torch.float64)).tolist()
    r.x, r.y, r.z, r.w = x, y, z, w
    return msg


class _BagTopics:
    """Connections created on first use, with their offered QoS and message counts."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._typestore = get_typestore(Stores.ROS2_JAZZY)
        self._connections = {}
        self.counts: dict[str, int] = {}

    def write(self, topic: str, msgtype: str, msg, stamp_ns: int, qos=OUTPUT_QOS) -> None:
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self._typestore, offered_qos_profiles=[to_bag_qos(qos)]
            )
            self.counts[topic] = 0
        self._writer.write(self._connections[topic], stamp_ns, serialize_message(msg))
        self.counts[topic] += 1


def write_bag(
    path: str | Path,
    frames: Iterable[tuple[str, CameraRecord]],
    storage: str = "mcap",
    depth: DepthSource | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> BagSummary:
    """Write the camera frames (time-ordered (camera, record) pairs) as a ROS 2 bag folder at `path`.

    The bag is written to a sibling temporary folder (atomic_files naming) and renamed to `path`
    only when complete, so `path` never holds a partial bag and a failed write leaves an existing
    bag untouched. Replacing (overwrite) takes two renames: the old bag to a sibling temporary name,
    then the new one to `path`, and the old one is deleted after. Between the two renames `path`
    briefly does not exist; a process killed right there leaves both bags complete under their
    temporary names (removed by the next write_bag in that folder once the writer is dead).
    """
    if storage not in STORAGES:
        raise ValueError(f"storage {storage!r} not in {sorted(STORAGES)}")
    frames = list(frames)
    if not frames:
        raise ValueError("write_bag: no camera frames to write (empty scene list or limit 0?)")
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"bag folder {path} exists (pass overwrite / --force to replace it)")
        if not (path / "metadata.yaml").is_file():
            raise FileExistsError(f"{path} exists and is not a ROS 2 bag folder: not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    partial, old = temp_path(path), temp_path(path, index=1)
    replacing = path.exists()
    try:
        counts = _write_bag_folder(partial, frames, storage, depth, progress, name=path.name)
        if replacing:
            os.replace(path, old)
        try:
            os.replace(partial, path)
        except OSError:
            if replacing:
                os.replace(old, path)  # put the old bag back
            raise
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    if replacing:
        shutil.rmtree(old)
    return BagSummary(path, counts, frames[0][1].timestamp * 1000, frames[-1][1].timestamp * 1000)


def _write_bag_folder(
    folder: Path, frames: list[tuple[str, CameraRecord]], storage: str, depth: DepthSource | None, progress: bool,
    name: str,
) -> dict[str, int]:
    """Write the bag folder (which must not exist); returns the message count per topic."""
    start_ns = frames[0][1].timestamp * 1000
    calibration: dict[str, np.ndarray] = {}
    for cam, rec in frames:  # every camera's first calibration goes into the first /tf_static
        calibration.setdefault(cam, rec.cam2ego)
    last_pose_ns = None
    writer = Writer(folder, version=BAG_VERSION, storage_plugin=STORAGES[storage])
    writer.open()
    try:
        topics = _BagTopics(writer)

        def write_static(stamp: int) -> None:
            statics = [transform_msg(BASE_FRAME, c, m, stamp) for c, m in calibration.items()]
            topics.write("/tf_static", "tf2_msgs/msg/TFMessage", TFMessage(transforms=statics), stamp, TF_STATIC_QOS)

        write_static(start_ns)
        for cam, rec in tqdm(frames, desc=f"bag {name}", unit="img", disable=not progress):
            stamp = rec.timestamp * 1000
            if not np.allclose(calibration[cam], rec.cam2ego):  # e.g. the next scene's car
                calibration[cam] = rec.cam2ego
                write_static(stamp)
            if stamp != last_pose_ns:
                pose = TFMessage(transforms=[transform_msg(MAP_FRAME, BASE_FRAME, rec.ego2global, stamp)])
                topics.write("/tf", "tf2_msgs/msg/TFMessage", pose, stamp, TF_QOS)
                last_pose_ns = stamp
            header = make_header(cam, stamp)
            image = compressed_image_msg(Path(rec.image_path).read_bytes(), header, _format(rec.image_path))
            topics.write(image_topic(cam), "sensor_msgs/msg/CompressedImage", image, stamp)
            info = camera_info_msg(rec.intrinsics, rec.width, rec.height, header)
            topics.write(camera_info_topic(cam), "sensor_msgs/msg/CameraInfo", info, stamp)
            if depth is not None:
                topics.write(depth_topic(cam), "sensor_msgs/msg/Image", depth_image_msg(depth(rec), header), stamp)
    except BaseException:
        writer.abort()  # no index or metadata.yaml: not a readable bag
        raise
    writer.close()
    _set_ros_distro(folder)
    return dict(topics.counts)


def _set_ros_distro(folder: Path) -> None:
    """metadata.yaml: ros_distro jazzy (rosbags writes its own name there)."""
    meta_path = folder / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta["rosbag2_bagfile_information"]["ros_distro"] = ROS_DISTRO
    meta_path.write_text(yaml.safe_dump(meta, default_flow_style=False, sort_keys=False))
