"""Shape validation against a task and rasterisation to masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from crowdseg.domain import Shape, Tool
from crowdseg.errors import InvalidInput
from crowdseg.geometry import mask_to_png, png_to_mask, rasterize, validate_shapes
from pydantic import ValidationError

pytestmark = pytest.mark.unit

SQUARE = [(10.0, 10.0), (30.0, 10.0), (30.0, 30.0), (10.0, 30.0)]


def check(shapes: list[Shape], tool: Tool = Tool.CONTOUR, max_shapes: int = 3, max_points: int = 100) -> list[Shape]:
    return validate_shapes(shapes, tool=tool, width=64, height=48, max_shapes=max_shapes, max_points=max_points)


@pytest.mark.parametrize(
    ("shapes", "tool", "message"),
    [
        ([Shape(type=Tool.POINT, points=[(1, 1)])], Tool.CONTOUR, "takes contour"),
        ([Shape(type=Tool.CONTOUR, points=SQUARE[:2])], Tool.CONTOUR, "at least 3 points"),
        ([Shape(type=Tool.POINT, points=[(1, 1), (2, 2)])], Tool.POINT, "exactly one"),
        ([Shape(type=Tool.CONTOUR, points=[(10, 10), (20, 10), (500, 10)])], Tool.CONTOUR, "outside"),
        ([Shape(type=Tool.CONTOUR, points=[(10, 10), (20, 10), (30, 10)])], Tool.CONTOUR, "no area"),
        ([Shape(type=Tool.CONTOUR, points=SQUARE)] * 4, Tool.CONTOUR, "at most 3"),
        ([Shape(type=Tool.CONTOUR, points=SQUARE * 30)], Tool.CONTOUR, "limit is 100"),
    ],
)
def test_bad_shapes_are_refused_with_a_reason(shapes: list[Shape], tool: Tool, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check(shapes, tool)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_coordinates_are_not_a_shape(bad: float) -> None:
    with pytest.raises(ValidationError):
        Shape(type=Tool.CONTOUR, points=[(bad, 1.0), (2.0, 2.0), (3.0, 1.0)])


def test_a_small_overshoot_is_clipped_to_the_image() -> None:
    (shape,) = check([Shape(type=Tool.CONTOUR, points=[(-2, -2), (66, 0), (66, 50), (0, 50)])])
    xs, ys = zip(*shape.points, strict=True)
    assert min(xs) == 0 and max(xs) == 64 and min(ys) == 0 and max(ys) == 48


def test_rasterised_square_covers_its_interior_and_round_trips_through_png() -> None:
    mask = rasterize([Shape(type=Tool.CONTOUR, points=SQUARE)], 64, 48)
    assert mask.shape == (48, 64)
    assert mask[20, 20] and not mask[5, 5] and not mask[40, 40]
    assert 350 <= int(mask.sum()) <= 450  # a 20×20 square, boundary convention aside
    assert np.array_equal(png_to_mask(mask_to_png(mask)), mask)


def test_several_contours_are_united() -> None:
    other = [(x + 30, y) for x, y in SQUARE]
    both = rasterize([Shape(type=Tool.CONTOUR, points=SQUARE), Shape(type=Tool.CONTOUR, points=other)], 64, 48)
    one = rasterize([Shape(type=Tool.CONTOUR, points=SQUARE)], 64, 48)
    assert both.sum() > one.sum() and both[20, 45]


@pytest.mark.parametrize("size", [32, 64, 256])
def test_synthetic_images_of_any_size_are_made(size: int) -> None:
    """Regression: `synthetic_image` looped forever below ~100 px, looking for room for six cells 30 px apart."""
    from crowdseg.simulation import synthetic_image

    image = synthetic_image(1, size, size)
    assert image.truth().any() and 1 <= len(image.cells) <= 6
