"""Shape-based interpolation between drawn frames (issue 11): crowdseg.consensus.interpolation, the
rater volume of a task that interpolates, and labels on a stack's volume."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from crowdseg.consensus import dice, interpolate_frames, signed_distance
from crowdseg.domain import Image, Shape, Submission, Task, TaskLabel, Tool
from crowdseg.services.consensus import labels
from crowdseg.volumes import rater_volume

pytestmark = pytest.mark.unit

SIZE, FRAMES, CENTRE, RADIUS = 48, 41, (23.5, 23.5, 20.0), 16.0


def sphere() -> np.ndarray[Any, Any]:
    z, y, x = np.mgrid[0:FRAMES, 0:SIZE, 0:SIZE].astype(np.float64)
    return np.asarray((x - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + (z - CENTRE[2]) ** 2 <= RADIUS**2)


def test_a_sphere_drawn_on_every_4th_slice_interpolates_to_the_sphere() -> None:
    truth = sphere()
    drawn = [k for k in range(0, FRAMES, 4) if truth[k].any()]
    sparse = np.zeros_like(truth)
    sparse[drawn] = truth[drawn]
    filled = interpolate_frames(sparse, drawn)
    assert dice(sparse, truth) < 0.4
    assert dice(filled.volume, truth) >= 0.9
    assert filled.frames == [k for k in range(drawn[0], drawn[-1] + 1) if k not in drawn]
    assert np.array_equal(filled.volume[drawn], truth[drawn])  # drawn frames stay as drawn


def test_interpolation_keeps_the_drawn_masks_and_fills_only_between() -> None:
    volume = np.zeros((7, 20, 20), dtype=np.bool_)
    volume[1, 5:15, 5:15] = True
    volume[5, 8:12, 8:12] = True
    volume[6, 0:3, 0:3] = True  # next to a drawn frame: nothing between to fill
    filled = interpolate_frames(volume, [1, 5, 6])
    assert filled.frames == [2, 3, 4]
    assert not filled.volume[0].any()  # no extrapolation before the first drawn frame
    areas = [int(filled.volume[k].sum()) for k in range(1, 6)]
    assert areas[0] == 100 and areas[-1] == 16 and areas == sorted(areas, reverse=True)
    assert np.array_equal(filled.volume[6], volume[6])


def test_the_signed_distance_is_negative_inside_and_zero_on_the_boundary_between_pixels() -> None:
    mask = np.zeros((9, 9), dtype=np.bool_)
    mask[3:6, 3:6] = True
    distance = signed_distance(mask)
    assert np.array_equal(distance < 0, mask)
    assert distance[4, 2] == pytest.approx(0.5) and distance[4, 3] == pytest.approx(-0.5)
    assert (signed_distance(np.zeros((4, 4), np.bool_)) > 0).all()


def test_a_shape_that_vanishes_shrinks_away_rather_than_jumping() -> None:
    volume = np.zeros((5, 20, 20), dtype=np.bool_)
    volume[0, 4:16, 4:16] = True
    filled = interpolate_frames(volume, [0, 4])  # frame 4 drawn, but empty (a degenerate outline)
    areas = [int(filled.volume[k].sum()) for k in range(5)]
    assert areas == sorted(areas, reverse=True) and areas[-1] == 0


def test_a_volume_must_be_three_dimensional() -> None:
    with pytest.raises(ValueError, match="frames, height, width"):
        interpolate_frames(np.zeros((4, 4), np.bool_), [0])


def circle(frame: int, radius: float, label: str | None = None) -> Shape:
    points = [
        (CENTRE[0] + radius * math.cos(2 * math.pi * k / 32), CENTRE[1] + radius * math.sin(2 * math.pi * k / 32))
        for k in range(32)
    ]
    return Shape(type=Tool.CONTOUR, points=points, frame=frame, label=label)


def stack(frames: int = 9) -> Image:
    return Image(
        task_id="t", name="s.tif", width=SIZE, height=SIZE, frames=frames, source_format="tiff",
        original_key="o", display_key="d", display_media_type="image/png", thumbnail_key="th",
        thumbnail_media_type="image/png",
    )  # fmt: skip


def test_a_rater_volume_is_filled_between_drawn_frames_only_when_the_task_interpolates() -> None:
    shapes = [circle(1, 10.0), circle(5, 10.0), circle(8, 6.0)]
    plain, none = rater_volume(shapes, stack(), interpolate=False)
    filled, frames = rater_volume(shapes, stack(), interpolate=True)
    assert none == [] and [k for k in range(9) if plain[k].any()] == [1, 5, 8]
    assert frames == [2, 3, 4, 6, 7]
    assert [k for k in range(9) if filled[k].any()] == list(range(1, 9))
    assert np.array_equal(filled[3], plain[1])  # two equal outlines: the same outline between them


def test_labels_on_a_stack_give_a_consensus_volume_per_label() -> None:
    task = Task(
        owner_id="o", title="t", tool=Tool.CONTOUR, interpolate_frames=True,
        labels=[TaskLabel(name="organ", color="#ff0000"), TaskLabel(name="lesion", color="#00ff00")],
    )  # fmt: skip
    shapes = [circle(k, 14.0, "organ") for k in (0, 4, 8)] + [circle(k, 4.0, "lesion") for k in (2, 6)]
    raters = [Submission(id=f"s{n}", task_id="t", image_id="i", user_id=f"u{n}", shapes=shapes) for n in range(3)]
    settings = labels.StapleSettings(max_iter=50, tol=1e-7, region="band")
    for exclusive in (True, False):
        found = (labels.exclusive_masks if exclusive else labels.overlapping_masks)(
            task, stack(), raters, settings, False, interpolate=True
        )
        assert found.label_map is not None and found.label_map.shape == (9, SIZE, SIZE)
        assert set(np.unique(found.label_map)) == {0, 1, 2}
        organ, lesion = found.masks["organ"], found.masks["lesion"]
        assert [k for k in range(9) if lesion[k].any()] == [2, 3, 4, 5, 6]
        assert all(organ[k].any() for k in range(9))
        lesion_raters = found.entries[1]["raters"]
        assert [r["interpolated_frames"] for r in lesion_raters] == [[3, 4, 5]] * 3


def test_a_screened_out_raters_quality_on_a_stack_compares_volumes_not_frames_flattened() -> None:
    """Bug pinned: the quality of a rater left out by screening was measured on the frames' shapes
    flattened into one 2-D mask, so an outline on the wrong frame agreed perfectly."""
    from crowdseg.services.consensus.handlers import _all_qualities

    task = Task(owner_id="o", title="t", tool=Tool.CONTOUR)
    frames = [1, 1, 1, 5]  # the fourth rater outlines the same disc, four frames off
    raters = [
        Submission(id=f"s{n}", task_id="t", image_id="i", user_id=f"u{n}", shapes=[circle(k, 10.0)])
        for n, k in enumerate(frames)
    ]
    qualities = _all_qualities(task, stack(), raters, None)
    assert qualities[0] is not None and qualities[0] > 0.9
    assert qualities[3] is not None and qualities[3] < 0.5
