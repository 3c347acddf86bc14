"""Stacks: shapes on frames (validation, rasterising frame by frame), the consensus volume as NIfTI-1,
tracks across frames, and the export's per-frame COCO names and tracks CSV."""

from __future__ import annotations

import csv
import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from crowdseg.domain import Consensus, Image, Shape, Submission, Task, Tool
from crowdseg.errors import InvalidInput
from crowdseg.geometry import validate_shapes
from crowdseg.services.consensus.volumes import _frame_line_consensus, _frame_point_consensus
from crowdseg.services.export import stacks
from crowdseg.volumes import link_tracks, nifti_bytes, nifti_volume, rasterize_frames

pytestmark = pytest.mark.unit

SQUARE = [(10.0, 10.0), (30.0, 10.0), (30.0, 30.0), (10.0, 30.0)]


def stack(frames: int = 5, spacing: tuple[float, float, float] | None = (2.5, 0.5, 0.75), **extra: object) -> Image:
    return Image(
        task_id="t",
        name="scan",
        width=40,
        height=32,
        source_format="tiff",
        original_key="o",
        display_key="d",
        display_media_type="image/png",
        thumbnail_key="th",
        thumbnail_media_type="image/png",
        frames=frames,
        spacing=spacing,
        **extra,  # type: ignore[arg-type]
    )


def contour(frame: int | None) -> Shape:
    return Shape(type=Tool.CONTOUR, points=SQUARE, frame=frame)


def check(shapes: list[Shape], frames: int) -> list[Shape]:
    return validate_shapes(shapes, tool=Tool.CONTOUR, width=40, height=32, max_shapes=10, max_points=100, frames=frames)


def test_a_stack_takes_shapes_on_its_frames() -> None:
    assert [s.frame for s in check([contour(0), contour(4)], frames=5)] == [0, 4]


@pytest.mark.parametrize(
    ("frame", "frames", "says"),
    [
        (None, 5, "every shape needs its frame"),
        (5, 5, "outside the stack's 5 frames (0 to 4)"),
        (2, 1, "the image is not a stack"),
    ],
)
def test_a_shape_off_the_frames_is_refused_with_its_reason(frame: int | None, frames: int, says: str) -> None:
    with pytest.raises(InvalidInput, match=says.replace("(", r"\(").replace(")", r"\)")):
        check([contour(0 if frames > 1 else None), contour(frame)], frames=frames)


def test_the_shape_limit_holds_per_frame_on_a_stack() -> None:
    """Bug pinned: an outline on each of two frames of a one-shape task was refused ("2 shapes
    submitted; this task allows at most 1"), though the workbench counts per frame."""
    one_each = [contour(0), contour(1)]
    assert (
        len(validate_shapes(one_each, tool=Tool.CONTOUR, width=40, height=32, max_shapes=1, max_points=100, frames=2))
        == 2
    )
    with pytest.raises(InvalidInput, match="2 shapes on frame 1; this task allows at most 1 per frame"):
        validate_shapes(
            [contour(0), contour(1), contour(1), contour(2)],
            tool=Tool.CONTOUR,
            width=40,
            height=32,
            max_shapes=1,
            max_points=100,
            frames=4,
        )
    with pytest.raises(InvalidInput, match=r"at most 1$"):
        validate_shapes([contour(None)] * 2, tool=Tool.CONTOUR, width=40, height=32, max_shapes=1, max_points=100)


def test_frame_zero_on_a_plain_image_is_dropped_and_left_out_of_the_json() -> None:
    [shape] = check([contour(0)], frames=1)
    assert shape.frame is None
    assert "frame" not in shape.model_dump(mode="json")
    assert contour(3).model_dump(mode="json")["frame"] == 3


def test_shapes_are_rasterised_on_their_own_frames() -> None:
    volume = rasterize_frames([contour(1), contour(3)], frames=5, width=40, height=32)
    assert volume.shape == (5, 32, 40)
    assert [bool(volume[f].any()) for f in range(5)] == [False, True, False, True, False]
    assert volume[1, 20, 20] and not volume[1, 5, 5]


def test_the_nifti_file_has_the_volume_as_x_y_z_with_the_spacing() -> None:
    volume = rasterize_frames([contour(1)], frames=5, width=40, height=32).astype(np.uint8)
    data = nifti_bytes(volume, stack())
    loaded = nib.Nifti1Image.from_bytes(gzip.decompress(data))
    assert loaded.shape == (40, 32, 5)  # x, y, z: x fastest on disk
    assert loaded.header.get_zooms() == pytest.approx((0.75, 0.5, 2.5))
    assert np.allclose(loaded.affine, np.diag([0.75, 0.5, 2.5, 1.0]))
    assert np.asarray(loaded.dataobj)[20, 20, 1] == 1  # column 20, row 20, frame 1
    assert np.array_equal(nifti_volume(data), volume)


