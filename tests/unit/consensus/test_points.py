"""Point clustering against a known truth, and point-set metrics."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.consensus import cluster_points, crowd_quality, point_precision_recall

pytestmark = pytest.mark.unit


def objects(rng: np.random.Generator, count: int = 40, size: float = 512.0, spacing: float = 40.0) -> np.ndarray:
    """``count`` object centres on a jittered grid, at least ``spacing`` apart."""
    cells = int(np.ceil(np.sqrt(count)))
    grid = np.array([(i, j) for i in range(cells) for j in range(cells)], np.float64)[:count]
    pitch = size / cells
    return (grid + 0.5) * pitch + rng.uniform(-1, 1, grid.shape) * (pitch - spacing) / 2


def clicks(
    truth: np.ndarray, rng: np.random.Generator, *, found: float, jitter: float, false_clicks: int
) -> np.ndarray:
    hit = truth[rng.random(len(truth)) < found]
    hit = hit + rng.normal(0, jitter, hit.shape)
    stray = rng.uniform(0, 512, (false_clicks, 2))
    return np.concatenate([hit, stray])[rng.permutation(len(hit) + false_clicks)]


def crowd(seed: int, raters: int = 10, bad: int = 2) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    truth = objects(rng)
    good = [
        clicks(truth, rng, found=0.9, jitter=2.0, false_clicks=int(rng.integers(0, 3))) for _ in range(raters - bad)
    ]
    sloppy = [clicks(truth, rng, found=0.45, jitter=6.0, false_clicks=15) for _ in range(bad)]
    return truth, good + sloppy


@pytest.mark.parametrize("seed", range(5))
def test_ten_raters_a_fifth_bad_recover_the_objects_and_rank_the_bad_last(seed: int) -> None:
    truth, points = crowd(seed)
    clustering = cluster_points(points, radius=12.0)
    precision, recall, rmse = point_precision_recall(clustering.centres, truth, radius=6.0)
    assert precision >= 0.98
    assert recall >= 0.95
    assert rmse < 2.0
    quality = [score.quality for score in clustering.raters]
    assert set(np.argsort(quality)[:2].tolist()) == {8, 9}


def test_rater_scores_count_hits_misses_and_strays() -> None:
    centres = np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 10.0]])
    perfect = centres.copy()
    partial = np.array([[11.0, 10.0], [200.0, 200.0]])  # one hit, one stray, two misses
    clustering = cluster_points([perfect, perfect + 0.5, partial], radius=5.0, min_raters=2)
    assert len(clustering.centres) == 3
    score = clustering.raters[2]
    assert (score.tp, score.fp, score.fn) == (1, 1, 2)
    assert score.precision == 0.5 and score.recall == pytest.approx(1 / 3)
    assert score.quality == pytest.approx(crowd_quality(1, 1, 2)) == pytest.approx(1 - 3 / 2)
    assert clustering.raters[0].quality == 1.0


def test_a_rater_adds_at_most_one_click_per_cluster() -> None:
    twice = np.array([[10.0, 10.0], [11.0, 10.0]])
    clustering = cluster_points([twice, np.array([[10.5, 10.0]])], radius=5.0, min_raters=2)
    assert clustering.support.tolist() == [2]
    assert clustering.raters[0].fp == 1


def test_point_metrics_match_one_to_one_within_the_radius() -> None:
    truth = np.array([[0.0, 0.0], [10.0, 0.0]])
    predicted = np.array([[1.0, 0.0], [1.5, 0.0], [30.0, 0.0]])
    precision, recall, rmse = point_precision_recall(predicted, truth, radius=3.0)
    assert precision == pytest.approx(1 / 3)
    assert recall == pytest.approx(1 / 2)
    assert rmse == pytest.approx(1.0)


def test_point_metrics_of_empty_sets() -> None:
    assert point_precision_recall(np.empty((0, 2)), np.empty((0, 2)), 1.0)[:2] == (1.0, 1.0)
    precision, recall, rmse = point_precision_recall(np.empty((0, 2)), np.ones((2, 2)), 1.0)
    assert (precision, recall) == (1.0, 0.0) and np.isnan(rmse)
