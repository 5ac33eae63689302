"""Query answers (gausstr_core.query.QueryAnswer) -> ROS messages: QueryResult, QueryResults, PointCloud2.

Clouds carry voxel centres (header frame, m) and their relevance to a prompt in [0, 1]:
fields x, y, z, relevance (float32) and, on the standing queries' ~/query/relevance, prompt
(uint32 index into the standing prompts). Capped at max_points, nearest to the ego kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Point, Vector3
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from gausstr_core.grid import VoxelGrid
from gausstr_core.query import QueryAnswer
from gausstr_ros.msg import QueryCluster, QueryResult, QueryResults

_XYZ = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("relevance", "<f4")]
RELEVANCE_DTYPE = np.dtype(_XYZ)  # 16 bytes per point: the service's clouds
STANDING_DTYPE = np.dtype([*_XYZ, ("prompt", "<u4")])  # 20 bytes per point: ~/query/relevance
_FIELD_TYPES = {"<f4": PointField.FLOAT32, "<u4": PointField.UINT32}


def relevance_cloud(
    centres: np.ndarray, relevance: np.ndarray, header: Header, prompt_index: np.ndarray | None = None
) -> PointCloud2:
    """PointCloud2 of points centres (M, 3) m with relevance (M,) and, if given, prompt_index (M,)."""
    dtype = RELEVANCE_DTYPE if prompt_index is None else STANDING_DTYPE
    points = np.empty(len(centres), dtype=dtype)
    points["x"], points["y"], points["z"] = (centres[:, a] for a in range(3))
    points["relevance"] = relevance
    if prompt_index is not None:
        points["prompt"] = prompt_index
    fields = [PointField(name=name, offset=dtype.fields[name][1], datatype=_FIELD_TYPES[dtype.fields[name][0].str],
                         count=1) for name in dtype.names]
    return PointCloud2(header=header, height=1, width=len(points), fields=fields, is_bigendian=False,
                       point_step=dtype.itemsize, row_step=dtype.itemsize * len(points), is_dense=True,
                       data=points.tobytes())


def query_result_msg(
    answer: QueryAnswer, grid: VoxelGrid, header: Header | None = None, max_points: int = 0
) -> QueryResult:
    """QueryResult (status OK) with the answer's clusters; with a header, also its relevant voxels as
    a cloud of at most max_points (nearest first)."""
    msg = QueryResult(prompt=answer.prompt, status=QueryResult.OK, background=list(answer.background),
                      max_relevance=answer.max_relevance)
    msg.clusters = [
        QueryCluster(centroid=Point(x=c.centroid[0], y=c.centroid[1], z=c.centroid[2]),
                     extent=Vector3(x=c.extent[0], y=c.extent[1], z=c.extent[2]), score=c.score,
                     max_relevance=c.max_relevance, voxel_count=c.voxel_count)
        for c in answer.clusters
    ]
    if header is not None:
        centres, relevance = answer.relevant_voxels(grid)
        msg.points = relevance_cloud(centres[:max_points], relevance[:max_points], header)
    return msg


def prompt_error_msg(prompt: str, message: str) -> QueryResult:
    """QueryResult with status PROMPT_ERROR for a prompt that could not be answered."""
    return QueryResult(prompt=prompt, status=QueryResult.PROMPT_ERROR, message=message)


def standing_msgs(
    prompts: Sequence[str], answers: dict[str, QueryAnswer], errors: dict[str, str], grid: VoxelGrid, header: Header,
    threshold: float, max_points: int,
) -> tuple[QueryResults, PointCloud2]:
    """The standing queries' ~/query/clusters (QueryResults, no clouds inside) and ~/query/relevance
    (every prompt's relevant voxels with its index; at most max_points, nearest first)."""
    results, clouds = [], []
    for index, prompt in enumerate(prompts):
        if prompt in errors:
            results.append(prompt_error_msg(prompt, errors[prompt]))
            continue
        answer = answers[prompt]
        results.append(query_result_msg(answer, grid))
        centres, relevance = answer.relevant_voxels(grid)
        clouds.append((centres, relevance, np.full(len(relevance), index, dtype=np.uint32)))
    if clouds:
        centres, relevance, index = (np.concatenate(part) for part in zip(*clouds))
    else:
        centres, relevance, index = np.zeros((0, 3), np.float32), np.zeros(0, np.float32), np.zeros(0, np.uint32)
    if len(relevance) > max_points:
        keep = np.sort(np.argpartition((centres * centres).sum(1), max_points - 1)[:max_points]) if max_points else []
        centres, relevance, index = centres[keep], relevance[keep], index[keep]
    return (QueryResults(header=header, threshold=threshold, results=results),
            relevance_cloud(centres, relevance, header, index))
