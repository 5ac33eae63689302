"""`occupancy_node`: the GaussTR lifecycle node (cameras -> semantic occupancy, Gaussians, markers).

Lifecycle (the ROS 2 convention): configure loads the checkpoint (OccupancyPredictor; a missing
or corrupt checkpoint fails the transition with the reason logged), resolves depth_source (auto:
the checkpoint's depth head if it has one, else its depth provider if it has one, else the depth
topics; logged) and creates the lifecycle publishers, silent until activation; activate creates
subscriptions and the inference thread; deactivate removes them (and frees cached GPU memory);
cleanup drops the model and the publishers. With `autostart` the node configures and activates
itself on start. SIGINT and SIGTERM end it in any state with exit code 0 (gausstr_ros.shutdown),
after the inference in flight.

Inputs (relative names, remapped by launch/occupancy.launch.py), per camera in model order:
  ~/input/<camera>/image        sensor_msgs/Image or CompressedImage (image_transport), sensor-data QoS
  ~/input/<camera>/camera_info  sensor_msgs/CameraInfo (rectified, d = 0), cached
  ~/input/<camera>/depth        sensor_msgs/Image 32FC1 / 16UC1 (only with depth_source: topic)
  /tf_static (transient local), /tf   extrinsics base_frame <- image header.frame_id
Images (and depths) go through one approximate-time synchroniser; complete sets wait until every
CameraInfo and transform is there (logged once), then enter a one-slot latest-only mailbox in
front of the inference thread (stale sets are dropped and counted).

Outputs, frame base_frame, stamped with the first camera's image stamp: ~/occupancy
(SemanticOccupancy), ~/occupancy/points (PointCloud2), ~/occupancy/bev (OccupancyGrid),
~/gaussians (GaussianArray), ~/gaussians/markers (MarkerArray), /diagnostics (1 Hz),
~/debug/processing_time_ms (set taken by the worker -> published) and
~/debug/pipeline_latency_ms (first message of the set received -> published), std_msgs/Float64.
Open-vocabulary queries on the latest prediction: service ~/query and the standing queries
(~/query/relevance, ~/query/clusters), gausstr_ros/query_service.py.

Time: stamps more than max_future_s ahead of the node's clock are dropped; a jump back of the
clock (/clock under sim time, e.g. a looping bag) or of every camera's stamps together by more
than time_jump_tolerance_s resets the synchroniser, the dynamic transforms and the waiting set
(logged once per jump); one stale image alone is only dropped (gausstr_ros.stamp_guard).

Bad input (corrupt, empty, oversized or undecodable images, wrong encodings, invalid CameraInfo,
missing or looping transforms, out-of-order or future stamps, stale or missing cameras) is
skipped with a throttled warning and counted in /diagnostics; the node keeps running. Cameras
that never publish are named in the log and in /diagnostics ("waiting for camera X").
Parameters: the table in gausstr_ros/node_params.py (config/occupancy.yaml is generated from it); the
vocabulary, output options and standing queries change at run time (new prototypes, no model reload).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import traceback
from typing import Any, NoReturn

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float64
from tf2_msgs.msg import TFMessage

from gausstr_core.predict import OccupancyPredictor
from gausstr_core.vocabulary import Vocabulary
from gausstr_ros.diagnostics import InputHealth
from gausstr_ros.gaussian_msgs import MarkerPublisherState
from gausstr_ros.image_codec import CameraIntrinsics, ImageDecodeError, parse_camera_info
from gausstr_ros.inference_worker import LatestOnlyWorker
from gausstr_ros.node_inputs import CameraMessages, InputError, camera_to_ego, decode_views
from gausstr_ros.node_outputs import OUTPUT_TYPES, build_outputs, output_options
from gausstr_ros.node_params import (
    LIVE_PARAMETERS,
    NodeSettings,
    check_parameter,
    declare_node_parameters,
    parse_vocabulary_prompts,
    read_settings,
    resolve_depth_source,
    setting_value,
    settings_problems,
)
from gausstr_ros.qos import OUTPUT_QOS, SENSOR_QOS, TF_QOS, TF_STATIC_QOS
from gausstr_ros.query_service import QueryService
from gausstr_ros.shutdown import StopSignals, exit_process, init_ros
from gausstr_ros.stamp_guard import StampGuard, Verdict
from gausstr_ros.stamps import make_header, stamp_to_ns
from gausstr_ros.sync import ApproximateTimeSync, SyncedMessages
from gausstr_ros.tf_buffer import TransformBuffer, TransformError

NODE_NAME = "gausstr_occupancy"
DIAGNOSTICS_PERIOD_S = 1.0
CALIBRATION_GRACE_S = 2.0  # missing calibration is logged as a warning after this long
CAMERA_GRACE_S = 5.0  # cameras without any image are logged as warnings this long after activation (discovery)
RESET_QUIET_S = 1.0  # time resets closer together than this are one jump (logged once)


class OccupancyNode(LifecycleNode):
    """The lifecycle node described in the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_node_parameters(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.predictor: OccupancyPredictor | None = None
        self.settings: NodeSettings | None = None
        self._stream_subscriptions: list[Any] = []  # of the active state
        self._image_topics: list[str] = []  # resolved image topic per camera (active state)
        self._lifecycle_publishers: list[Any] = []  # of the configured states
        self._diag_timer = None
        self._outputs: dict[str, Any] = {}
        self._worker: LatestOnlyWorker | None = None
        self._sync: ApproximateTimeSync | None = None
        self._guard: StampGuard | None = None
        self._decode_device = torch.device("cpu")
        self._calibration_lock = threading.Lock()  # guards calibration and the waiting state
        self._queries = QueryService(self)  # ~/query and the standing queries (query_service.py)

    # --- lifecycle ---

    def autostart(self) -> bool:
        """configure + activate; True if the node is active afterwards."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            settings = read_settings(self)
        except ValueError as err:
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        if not settings.checkpoint:
            self.get_logger().error("configure failed: parameter 'checkpoint' is empty; set it to a gausstr "
                                    "checkpoint (.pth), e.g. --ros-args -p checkpoint:=/path/model.pth")
            return TransitionCallbackReturn.FAILURE
        try:
            predictor = OccupancyPredictor.from_checkpoint(
                settings.checkpoint, settings.device, vocabulary=_vocabulary_choice(settings))
            predictor.warm_up()  # kernels loaded now, not on the first camera set
        except Exception as err:  # noqa: BLE001 -- any loading failure fails the transition, with its reason
            self.get_logger().error(f"configure failed: cannot load checkpoint {settings.checkpoint!r}: {err}")
            return TransitionCallbackReturn.FAILURE
        try:
            depth_source, why = resolve_depth_source(settings.depth_source, bool(predictor.config.data.depth_provider),
                                                     predictor.has_depth_head)
            predictor.model_depth = depth_source == "model"
        except ValueError as err:
            self.get_logger().error(f"configure failed: checkpoint {settings.checkpoint!r}: {err}")
            return TransitionCallbackReturn.FAILURE
        self.settings, self.predictor = dataclasses.replace(settings, depth_source=depth_source), predictor
        gpu = predictor.device.type == "cuda" and settings.gpu_preprocess
        self._decode_device = predictor.device if gpu else torch.device("cpu")
        self._reset_inputs()
        self._create_publishers()
        height, width = predictor.config.data.input_size
        self.get_logger().info(
            f"configured: {settings.checkpoint} on {predictor.device}, input {width}x{height}, "
            f"cameras {list(settings.cameras)}, vocabulary {predictor.vocabulary.name!r} "
            f"({len(predictor.vocabulary.classes)} classes, text prototypes: {predictor.prototypes_source}), "
            f"depth from {depth_source} ({why}), "
            f"decode and resize on {self._decode_device.type}")
        return TransitionCallbackReturn.SUCCESS

    def _create_publishers(self) -> None:
        """Lifecycle publishers (enabled by activation, silent while inactive)."""
        self._outputs = {key: self.create_lifecycle_publisher(t, f"~/{key}", OUTPUT_QOS)
                         for key, t in OUTPUT_TYPES.items()}
        self._diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._processing_pub = self.create_lifecycle_publisher(Float64, "~/debug/processing_time_ms", OUTPUT_QOS)
        self._latency_pub = self.create_lifecycle_publisher(Float64, "~/debug/pipeline_latency_ms", OUTPUT_QOS)
        self._lifecycle_publishers = [*self._outputs.values(), self._diag_pub, self._processing_pub,
                                      self._latency_pub]

    def _destroy_publishers(self) -> None:
        for pub in self._lifecycle_publishers:
            self.destroy_lifecycle_publisher(pub)
        self._lifecycle_publishers, self._outputs = [], {}

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        s = self.settings
        cameras = s.cameras
        depth_topics = s.depth_source == "topic"
        self._reset_inputs()
        # A camera fires at most once per slop (nuScenes: 83 ms period, 60 ms slop): this lower bound lets
        # the synchroniser emit a set as soon as it is complete instead of waiting for the next sweep.
        streams, slop_ns = len(cameras) * (2 if depth_topics else 1), int(s.sync_slop_s * 1e9)
        self._sync = ApproximateTimeSync(streams, self._on_synced_set, queue_size=s.queue_size,
                                         max_interval_ns=slop_ns, inter_message_lower_bounds_ns=[slop_ns] * streams)
        self._guard = StampGuard(streams, int(s.max_future_s * 1e9), int(s.time_jump_tolerance_s * 1e9))
        self._worker = LatestOnlyWorker(self._process, self._on_worker_error, name="gausstr_inference")
        image_type = CompressedImage if s.image_transport == "compressed" else Image
        subs = []
        for i, camera in enumerate(cameras):
            subs.append(self.create_subscription(
                image_type, f"~/input/{camera}/image", lambda m, i=i: self._on_stream(i, m), SENSOR_QOS))
            self._image_topics.append(subs[-1].topic_name)
            subs.append(self.create_subscription(
                CameraInfo, f"~/input/{camera}/camera_info", lambda m, i=i: self._on_camera_info(i, m), SENSOR_QOS))
            if depth_topics:
                k = len(cameras) + i
                subs.append(self.create_subscription(
                    Image, f"~/input/{camera}/depth", lambda m, k=k: self._on_stream(k, m), SENSOR_QOS))
        subs.append(self.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), TF_QOS))
        subs.append(self.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), TF_STATIC_QOS))
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._stream_subscriptions = subs
        self._activated_at = time.monotonic()
        self.get_logger().info(f"active: waiting for {len(cameras)} camera streams"
                               f"{' with depth' if depth_topics else ''}")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_streams()
        self.get_logger().info("deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop streaming, destroy the publishers and drop the model (GPU memory freed)."""
        self._stop_streams()
        self._destroy_publishers()
        self.predictor = None
        _free_gpu_memory()

    def _stop_streams(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        for sub in self._stream_subscriptions:
            self.destroy_subscription(sub)
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        self._stream_subscriptions, self._image_topics, self._diag_timer = [], [], None
        self._sync = self._guard = None
        _free_gpu_memory()

    def _reset_inputs(self) -> None:
        cameras = self.settings.cameras
        self._tf = TransformBuffer(cache_time_s=self.settings.tf_cache_time_s)
        self._intrinsics: list[CameraIntrinsics | None] = [None] * len(cameras)
        self._health = InputHealth(cameras)
        self._marker_state = MarkerPublisherState()
        self._waiting_for: str | None = None  # what calibration is missing, while deferred
        self._waiting_since: float | None = None  # monotonic s
        self._started = False
        self._pending: CameraMessages | None = None  # newest set waiting for calibration
        self._timing_sums: dict[str, float] = {}  # stage -> summed ms over the processed sets
        self._timed_sets = 0
        self._time_resets = 0
        self._last_reset: float | None = None  # monotonic s
        self._activated_at = time.monotonic()

    # --- input callbacks (executor thread) ---

    def _on_stream(self, index: int, msg: Image | CompressedImage) -> None:
        cameras = self.settings.cameras
        if index < len(cameras):
            self._health.received(cameras[index])
        if self._sync is None:
            return
        now_ns = self._check_clock()
        self._feed(index, stamp_to_ns(msg.header.stamp), (msg, time.monotonic()), now_ns)

    def _check_clock(self) -> int:
        """The node's clock now (ns); resets the time-dependent state when it jumped back."""
        now_ns = self.get_clock().now().nanoseconds
        if self._guard.clock(now_ns):
            self._reset_time(f"the clock jumped back to {now_ns * 1e-9:.3f} s", now_ns)
        return now_ns

    def _feed(self, index: int, stamp_ns: int, item: tuple[Any, float], now_ns: int) -> None:
        """One image or depth message through the stamp guard into the synchroniser (executor thread)."""
        cameras, sync = self.settings.cameras, self._sync
        camera, kind = cameras[index % len(cameras)], ("image" if index < len(cameras) else "depth")
        check = self._guard.check(index, stamp_ns, now_ns, item)
        if check.verdict is Verdict.FUTURE:
            self._problem("future stamp", camera, f"{kind} stamp {stamp_ns * 1e-9:.3f} s is "
                          f"{(stamp_ns - now_ns) * 1e-9:.1f} s ahead of the node's clock (more than max_future_s = "
                          f"{self.settings.max_future_s} s): dropped")
            return
        if check.verdict is Verdict.JUMP:
            self._reset_time(f"every camera's stamps jumped back (to {stamp_ns * 1e-9:.3f} s)", now_ns)
            return
        if check.verdict is Verdict.HELD:
            return
        if check.discarded is not None:
            self._problem("out-of-order stamp", camera, f"{kind} stamp {check.discarded[0] * 1e-9:.3f} s jumped back "
                          "on this camera alone (the others did not): dropped")
        before = sync.stats.out_of_order[index]
        sync.add(index, stamp_ns, item)
        if sync.stats.out_of_order[index] > before:
            self._problem("out-of-order stamp", camera, f"{kind} stamp {stamp_ns * 1e-9:.3f} s "
                          "is not newer than the previous one: dropped")

    def _reset_time(self, reason: str, now_ns: int) -> None:
        """Time went back: forget the synchroniser's queues, the dynamic transforms and the waiting set, then
        replay the messages the guard held (executor thread)."""
        held = self._guard.take_held()
        self._sync.reset(counters=False)
        self._tf.clear_dynamic()
        self._worker.discard()
        with self._calibration_lock:
            self._pending = None
        self._time_resets += 1
        now = time.monotonic()
        if self._last_reset is None or now - self._last_reset > RESET_QUIET_S:
            self.get_logger().warning(f"time jumped back: {reason}; reset the camera synchroniser, the dynamic "
                                      "transforms and the waiting camera set")
        self._last_reset = now
        for index, stamp_ns, item in held:
            self._feed(index, stamp_ns, item, now_ns)

    def _on_camera_info(self, index: int, msg: CameraInfo) -> None:
        camera = self.settings.cameras[index]
        try:
            info = parse_camera_info(msg)
        except ImageDecodeError as err:
            kept = " (keeping the previous calibration)" if self._intrinsics[index] is not None else ""
            self._problem("camera_info", camera, f"{err}{kept}")
            return
        with self._calibration_lock:
            self._intrinsics[index] = info
        self._submit_pending()

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        if self._guard is not None:
            self._check_clock()
        try:
            self._tf.add_message(msg, static=static)
        except ValueError as err:
            self._problem("tf", "/tf_static" if static else "/tf", str(err))
            return
        self._submit_pending()

    def _on_synced_set(self, synced: SyncedMessages) -> None:
        n = len(self.settings.cameras)
        messages = [m for m, _ in synced.messages]
        camera_messages = CameraMessages(synced.stamps_ns[:n], tuple(messages[:n]),
                                         tuple(messages[n:]) if len(messages) > n else None,
                                         min(t for _, t in synced.messages))
        with self._calibration_lock:
            self._pending = camera_messages
        self._submit_pending()

    def _submit_pending(self) -> None:
        """Hand the newest set to the worker once the calibration is complete; until then the set is
        kept (the newest one only) and retried whenever a CameraInfo or transform arrives."""
        with self._calibration_lock:
            camera_messages = self._pending
            if camera_messages is None:
                return
            missing = self._missing_calibration(camera_messages.images)
            if missing:
                summary = "; ".join(f"{camera}: {message}" for _, camera, message, _ in missing)
                now = time.monotonic()
                if self._waiting_since is None:
                    self._waiting_since = now
                    if not self._started:
                        self.get_logger().info(f"start deferred until the calibration is complete ({summary})")
                for kind, camera, message, not_yet in missing:  # "not there yet": warned after the grace period
                    self._problem(kind, camera, message,
                                  log=not not_yet or now - self._waiting_since > CALIBRATION_GRACE_S)
                self._waiting_for = summary
                return
            if self._waiting_for is not None or not self._started:
                self.get_logger().info("calibration complete: processing camera sets")
            self._waiting_for, self._waiting_since, self._started, self._pending = None, None, True, None
            intrinsics = list(self._intrinsics)
        worker = self._worker
        if worker is not None:
            worker.submit((camera_messages, intrinsics))

    def _missing_calibration(self, images: tuple[Image | CompressedImage, ...]) -> list[tuple[str, str, str, bool]]:
        """(kind, camera, message, not there yet) of every missing CameraInfo and camera transform (under the
        lock); transforms that exist but fail (loop, extrapolation) are not 'not there yet'."""
        base = self.settings.base_frame
        missing = []
        for camera, info, msg in zip(self.settings.cameras, self._intrinsics, images):
            if info is None:
                missing.append(("camera_info", camera, "no valid CameraInfo received yet", True))
            frame = msg.header.frame_id
            if not frame:
                missing.append(("tf", camera, "image header.frame_id is empty: no transform can be looked up", False))
                continue
            try:
                self._tf.lookup(base, frame, stamp_to_ns(msg.header.stamp))
            except TransformError as err:
                not_yet = err.kind == "missing frame"
                missing.append(("tf", camera, f"no transform {base} <- {frame}{' yet' if not_yet else ''} ({err})",
                                not_yet))
        return missing

    # --- inference (worker thread) ---

    def _process(self, item: tuple[CameraMessages, list[CameraIntrinsics]]) -> None:
        camera_messages, intrinsics = item
        settings, predictor = self.settings, self.predictor
        start = time.perf_counter()
        cam2ego = camera_to_ego(self._tf, settings.base_frame, settings.cameras, camera_messages.images)
        # Depth providers see the original images; otherwise the network input is made in the decoding threads.
        decode_start = time.perf_counter()
        views = decode_views(camera_messages, settings.cameras, intrinsics, cam2ego,
                             tuple(predictor.config.data.input_size), self._decode_device,
                             max_pixels=settings.max_image_pixels, network_input=settings.depth_source != "provider")
        decoded = time.perf_counter()
        prediction = predictor.predict(views)
        built = time.perf_counter()
        header = make_header(settings.base_frame, camera_messages.stamps_ns[0])
        outputs = build_outputs(prediction, header, output_options(settings), self._marker_state)
        published = time.perf_counter()
        for key, msg in outputs.items():
            self._outputs[key].publish(msg)
        end = time.perf_counter()
        processing_ms = (end - start) * 1e3
        pipeline_ms = (time.monotonic() - camera_messages.arrival_s) * 1e3
        self._processing_pub.publish(Float64(data=processing_ms))
        self._latency_pub.publish(Float64(data=pipeline_ms))
        self._health.output(pipeline_ms, processing_ms)
        timings = {"decode": (decoded - decode_start) * 1e3, **prediction.timings,
                   "messages": (published - built) * 1e3, "publish": (end - published) * 1e3}
        for stage, ms in timings.items():
            self._timing_sums[stage] = self._timing_sums.get(stage, 0.0) + ms
        self._timed_sets += 1
        self._queries.on_prediction(predictor, prediction, header, settings.standing_queries, settings.max_points)

    def _on_worker_error(self, item: Any, err: BaseException) -> None:
        if isinstance(err, InputError):
            self._problem(err.kind, err.source, err.message)
        else:
            detail = "".join(traceback.format_exception_only(type(err), err)).strip()
            if self._health.problem("inference", "predictor", detail):
                self.get_logger().error(f"inference failed (set skipped): {detail}\n{traceback.format_exc()}")

    # --- diagnostics, problems, parameters ---

    def _problem(self, kind: str, source: str, message: str, log: bool = True) -> None:
        if self._health.problem(kind, source, message, loggable=log):
            self.get_logger().warning(f"{kind} ({source}): {message}")

    def _publish_diagnostics(self) -> None:
        stale = self._health.stale_cameras()
        if self._started and stale and len(stale) < len(self.settings.cameras):
            for camera in stale:
                self._problem("stale camera", camera, "no image for over 1 s while other cameras publish: "
                              "no camera set can be formed")
        never = [i for i, camera in enumerate(self.settings.cameras) if not self._health.ever_received(camera)]
        if never and time.monotonic() - self._activated_at > CAMERA_GRACE_S:
            for i in never:
                topic = self._image_topics[i]
                self._problem("waiting for camera", self.settings.cameras[i],
                              f"no image on {topic} yet ({self.count_publishers(topic)} publishers; check the "
                              "'cameras' parameter and the topic remapping)")
        sync_stats, worker_stats = self._sync.stats, self._worker.stats
        sums, sets = dict(self._timing_sums), max(self._timed_sets, 1)  # snapshot (the worker adds to them)
        waiting_cameras = [self.settings.cameras[i] for i in never] or (stale if self._started else [])
        pipeline = {
            "state": "running" if self._started else "waiting for calibration",
            "camera sets": sync_stats.sets,
            "sets processed": worker_stats.processed - worker_stats.failed,
            "sets dropped (model busy)": worker_stats.dropped,
            "sets failed": worker_stats.failed,
            "sync overflow drops": sum(sync_stats.dropped_overflow),
            "out-of-order drops": sum(sync_stats.out_of_order),
            "time resets": self._time_resets,
            **{f"{stage} ms (mean)": f"{ms / sets:.1f}" for stage, ms in sums.items()},
        }
        waiting = self._waiting_for
        problems = [f"waiting for camera {camera}" for camera in waiting_cameras]
        if waiting:
            problems.append(f"waiting for calibration: {waiting}")
        elif not self._started and not problems:
            problems.append("waiting for the first complete camera set")
        problem = "; ".join(problems)
        self._diag_pub.publish(self._health.diagnostics(self.get_name(), self.get_clock().now().to_msg(), pipeline,
                                                        problem))

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            reason = check_parameter(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if self.settings is None:
            return SetParametersResult(successful=True)
        changes = {p.name: setting_value(p.name, p.value) for p in params if p.name in LIVE_PARAMETERS}
        settings = dataclasses.replace(self.settings, **changes)
        problems = settings_problems(settings)
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        vocab_changed = {"vocabulary_file", "vocabulary_prompts"} & set(changes)
        if vocab_changed and self.predictor is not None:
            try:
                self._set_vocabulary(settings)
            except Exception as err:  # noqa: BLE001 -- rejected with the reason, the old vocabulary stays
                return SetParametersResult(successful=False, reason=f"vocabulary not changed: {err}")
        later = sorted({p.name for p in params} - LIVE_PARAMETERS - {"use_sim_time"})
        if later:
            self.get_logger().info(f"parameters {later} take effect at the next configure")
        self.settings = settings
        return SetParametersResult(successful=True)

    def _set_vocabulary(self, settings: NodeSettings) -> None:
        predictor = self.predictor
        choice = _vocabulary_choice(settings)
        if choice is None:  # the checkpoint's own vocabulary and prototypes (e.g. a converted authors' checkpoint)
            predictor.reset_vocabulary()
        else:
            predictor.set_vocabulary(choice)
        vocabulary = predictor.vocabulary
        self._marker_state = MarkerPublisherState(previous_count=self._marker_state.previous_count)
        self.get_logger().info(f"vocabulary now {vocabulary.name!r}: {vocabulary.class_names} "
                               f"(free: {vocabulary.free_class}; text prototypes: {predictor.prototypes_source})")


def _vocabulary_choice(settings: NodeSettings) -> Vocabulary | str | None:
    """The vocabulary the parameters ask for: inline prompts, else a file, else None (the checkpoint's)."""
    if settings.vocabulary_prompts.strip():
        return parse_vocabulary_prompts(settings.vocabulary_prompts)
    return settings.vocabulary_file or None


def _free_gpu_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> NoReturn:
    """`python -m gausstr_ros.node --ros-args -p checkpoint:=model.pth -r ...` (the console script is
    gausstr_ros.node_entry, which catches signals before importing this module)."""
    with StopSignals() as stop:
        run(argv if argv is not None else sys.argv, stop)


def run(argv: list[str], stop: StopSignals) -> NoReturn:
    """Run the node until `stop` (SIGINT / SIGTERM) in any lifecycle state, tear it down in order and end
    the process with exit code 0 (gausstr_ros.shutdown)."""
    init_ros(argv)
    node = OccupancyNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.get_parameter("autostart").value and not stop.is_set() and not node.autostart():
            node.get_logger().error("autostart did not reach the active state; the node stays up (lifecycle "
                                    "services: configure it again after fixing the parameters)")
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        if stop.received:
            node.get_logger().info(f"{stop.received[0]}: shutting down")
        node.release()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    exit_process(0)


if __name__ == "__main__":
    main()
