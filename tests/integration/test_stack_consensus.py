"""Stacks end to end on the embedded platform: six raters outline a sphere slice by slice on an
uploaded DICOM series (tilted, its files shuffled in the ZIP) and the consensus volume
(``mask.nii.gz``, the export's ``masks/``) is the sphere, with the series' spacing and orientation;
five raters click three objects through an uploaded 20-page TIFF movie and the export's tracks CSV has
one track per object."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from crowdseg.consensus.metrics import dice
from PIL import Image as PILImage

from tests.embedded import Api, EmbeddedServer, export_bundle, wait_for
from tests.stack_inputs import sphere_series, tiff_stack

pytestmark = pytest.mark.integration

SIZE, FRAMES, SPACING = 64, 16, (2.0, 0.5, 0.5)  # spacing (z, y, x) in mm
CENTRE, RADIUS_MM = (31.5, 31.5, 7.5), 10.0  # x, y in pixels, z in frames: the volume's centre
RATERS = 6


def sphere_radius_px(frame: int) -> float:
    """The sphere's radius on a frame's plane, in pixels (0 where the plane misses it)."""
    dz = (frame - CENTRE[2]) * SPACING[0]
    return math.sqrt(max(RADIUS_MM**2 - dz**2, 0.0)) / SPACING[2]


def true_sphere() -> np.ndarray[Any, Any]:
    z, y, x = np.mgrid[0:FRAMES, 0:SIZE, 0:SIZE].astype(np.float64)
    dz, dy, dx = (z - CENTRE[2]) * SPACING[0], (y - CENTRE[1]) * SPACING[1], (x - CENTRE[0]) * SPACING[2]
    return np.asarray(dx**2 + dy**2 + dz**2 <= RADIUS_MM**2)


def outline(frame: int, rng: np.random.Generator) -> list[list[float]]:
    radius = sphere_radius_px(frame) + rng.normal(0, 0.6)
    angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    return [
        [float(CENTRE[0] + radius * math.cos(a) + rng.normal(0, 0.4)), float(CENTRE[1] + radius * math.sin(a))]
        for a in angles
    ]


def create_task(master: Api, tool: str, replicates: int, max_shapes: int) -> str:
    created = master.http.post(
        "/tasks",
        json={
            "title": f"Stack {tool}s {uuid.uuid4().hex[:6]}",
            "tool": tool,
            "replicates": replicates,
            "max_shapes": max_shapes,
            "visibility": "private",  # other tests' annotators on the shared platform never take its images
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def crowd(master: Api, task_id: str, factory: Callable[[], Api], count: int) -> list[Api]:
    annotators = [factory() for _ in range(count)]
    for annotator in annotators:
        added = master.http.post(f"/tasks/{task_id}/members", json={"user_id": annotator.user["id"]})
        assert added.status_code in (200, 201, 204), added.text
    return annotators


def submit(annotator: Api, task_id: str, image_id: str, shapes: list[dict[str, Any]]) -> Any:
    body = {"id": str(uuid.uuid4()), "image_id": image_id, "shapes": shapes}
    return annotator.http.post(f"/tasks/{task_id}/submissions", json=body)


def settled(master: Api, image_id: str, submissions: int) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        response = master.http.get(f"/images/{image_id}/consensus")
        if response.status_code == 200 and response.json()["submissions"] == submissions:
            return dict(response.json())
        return None

    return check


def upload_stack(master: Api, task_id: str, name: str, data: bytes, media_type: str) -> dict[str, Any]:
    """Upload one stack file through the API and wait for its image; returns the image's JSON."""
    uploaded = master.http.post(f"/tasks/{task_id}/images", files=[("files", (name, data, media_type))])
    assert uploaded.status_code == 202 and not uploaded.json()["rejected"], uploaded.text

    def listed() -> dict[str, Any] | None:
        return next(iter(master.http.get(f"/tasks/{task_id}/images").json()), None)

    image: dict[str, Any] = wait_for(listed, 60, f"the stack {name}")
    return image


def nifti(data: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(data))


