"""gausstr_core.retrieval.average_precision (benchmarks/retrieval_synthetic.py) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gausstr_core.retrieval import average_precision


def test_average_precision_step_integral() -> None:
    positives = np.array([True, False, True, False])
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), positives) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.1, 0.9, 0.2, 0.8]), positives) == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert average_precision(np.array([0.9, 0.1, 0.8, 0.2]), positives) == 1.0


def test_average_precision_ties_count_as_one_threshold() -> None:
    # All four tied: one threshold, precision 2/4 at recall 1 (scikit-learn's average_precision_score).
    assert average_precision(np.zeros(4), np.array([True, False, True, False])) == pytest.approx(0.5)
    tied = average_precision(np.array([0.9, 0.5, 0.5, 0.1]), np.array([True, True, False, False]))
    assert tied == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    assert math.isnan(average_precision(np.ones(3), np.zeros(3, dtype=bool)))
