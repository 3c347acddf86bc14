"""Gold in the stream (issue 10): the schedule of gold answers, the deterministic draw, the
selection's gold set, and a gold answer's score and quality."""

from __future__ import annotations

from datetime import UTC, datetime
from statistics import fmean

import numpy as np
import pytest
from crowdseg.consensus.quality import mask_qualities
from crowdseg.domain import Metric, Shape, Tool
from crowdseg.geometry import rasterize
from crowdseg.services.annotate.scoring import gold_score, score
from crowdseg.services.assign.gold import GOLD_FLOOR, gold_draw, gold_share, serves_gold
from crowdseg.services.assign.selection import TaskSelection

from tests.unit.test_assign_policy import image as policy_image

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_the_share_starts_at_the_rate_halves_after_twenty_and_floors_at_a_quarter() -> None:
    assert gold_share(0.4, 0) == pytest.approx(0.4)
    assert gold_share(0.4, 20) == pytest.approx(0.2)
    assert gold_share(0.4, 60) == pytest.approx(0.1)
    assert gold_share(0.4, 10_000) == pytest.approx(0.4 * GOLD_FLOOR)
    shares = [gold_share(0.4, n) for n in range(200)]
    assert shares == sorted(shares, reverse=True)  # never rises with experience
    assert gold_share(0.0, 0) == 0.0 and gold_share(1.0, 0) == 1.0


def test_the_draw_is_fixed_by_task_user_and_count() -> None:
    assert gold_draw("t", "u", 3) == gold_draw("t", "u", 3)
    assert len({gold_draw("t", "u", n) for n in range(100)}) == 100
    assert gold_draw("t", "u", 3) != gold_draw("t", "v", 3) != gold_draw("s", "u", 3)
    assert all(0.0 <= gold_draw("t", f"u{n}", n) < 1.0 for n in range(1000))
    assert not any(serves_gold(0.0, "t", f"u{n}", 0) for n in range(1000))
    assert all(serves_gold(1.0, "t", f"u{n}", 0) for n in range(1000))  # share 1 at the start


@pytest.mark.parametrize("count", [0, 20, 60])
def test_over_many_users_the_draws_follow_the_schedule(count: int) -> None:
    """Fixed ids, so the figure is the same on every run."""
    served = fmean(serves_gold(0.4, "task", f"user-{u}", count) for u in range(4000))
    assert served == pytest.approx(gold_share(0.4, count), abs=0.025)


def test_the_selection_keeps_the_gold_set_and_serves_each_user_the_ones_they_have_not_answered() -> None:
    selection = TaskSelection("task")
    images = [policy_image(f"{n:02d}.png") for n in range(6)]
    square = Shape(type=Tool.CONTOUR, points=[(1, 1), (8, 1), (8, 8), (1, 8)])
    images[1].reference_shapes = [square]
    images[4].reference_shapes = [square]
    for im in images:
        selection.sync(im, NOW)  # as on build: from the store
    assert selection.gold_ids == {images[1].id, images[4].id}
    selection.set_gold(images[2].id, True)  # image.referenced
    selection.set_gold(images[4].id, False)  # its reference removed
    selection.set_gold("early", True)  # referenced before its image.ingested came (the topics are not ordered)
    assert selection.gold_ids == {images[1].id, images[2].id}
    selection.add("early", "early.png", 10, 10)
    assert selection.gold_ids == {images[1].id, images[2].id, "early"}
    selection.set_gold("early", False)
    assert sorted(selection.gold_candidates("ann")) == sorted([images[1].id, images[2].id])
    selection.submitted(images[1].id, "ann")
    assert list(selection.gold_candidates("ann")) == [images[2].id]
    assert sorted(selection.gold_candidates("bob")) == sorted([images[1].id, images[2].id])
    selection.forget(images[2].id)
    assert selection.gold_ids == {images[1].id} and list(selection.gold_candidates("ann")) == []


def test_a_gold_answer_scores_in_the_task_metric_and_its_quality_is_dice_against_the_reference() -> None:
    reference = [Shape(type=Tool.CONTOUR, points=[(10, 10), (40, 10), (40, 40), (10, 40)])]
    drawn = [Shape(type=Tool.CONTOUR, points=[(14, 12), (42, 12), (42, 38), (14, 38)])]
    for metric in Metric:
        gold = gold_score(metric, Tool.CONTOUR, drawn, reference, 64, 64)
        assert gold.metric is metric and gold.score == pytest.approx(
            score(metric, Tool.CONTOUR, drawn, reference, 64, 64)
        )
    mine, truth = rasterize(drawn, 64, 64), rasterize(reference, 64, 64)
    expected = 2 * (mine & truth).sum() / (mine.sum() + truth.sum())
    assert gold.quality == pytest.approx(float(expected)) == mask_qualities(mine[None], truth)[0]
    points = [Shape(type=Tool.POINT, points=[(10, 10)]), Shape(type=Tool.POINT, points=[(30, 30)])]
    half = gold_score(Metric.DICE, Tool.POINT, points[:1], points, 64, 64)
    assert half.quality == pytest.approx(2 / 3)  # one of two points found: F1 = 2·1 / (2·1 + 0 + 1)
    line = [Shape(type=Tool.POLYLINE, points=[(5, 5), (50, 50)])]
    assert gold_score(Metric.DICE, Tool.POLYLINE, line, line, 64, 64).quality == pytest.approx(1.0)
    assert np.isfinite(gold_score(Metric.MHD, Tool.POINT, points, points, 64, 64).score)