def test_six_raters_outlining_a_sphere_slice_by_slice_give_its_volume(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task_id = create_task(taskmaster, "contour", RATERS, max_shapes=1)
    series, truth = sphere_series(shape=(FRAMES, SIZE, SIZE), radius_mm=RADIUS_MM, spacing=SPACING)
    assert np.array_equal(truth, true_sphere())  # what the raters outline is what the series shows
    image = upload_stack(taskmaster, task_id, "sphere.zip", series, "application/zip")
    image_id, name = image["id"], image["name"]
    assert image["frames"] == FRAMES and image["spacing"] == pytest.approx(list(SPACING))
    annotators = crowd(taskmaster, task_id, annotator_factory, RATERS)
    drawn = [f for f in range(FRAMES) if sphere_radius_px(f) >= 3.0]

    first = annotators[0]
    unframed = submit(
        first, task_id, image_id, [{"type": "contour", "points": outline(drawn[0], np.random.default_rng(0))}]
    )
    assert unframed.status_code == 422 and "needs its frame" in unframed.text, unframed.text
    beyond = [{"type": "contour", "points": outline(drawn[0], np.random.default_rng(0)), "frame": FRAMES}]
    outside = submit(first, task_id, image_id, beyond)
    assert outside.status_code == 422 and "outside the stack's 16 frames" in outside.text, outside.text

    for n, annotator in enumerate(annotators):
        rng = np.random.default_rng(40 + n)
        shapes = [{"type": "contour", "points": outline(f, rng), "frame": f} for f in drawn]
        stored = submit(annotator, task_id, image_id, shapes)
        assert stored.status_code == 201, stored.text  # the refused ones above stored nothing
        assert [s["frame"] for s in stored.json()["shapes"]] == drawn

    consensus = wait_for(settled(taskmaster, image_id, RATERS), 120, "the consensus of six raters")
    assert consensus["method"] == "staple-3d"
    assert consensus["mask_url"].endswith("/consensus/mask.nii.gz")
    assert len(consensus["raters"]) == RATERS

    response = taskmaster.http.get(f"/images/{image_id}/consensus/mask.nii.gz")
    assert response.status_code == 200, response.text
    volume = nifti(response.content)
    assert volume.shape == (SIZE, SIZE, FRAMES)  # x, y, z
    assert volume.header.get_zooms() == pytest.approx((0.5, 0.5, 2.0))
    rotation = volume.affine[:3, :3] / np.array([0.5, 0.5, 2.0])
    assert np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6)  # the series' orientation, unit axes
    assert not np.allclose(rotation, np.diag(np.diag(rotation)))  # tilted, as the series is
    found = np.transpose(np.asarray(volume.dataobj), (2, 1, 0)) > 0
    assert dice(found, true_sphere()) >= 0.9

    whole = taskmaster.http.get(f"/images/{image_id}/consensus/mask.png")
    assert whole.status_code == 422 and "?frame=k" in whole.text, whole.text
    middle = taskmaster.http.get(f"/images/{image_id}/consensus/mask.png", params={"frame": 8})
    assert middle.status_code == 200, middle.text
    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(middle.content))) > 0, found[8])
    assert taskmaster.http.get(f"/images/{image_id}/consensus/mask.png", params={"frame": FRAMES}).status_code == 422

    archive = export_bundle(taskmaster, task_id)
    [volume_name] = [n for n in archive.namelist() if n.startswith("masks/") and n.endswith(".nii.gz")]
    exported = nifti(archive.read(volume_name))
    assert np.array_equal(np.asarray(exported.dataobj), np.asarray(volume.dataobj))
    coco = json.loads(archive.read("coco/consensus.json"))
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    assert names[min(names)] == f"{name}#frame=000" and len(names) == FRAMES
    masked = sorted(names[a["image_id"]] for a in coco["annotations"])
    assert masked == [f"{name}#frame={f:03d}" for f in range(FRAMES) if found[f].any()]

    rng = np.random.default_rng(99)
    reference = [{"type": "contour", "points": outline(f, rng), "frame": f} for f in drawn]
    assert taskmaster.http.put(f"/images/{image_id}/reference", json={"shapes": reference}).status_code == 200
    evaluation = taskmaster.http.get(f"/tasks/{task_id}/evaluation").json()
    assert evaluation["images"] == 1 and evaluation["consensus"]["dice"] >= 0.9, evaluation
    assert all(rater["dice"] >= 0.8 for rater in evaluation["raters"]), evaluation


