"""The occupancy node's open-vocabulary queries: service ~/query and the standing queries.

~/query (gausstr_ros/srv/Query): prompts in; per prompt the top clusters and a PointCloud2 of the
voxels whose relevance is above the threshold (fields x, y, z, relevance), answered from the
latest prediction with OccupancyPredictor.query (gausstr_core.query; the network does not run).
Statuses instead of exceptions: NOT_ACTIVE (lifecycle node not active), NO_PREDICTION (no camera
set processed yet), BAD_REQUEST (no prompts, an empty prompt, a threshold outside (0, 1)),
PROMPT_ERROR (some prompt could not be encoded, e.g. text-encoder weights absent offline; its
result says why, the other prompts are answered), FAILED (anything else, with the error).
Standing queries (parameter standing_queries, prompts separated by ';') are answered with every
prediction at the default threshold: ~/query/relevance (PointCloud2 x, y, z, relevance, prompt
index; RViz colours it by `relevance`) and ~/query/clusters (gausstr_ros/QueryResults).
Answers are kept per prediction, so asking for a standing prompt costs no recomputation.
"""

from __future__ import annotations

import math
import threading
import traceback
from dataclasses import dataclass, field

from rclpy.lifecycle import LifecycleNode, ManagedEntity, State, TransitionCallbackReturn
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from gausstr_core.predict import OccupancyPredictor, Prediction
from gausstr_core.query import DEFAULT_MAX_CLUSTERS, DEFAULT_THRESHOLD, PromptError, QueryAnswer
from gausstr_ros.msg import QueryResults
from gausstr_ros.qos import OUTPUT_QOS
from gausstr_ros.query_msgs import prompt_error_msg, query_result_msg, standing_msgs
from gausstr_ros.srv import Query

MAX_KEPT_ANSWERS = 32  # answers kept for the latest prediction (each holds a relevance grid)


def parse_standing_queries(text: str) -> list[str]:
    """'car; fire hydrant;' -> ['car', 'fire hydrant'] (empty entries ignored, order kept, no repeats)."""
    return list(dict.fromkeys(p.strip() for p in text.split(";") if p.strip()))


@dataclass
class _Latest:
    """The newest prediction with what answering it needs; answers: (prompt, threshold, clusters) -> answer."""

    predictor: OccupancyPredictor
    prediction: Prediction
    header: Header
    max_points: int
    answers: dict[tuple[str, float, int], QueryAnswer] = field(default_factory=dict)


