"""Running per-rater performance across a task's images, and the consensus service's use of the engine."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.consensus import Counts, PerformanceTracker, cluster_points, object_counts, staple, staple_counts
from crowdseg.domain import Consensus, Image, RaterScore, Shape, Submission, Task, Tool
from crowdseg.services.consensus import handlers

from tests.unit.consensus.crowds import blob_truth, flip_crowd

pytestmark = pytest.mark.unit


def test_staple_counts_reproduce_the_rates() -> None:
    rng = np.random.default_rng(1)
    result = staple(flip_crowd(blob_truth((40, 40), rng), [0.05, 0.2, 0.3], rng))
    tracker = PerformanceTracker()
    tracker.add_image(["a", "b", "c"], staple_counts(result))
    for rater, p, q in zip("abc", result.sensitivity, result.specificity, strict=True):
        performance = tracker.performance(rater)
        assert performance.sensitivity == pytest.approx(p)
        assert performance.specificity == pytest.approx(q)
    counts = staple_counts(result)[0]
    assert counts.tp + counts.fn + counts.tn + counts.fp == pytest.approx(1600)


def test_performance_is_pooled_over_images_not_reset_or_averaged() -> None:
    tracker = PerformanceTracker()
    tracker.add("u", Counts(tp=90, fn=10))  # a large object, found well
    tracker.add("u", Counts(tp=0, fn=2))  # a speck, missed
    performance = tracker.performance("u")
    assert performance.images == 2
    assert performance.sensitivity == pytest.approx(90 / 102)  # not (0.9 + 0.0) / 2
    assert performance.specificity is None
    assert tracker.performance("nobody").sensitivity is None


def test_object_counts_and_crowd_quality_pool_across_images() -> None:
    tracker = PerformanceTracker()
    tracker.add("u", Counts(tp=8, fp=1, fn=1))
    tracker.add("u", Counts(tp=2, fp=3, fn=0))
    performance = tracker.performance("u")
    assert performance.precision == pytest.approx(10 / 14)
    assert performance.recall == pytest.approx(10 / 11)
    assert performance.quality() == pytest.approx(1 - 5 / 20)


def test_ranking_puts_the_worst_first() -> None:
    tracker = PerformanceTracker()
    tracker.add("good", Counts(tp=9, fn=1))
    tracker.add("bad", Counts(tp=2, fn=8))
    tracker.add("silent", Counts())
    assert tracker.ranking() == ["silent", "bad", "good"]


def task(tool: Tool) -> Task:
    return Task(id="t", owner_id="o", title="t", tool=tool)


def image(size: int = 200) -> Image:
    return Image(
        id="i", task_id="t", name="i.png", width=size, height=size, source_format="png", original_key="o",
        display_key="d", display_media_type="image/png", thumbnail_key="th", thumbnail_media_type="image/png",
    )  # fmt: skip


def submission(user: str, tool: Tool, shapes: list[np.ndarray]) -> Submission:
    return Submission(
        id=f"s-{user}",
        task_id="t",
        image_id="i",
        user_id=user,
        shapes=[Shape(type=tool, points=[(float(x), float(y)) for x, y in shape]) for shape in shapes],
    )


def test_polylines_are_fused_as_lines_not_clustered_as_points() -> None:
    line = np.array([[10.0, 10.0], [100.0, 20.0], [180.0, 90.0]])
    subs = [submission(u, Tool.POLYLINE, [line + i * 0.5]) for i, u in enumerate("abc")]
    subs.append(submission("d", Tool.POLYLINE, [np.array([[150.0, 150.0], [190.0, 190.0]])]))
    consensus = handlers._line_consensus(task(Tool.POLYLINE), image(), subs)
    assert consensus.method == "polyline-fusion"
    assert consensus.lines is not None and len(consensus.lines) == 1
    assert consensus.lines[0]["support"] == 3
    scores = {score.user_id: score for score in consensus.raters}
    assert scores["a"].precision == 1.0 and scores["d"].precision == 0.0
    assert (scores["d"].tp, scores["d"].fp, scores["d"].fn) == (0, 1, 1)


def test_object_polygons_add_outlines_and_object_scores() -> None:
    square = np.array([[20.0, 20.0], [80.0, 20.0], [80.0, 70.0], [20.0, 70.0]])
    subs = [submission(u, Tool.POLYGON, [square + i]) for i, u in enumerate("abc")]
    consensus = handlers._base(task(Tool.POLYGON), image(), subs, "staple", [
        RaterScore(user_id=s.user_id, submission_id=s.id, sensitivity=0.9) for s in subs
    ])  # fmt: skip
    handlers._add_object_polygons(consensus, subs)
    assert consensus.polygons is not None and consensus.polygons[0]["support"] == 3
    assert all(score.precision == 1.0 and score.sensitivity == 0.9 for score in consensus.raters)


def scored(user: str, counts: Counts | None, **rates: float) -> RaterScore:
    extra = {} if counts is None else {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "tn": counts.tn}
    return RaterScore(user_id=user, submission_id=f"s-{user}", **rates, **extra)


def consensus_of(*raters: RaterScore) -> Consensus:
    return Consensus(
        image_id="i", task_id="t", version=1, submissions=len(raters), submission_ids=[], method="staple",
        tool=Tool.CONTOUR, raters=list(raters),
    )  # fmt: skip


def test_service_tallies_pool_counts_and_fall_back_to_means_for_old_documents() -> None:
    documents = [
        consensus_of(scored("u", Counts(tp=90, fn=10, tn=900, fp=0), sensitivity=0.9, specificity=1.0)),
        consensus_of(scored("u", Counts(tp=0, fn=2, tn=98, fp=0), sensitivity=0.0, specificity=1.0)),
        consensus_of(scored("old", None, sensitivity=0.5, specificity=0.8)),
        consensus_of(scored("old", None, sensitivity=0.7, specificity=1.0)),
    ]
    tracker, legacy = handlers.pool_scores(documents)
    assert tracker.performance("u").sensitivity == pytest.approx(90 / 102)
    tally = handlers.RaterTally(performance=tracker.performance("old"))
    for score in legacy["old"]:
        tally.add_legacy(score)
    assert tally.sensitivity == pytest.approx(0.6)
    assert tally.specificity == pytest.approx(0.9)
    assert tally.quality is None


def test_object_counts_come_from_the_scores() -> None:
    points = [np.array([[1.0, 1.0]]), np.array([[1.5, 1.0], [50.0, 50.0]])]
    clustering = cluster_points(points, radius=3.0, min_raters=2)
    assert object_counts(clustering.raters) == [Counts(tp=1), Counts(tp=1, fp=1)]