def test_the_nifti_file_keeps_the_source_orientation() -> None:
    tilted = [[0.0, 0.0, 2.5, -10.0], [-0.5, 0.0, 0.0, 20.0], [0.0, -0.75, 0.0, 30.0], [0.0, 0.0, 0.0, 1.0]]
    loaded = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_bytes(np.zeros((5, 32, 40)), stack(affine=tilted))))
    assert np.allclose(loaded.affine, tilted)
    assert int(loaded.header["sform_code"]) == 1  # scanner coordinates
    assert loaded.header.get_zooms() == pytest.approx((0.75, 0.5, 2.5))


def test_a_stack_without_spacing_gets_one_millimetre_voxels() -> None:
    loaded = nib.Nifti1Image.from_bytes(gzip.decompress(nifti_bytes(np.zeros((5, 32, 40)), stack(spacing=None))))
    assert loaded.header.get_zooms() == pytest.approx((1.0, 1.0, 1.0))


def test_points_that_move_a_little_per_frame_make_one_track_each() -> None:
    frames = [0, 0, 1, 1, 2, 3]
    centres = np.array([[10, 10], [30, 30], [31, 29], [11, 11], [12, 12], [50, 50]], dtype=float)
    assert link_tracks(frames, centres, max_distance=5.0) == [1, 2, 2, 1, 1, 3]


def test_a_frame_without_points_ends_the_tracks() -> None:
    assert link_tracks([0, 2], np.array([[10, 10], [10, 10]], dtype=float), max_distance=5.0) == [1, 2]


def test_coco_names_every_frame_and_keeps_plain_image_ids() -> None:
    plain = stack(frames=1).model_copy(update={"name": "plain.png"})
    volume = stack(frames=12)
    ids = stacks.coco_image_ids([plain, volume])
    assert ids == {plain.id: [1], volume.id: list(range(2, 14))}
    entries = stacks.coco_images(volume, ids[volume.id], "/api/v1/images/x/file")
    assert [e["file_name"] for e in entries[:2]] == ["scan#frame=000", "scan#frame=001"]
    assert entries[7]["coco_url"] == "/api/v1/images/x/file?frame=7" and entries[7]["frame"] == 7
    assert stacks.coco_images(plain, ids[plain.id], "/u")[0]["file_name"] == "plain.png"


def test_the_tracks_csv_has_frame_x_y_and_track_id_by_track() -> None:
    consensus = Consensus(
        image_id="i",
        task_id="t",
        version=3,
        submissions=3,
        submission_ids=[],
        method="point-clustering-per-frame",
        tool=Tool.POINT,
        raters=[],
        points=[
            {"x": 10.0, "y": 10.0, "support": 3, "frame": 0, "track": 2},
            {"x": 30.0, "y": 30.0, "support": 3, "frame": 0, "track": 1},
            {"x": 31.0, "y": 29.0, "support": 2, "frame": 1, "track": 1},
        ],
    )
    data = stacks.tracks_csv(consensus)
    assert data is not None
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert list(rows[0]) == ["frame", "x", "y", "track_id", "support"]
    assert [(r["track_id"], r["frame"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0")]


def submission(user: str, shapes: list[Shape]) -> Submission:
    return Submission(id=f"s-{user}", task_id="t", image_id="i", user_id=user, shapes=shapes)


def test_points_on_a_stack_cluster_per_frame_even_where_some_raters_clicked_nothing() -> None:
    task = Task(owner_id="o", title="T", tool=Tool.POINT)
    clicks = {"a": [(0, 10.0), (1, 11.0)], "b": [(0, 10.5), (1, 11.5)], "c": [(0, 10.2)]}
    submissions = [
        submission(user, [Shape(type=Tool.POINT, points=[(x, 20.0)], frame=f) for f, x in drawn])
        for user, drawn in clicks.items()
    ]
    consensus = _frame_point_consensus(task, stack(), submissions)
    assert [(p["frame"], p["track"]) for p in consensus.points or []] == [(0, 1), (1, 1)]
    recall = {r.user_id: r.recall for r in consensus.raters}
    assert recall == {"a": 1.0, "b": 1.0, "c": 0.5}


def test_lines_on_a_stack_fuse_per_frame_and_carry_their_frame() -> None:
    task = Task(owner_id="o", title="T", tool=Tool.POLYLINE)
    line = [(5.0, 5.0), (25.0, 5.0), (25.0, 20.0)]
    submissions = [
        submission(user, [Shape(type=Tool.POLYLINE, points=[(x + d, y) for x, y in line], frame=f) for f in (2, 3)])
        for user, d in (("a", 0.0), ("b", 0.5), ("c", -0.5))
    ]
    consensus = _frame_line_consensus(task, stack(), submissions)
    assert [(line["frame"], line["track"], line["support"]) for line in consensus.lines or []] == [(2, 1, 3), (3, 1, 3)]
    tracks = stacks.tracks_csv(consensus)
    assert tracks is not None and tracks.decode().count("\n") == 3  # the header and one centroid per frame