class QueryService(ManagedEntity):
    """~/query, ~/query/relevance and ~/query/clusters of `node` (module docstring).

    A lifecycle-managed entity of the node: answers only while the node is active; the kept
    prediction is dropped on deactivate. The node calls on_prediction after each prediction.
    """

    def __init__(self, node: LifecycleNode) -> None:
        self._node = node
        self._active = False
        self._lock = threading.Lock()  # guards _latest
        self._compute = threading.Lock()  # one query computation at a time (worker thread vs service)
        self._latest: _Latest | None = None
        self._warned: set[str] = set()
        self._service = node.create_service(Query, "~/query", self._on_request)
        self._relevance_pub = node.create_publisher(PointCloud2, "~/query/relevance", OUTPUT_QOS)
        self._clusters_pub = node.create_publisher(QueryResults, "~/query/clusters", OUTPUT_QOS)
        node.add_managed_entity(self)

    # --- lifecycle (called by the node's default transition handlers) ---

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._active = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        with self._lock:
            self._latest = None
        return TransitionCallbackReturn.SUCCESS

    # --- predictions (inference worker thread) ---

    def on_prediction(
        self, predictor: OccupancyPredictor, prediction: Prediction, header: Header, standing_queries: str,
        max_points: int,
    ) -> None:
        """Keep `prediction` for the service and answer the standing queries on it (published)."""
        latest = _Latest(predictor, prediction, header, max_points)
        with self._lock:
            self._latest = latest
        prompts = parse_standing_queries(standing_queries)
        if not prompts:
            return
        answers, errors = self._answer(latest, prompts, DEFAULT_THRESHOLD, DEFAULT_MAX_CLUSTERS)
        for prompt, message in errors.items():
            if prompt not in self._warned:  # once per prompt: it fails the same way every prediction
                self._warned.add(prompt)
                self._node.get_logger().warning(f"standing query {message}")
        clusters, cloud = standing_msgs(prompts, answers, errors, prediction.grid, header, DEFAULT_THRESHOLD,
                                        max_points)
        self._clusters_pub.publish(clusters)
        self._relevance_pub.publish(cloud)

    def _answer(
        self, latest: _Latest, prompts: list[str], threshold: float, max_clusters: int
    ) -> tuple[dict[str, QueryAnswer], dict[str, str]]:
        """Answers by prompt (kept ones reused) and error messages by prompt (PromptError)."""
        answers, errors = {}, {}
        with self._compute:
            for prompt in dict.fromkeys(prompts):
                key = (prompt, threshold, max_clusters)
                if key not in latest.answers:
                    try:
                        (answer,) = latest.predictor.query(latest.prediction, [prompt], threshold, max_clusters)
                    except PromptError as err:
                        errors[prompt] = str(err)
                        continue
                    if len(latest.answers) >= MAX_KEPT_ANSWERS:
                        latest.answers.pop(next(iter(latest.answers)))
                    latest.answers[key] = answer
                answers[prompt] = latest.answers[key]
        return answers, errors

    # --- service (executor thread) ---

    def _on_request(self, request: Query.Request, response: Query.Response) -> Query.Response:
        try:
            self._respond(request, response)
        except Exception as err:  # noqa: BLE001 -- a failed query is an answer, never a dead callback
            response.status, response.message, response.results = Query.Response.FAILED, f"query failed: {err}", []
            self._node.get_logger().error(f"~/query failed: {err}\n{traceback.format_exc()}")
        return response

    def _respond(self, request: Query.Request, response: Query.Response) -> None:
        status, message = self._check(request)
        if status != Query.Response.OK:
            response.status, response.message = status, message
            return
        with self._lock:
            latest = self._latest
        if latest is None:
            response.status = Query.Response.NO_PREDICTION
            response.message = "no prediction yet: the node has not processed a camera set since it was activated"
            return
        threshold = float(request.threshold) or DEFAULT_THRESHOLD
        max_clusters = int(request.max_clusters) or DEFAULT_MAX_CLUSTERS
        prompts = [p.strip() for p in request.prompts]
        answers, errors = self._answer(latest, prompts, threshold, max_clusters)
        grid = latest.prediction.grid
        response.header = latest.header
        response.results = [
            prompt_error_msg(p, errors[p]) if p in errors
            else query_result_msg(answers[p], grid, latest.header, latest.max_points)
            for p in prompts
        ]
        if errors:
            response.status = Query.Response.PROMPT_ERROR
            response.message = f"{len(errors)} of {len(prompts)} prompts not answered: " + "; ".join(errors.values())
        else:
            response.status, response.message = Query.Response.OK, f"{len(prompts)} prompts answered"

    def _check(self, request: Query.Request) -> tuple[int, str]:
        if not self._active:
            return Query.Response.NOT_ACTIVE, ("the node is not active: configure and activate it (lifecycle) "
                                               "before querying")
        if not request.prompts:
            return Query.Response.BAD_REQUEST, "no prompts: give at least one"
        empty = [i for i, p in enumerate(request.prompts) if not p.strip()]
        if empty:
            return Query.Response.BAD_REQUEST, f"prompts {empty} are empty"
        threshold = float(request.threshold)
        if threshold != 0.0 and not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
            return Query.Response.BAD_REQUEST, f"threshold {threshold} must be in (0, 1), or 0 for the default"
        return Query.Response.OK, ""

