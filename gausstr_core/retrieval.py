"""Retrieval metrics: how well a score ranks the items that are relevant."""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the step-wise precision-recall curve of `scores` (N,) against bool `positives` (N,):
    sum over distinct score thresholds (descending) of (recall gain) x precision. NaN without positives."""
    total = int(positives.sum())
    if total == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], positives[order]
    true_pos = np.cumsum(hits)
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last index of each tied group
    precision = true_pos[last] / (last + 1)
    recall = true_pos[last] / total
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
