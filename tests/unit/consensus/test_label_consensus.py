"""Task labels (issue 11): label validation on tasks and shapes, and the consensus per label."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.domain import Image, Shape, Submission, Task, TaskLabel, Tool
from crowdseg.errors import InvalidInput
from crowdseg.geometry import validate_shapes
from crowdseg.services.consensus import labels
from crowdseg.services.ingest.handlers import CreateTask
from pydantic import ValidationError

pytestmark = pytest.mark.unit

SIZE = 40
SETTINGS = labels.StapleSettings(max_iter=100, tol=1e-7, region="band")
NAMES = ["cell", "nucleus"]


def square(x0: float, y0: float, side: float, label: str | None) -> Shape:
    points = [(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)]
    return Shape(type=Tool.CONTOUR, points=points, label=label)


def task(exclusive: bool = True, tool: Tool = Tool.CONTOUR) -> Task:
    return Task(
        owner_id="owner", title="t", tool=tool, labels_exclusive=exclusive,
        labels=[TaskLabel(name=name, color="#123456") for name in NAMES],
    )


def image() -> Image:
    return Image(
        task_id="t", name="i.png", width=SIZE, height=SIZE, source_format="png", original_key="o",
        display_key="d", display_media_type="image/png", thumbnail_key="th", thumbnail_media_type="image/png",
    )


def submissions(shapes_per_rater: list[list[Shape]]) -> list[Submission]:
    return [
        Submission(id=f"s{r}", task_id="t", image_id="i", user_id=f"u{r}", shapes=shapes)
        for r, shapes in enumerate(shapes_per_rater)
    ]


def test_a_shape_without_one_of_the_task_labels_is_refused() -> None:
    for label in (None, "mitochondrion"):
        with pytest.raises(InvalidInput, match="cell, nucleus"):
            validate_shapes([square(5, 5, 10, label)], tool=Tool.CONTOUR, width=SIZE, height=SIZE,
                            max_shapes=3, max_points=100, labels=NAMES)
    [kept] = validate_shapes([square(5, 5, 10, "nucleus")], tool=Tool.CONTOUR, width=SIZE, height=SIZE,
                             max_shapes=3, max_points=100, labels=NAMES)
    assert kept.label == "nucleus"


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [{"name": "a", "color": "#12345"}],
        [{"name": "a", "color": "#gggggg"}],
        [{"name": " ", "color": "#000000"}],
        [{"name": "a", "color": "#000000"}, {"name": "a", "color": "#111111"}],
        [{"name": f"n{i}", "color": "#000000"} for i in range(51)],
    ],
)
def test_bad_task_labels_are_refused(bad: list[dict[str, str]]) -> None:
    with pytest.raises(ValidationError):
        CreateTask.model_validate({"title": "t", "tool": "contour", "labels": bad})


def test_exclusive_labels_give_a_label_map_by_multilabel_staple() -> None:
    raters = submissions([[square(4, 4, 30, "cell"), square(14, 14, 8, "nucleus")] for _ in range(3)])
    found = labels.exclusive_masks(task(), image(), raters, SETTINGS, reference=False)
    assert found.label_map is not None
    assert found.label_map[18, 18] == 2 and found.label_map[6, 6] == 1 and found.label_map[0, 0] == 0
    assert np.array_equal(found.masks["nucleus"], found.label_map == 2)
    cell, nucleus = found.entries
    assert (cell["label"], cell["index"], nucleus["index"]) == ("cell", 1, 2)
    assert nucleus["pixels"] == int((found.label_map == 2).sum())
    assert all(r["quality"] == 1.0 and r["sensitivity"] == pytest.approx(1.0) for r in nucleus["raters"])


def test_overlapping_labels_get_one_staple_each() -> None:
    raters = submissions([[square(4, 4, 30, "cell"), square(14, 14, 8, "nucleus")] for _ in range(3)])
    found = labels.overlapping_masks(task(exclusive=False), image(), raters, SETTINGS, reference=False)
    assert found.masks["cell"][18, 18] and found.masks["nucleus"][18, 18]  # both hold the overlap
    assert found.entries[0]["pixels"] > found.entries[1]["pixels"]
    assert all(r["specificity"] is not None for r in found.entries[1]["raters"])


def test_a_label_nobody_drew_is_empty_with_no_rates() -> None:
    raters = submissions([[square(4, 4, 30, "cell")] for _ in range(3)])
    for per_label in (labels.exclusive_masks, labels.overlapping_masks):
        found = per_label(task(), image(), raters, SETTINGS, reference=False)
        _cell, nucleus = found.entries
        assert nucleus["pixels"] == 0 and all(r["sensitivity"] is None for r in nucleus["raters"])


def test_rater_quality_is_per_label() -> None:
    good = [square(4, 4, 30, "cell"), square(14, 14, 8, "nucleus")]
    swapped = [square(4, 4, 30, "cell"), square(24, 24, 8, "nucleus")]  # right cell, wrong nucleus
    found = labels.exclusive_masks(task(), image(), submissions([good, good, good, swapped]), SETTINGS, False)
    cell, nucleus = ({r["user_id"]: r["quality"] for r in entry["raters"]} for entry in found.entries)
    assert cell["u3"] > 0.9
    assert nucleus["u3"] < 0.5 < min(nucleus[u] for u in ("u0", "u1", "u2"))


def test_points_are_clustered_per_label() -> None:
    def click(x: float, y: float, label: str) -> Shape:
        return Shape(type=Tool.POINT, points=[(x, y)], label=label)

    raters = submissions([[click(5, 5, "cell"), click(30, 30, "nucleus"), click(30, 5, "nucleus")]] * 3)
    found = labels.point_labels(task(tool=Tool.POINT), image(), raters, radius=3.0, reference=False)
    cell, nucleus = found.entries
    assert [(p["x"], p["y"]) for p in cell["points"]] == [(5.0, 5.0)]
    assert len(nucleus["points"]) == 2
    assert found.label_map is None


def test_polylines_are_fused_per_label() -> None:
    def line(y: float, label: str) -> Shape:
        return Shape(type=Tool.POLYLINE, points=[(2.0, y), (30.0, y)], label=label)

    raters = submissions([[line(5, "cell"), line(30, "nucleus")]] * 3)
    found = labels.line_labels(task(tool=Tool.POLYLINE), image(), raters, radius=3.0, reference=False)
    cell, nucleus = found.entries
    assert len(cell["lines"]) == len(nucleus["lines"]) == 1
    assert nucleus["lines"][0]["points"][0][1] == pytest.approx(30.0)
    assert all(r["precision"] == 1.0 and r["recall"] == 1.0 for r in cell["raters"])
