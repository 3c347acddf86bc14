"""Polyline and object-polygon fusion: grouping across raters, fused outlines, rater scores."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.consensus import fuse_polygons, fuse_polylines, resample_polyline
from crowdseg.consensus.lines import line_distance
from shapely.geometry import Polygon

pytestmark = pytest.mark.unit


def circle(cx: float, cy: float, radius: float, vertices: int = 48) -> np.ndarray:
    angle = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    return np.column_stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)])


TRUE_LINES = [
    np.column_stack([np.linspace(20, 180, 30), 40 + 10 * np.sin(np.linspace(0, 4, 30))]),
    np.array([[100.0, 90.0], [120.0, 140.0], [180.0, 170.0]]),
    np.array([[20.0, 180.0], [60.0, 120.0]]),
]
TRUE_DISCS = [(50.0, 50.0, 18.0), (130.0, 60.0, 10.0), (90.0, 140.0, 25.0)]


def line_crowd(seed: int, raters: int = 8, bad: int = 2) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    crowd = []
    for r in range(raters):
        if r >= raters - bad:  # scribbles somewhere, finds one real line badly
            crowd.append([rng.uniform(0, 200, (4, 2)), TRUE_LINES[0] + rng.normal(0, 1.5, TRUE_LINES[0].shape)])
            continue
        lines = []
        for line in TRUE_LINES:
            if rng.random() < 0.9:
                dense = resample_polyline(line, int(rng.integers(8, 40)))  # raters click at their own pace
                drawn = dense + rng.normal(0, 1.0, dense.shape)
                lines.append(drawn[::-1] if rng.random() < 0.5 else drawn)
        crowd.append(lines)
    return crowd


def test_resample_is_uniform_along_the_arc_and_keeps_the_ends() -> None:
    line = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    samples = resample_polyline(line, 5)
    np.testing.assert_allclose(samples, [[0, 0], [5, 0], [10, 0], [10, 5], [10, 10]])
    np.testing.assert_allclose(resample_polyline(np.array([[3.0, 4.0], [3.0, 4.0]]), 3), [[3, 4]] * 3)


def test_line_distance_ignores_the_drawing_direction() -> None:
    line = resample_polyline(TRUE_LINES[0])
    assert line_distance(line[::-1], line) == pytest.approx(0.0)
    assert line_distance(line + np.array([0.0, 3.0]), line) == pytest.approx(3.0)


@pytest.mark.parametrize("seed", range(3))
def test_polylines_fuse_into_the_true_lines_and_bad_raters_rank_last(seed: int) -> None:
    crowd = line_crowd(seed)
    fusion = fuse_polylines(crowd, radius=8.0)
    assert len(fusion.lines) == len(TRUE_LINES)
    for fused in fusion.lines:
        assert min(line_distance(fused, resample_polyline(t)) for t in TRUE_LINES) < 1.5
    quality = [score.quality for score in fusion.raters]
    assert set(np.argsort(quality)[:2].tolist()) == {6, 7}
    assert all(score.precision == 1.0 for score in fusion.raters[:6])


def test_lines_of_one_rater_never_share_a_group() -> None:
    line = TRUE_LINES[2]
    fusion = fuse_polylines([[line, line + 1.0], [line + 0.5]], radius=5.0, min_raters=2)
    assert fusion.support.tolist() == [2]
    assert fusion.raters[0].fp == 1


def polygon_crowd(seed: int, raters: int = 7, bad: int = 2) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    crowd = []
    for r in range(raters):
        shapes = []
        for cx, cy, radius in TRUE_DISCS:
            if r >= raters - bad:
                if rng.random() < 0.5:  # sloppy: finds half, much too small and off centre
                    shapes.append(circle(cx + rng.normal(0, 4), cy + rng.normal(0, 4), 0.6 * radius, 12))
            else:
                ring = circle(cx, cy, radius, int(rng.integers(16, 40)))
                shapes.append(ring + rng.normal(0, 0.7, ring.shape))
        if r >= raters - bad:
            shapes.append(circle(*rng.uniform(20, 180, 2), 8.0))
        crowd.append(shapes)
    return crowd


@pytest.mark.parametrize("seed", range(3))
def test_polygons_fuse_into_the_true_objects(seed: int) -> None:
    crowd = polygon_crowd(seed)
    fusion = fuse_polygons(crowd)
    assert len(fusion.polygons) == len(TRUE_DISCS)
    for ring in fusion.polygons:
        fused = Polygon(ring)
        truth = max((Polygon(circle(*disc, 96)) for disc in TRUE_DISCS), key=lambda t: t.intersection(fused).area)
        assert fused.intersection(truth).area / fused.union(truth).area > 0.9
        assert len(ring) < 96  # simplified
    quality = [score.quality for score in fusion.raters]
    assert set(np.argsort(quality)[:2].tolist()) == {5, 6}
    assert np.all(fusion.sensitivity[:5] > 0.9)


def test_identical_polygons_come_back_as_themselves() -> None:
    square = np.array([[10.0, 10.0], [40.0, 10.0], [40.0, 30.0], [10.0, 30.0]])
    fusion = fuse_polygons([[square], [square], [square]], tolerance=0.5)
    fused = Polygon(fusion.polygons[0])
    assert fused.symmetric_difference(Polygon(square)).area < 0.05 * Polygon(square).area
    np.testing.assert_allclose(fusion.sensitivity, 1.0)
    assert all(score.quality == 1.0 for score in fusion.raters)


def test_polygons_that_do_not_overlap_enough_stay_apart() -> None:
    a, b = circle(20, 20, 10), circle(36, 20, 10)  # IoU about 0.1
    fusion = fuse_polygons([[a], [b]], min_raters=1)
    assert len(fusion.polygons) == 2
    assert fusion.support.tolist() == [1, 1]


def test_no_shapes_no_consensus() -> None:
    assert fuse_polygons([[], []]).polygons == []
    assert fuse_polylines([[], []], radius=3.0).lines == []