def test_a_plain_image_has_no_consensus_volume(taskmaster: Api, annotator_factory: Callable[[], Api]) -> None:
    task_id = create_task(taskmaster, "contour", 1, max_shapes=2)
    square = [[10, 10], [40, 10], [40, 40], [10, 40]]
    frame = np.zeros((SIZE, SIZE), np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(frame, mode="L").save(buffer, format="PNG")
    upload = taskmaster.http.post(
        f"/tasks/{task_id}/images", files=[("files", ("plain.png", buffer.getvalue(), "image/png"))]
    )
    assert upload.status_code == 202, upload.text
    image_id = wait_for(lambda: next(iter(taskmaster.http.get(f"/tasks/{task_id}/images").json()), None), 60)["id"]
    [annotator] = crowd(taskmaster, task_id, annotator_factory, 1)
    on_frame = submit(annotator, task_id, image_id, [{"type": "contour", "points": square, "frame": 2}])
    assert on_frame.status_code == 422 and "not a stack" in on_frame.text, on_frame.text
    stored = submit(annotator, task_id, image_id, [{"type": "contour", "points": square, "frame": 0}])
    assert stored.status_code == 201, stored.text
    assert "frame" not in stored.json()["shapes"][0]  # frame 0 of a plain image is no frame
    wait_for(settled(taskmaster, image_id, 1), 120, "the consensus")
    volume = taskmaster.http.get(f"/images/{image_id}/consensus/mask.nii.gz")
    assert volume.status_code == 409 and "not a stack" in volume.text, volume.text
    assert taskmaster.http.get(f"/images/{image_id}/consensus/mask.png").status_code == 200


TRACK_FRAMES, OBJECTS, CLICKERS = 20, 3, 5


def object_position(index: int, frame: int) -> tuple[float, float]:
    """Three objects moving 1.5 pixels a frame in different directions."""
    start = [(12.0, 12.0), (50.0, 20.0), (20.0, 52.0)][index]
    step = [(1.5, 0.5), (-0.5, 1.5), (1.5, -1.0)][index]
    return start[0] + step[0] * frame, start[1] + step[1] * frame


def test_point_tracks_on_a_20_frame_stack_come_out_as_a_trackmate_csv(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task_id = create_task(taskmaster, "point", CLICKERS, max_shapes=TRACK_FRAMES * OBJECTS)
    pages = [np.full((80, 80), 20 + 10 * f, np.uint8) for f in range(TRACK_FRAMES)]
    image_id = upload_stack(taskmaster, task_id, "movie.tif", tiff_stack(pages), "image/tiff")["id"]
    for n, annotator in enumerate(crowd(taskmaster, task_id, annotator_factory, CLICKERS)):
        rng = np.random.default_rng(7 + n)
        shapes = [
            {"type": "point", "points": [[x + rng.normal(0, 0.5), y + rng.normal(0, 0.5)]], "frame": f}
            for f in range(TRACK_FRAMES)
            for x, y in [object_position(o, f) for o in range(OBJECTS)]
        ]
        assert submit(annotator, task_id, image_id, shapes).status_code == 201

    consensus = wait_for(settled(taskmaster, image_id, CLICKERS), 120, "the consensus of five clickers")
    assert len(consensus["points"]) == TRACK_FRAMES * OBJECTS
    assert {p["frame"] for p in consensus["points"]} == set(range(TRACK_FRAMES))

    archive = export_bundle(taskmaster, task_id)
    [tracks] = [n for n in archive.namelist() if n.startswith("tracks/")]
    rows = list(csv.DictReader(io.StringIO(archive.read(tracks).decode())))
    assert list(rows[0])[:4] == ["frame", "x", "y", "track_id"]
    tracks: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        tracks.setdefault(row["track_id"], []).append(row)
    assert len(tracks) == OBJECTS
    for track in tracks.values():
        assert [int(r["frame"]) for r in track] == list(range(TRACK_FRAMES))
        first = (float(track[0]["x"]), float(track[0]["y"]))
        index = min(range(OBJECTS), key=lambda o: math.dist(first, object_position(o, 0)))
        for row in track:
            assert math.dist((float(row["x"]), float(row["y"])), object_position(index, int(row["frame"]))) < 1.5
    coco = json.loads(archive.read("coco/consensus.json"))
    assert sum(1 for image in coco["images"] if image["crowdseg_id"] == image_id) == TRACK_FRAMES

    truth = [
        {"type": "point", "points": [list(object_position(o, f))], "frame": f}
        for f in range(TRACK_FRAMES)
        for o in range(OBJECTS)
    ]
    assert taskmaster.http.put(f"/images/{image_id}/reference", json={"shapes": truth}).status_code == 200
    evaluation = taskmaster.http.get(f"/tasks/{task_id}/evaluation").json()
    assert evaluation["consensus"]["precision"] == evaluation["consensus"]["recall"] == 1.0, evaluation
