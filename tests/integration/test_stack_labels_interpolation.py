"""Issue 11 on uploaded stacks over HTTP: a task with ``interpolate_frames`` fills each rater's volume
between the frames they drew on (the consensus volume has the object on the frames nobody drew, and
lists them per rater); a two-label task on a stack has a consensus volume per label, ``mask.nii.gz``
holds label indices, ``mask.png?frame=&label=`` one label on one frame and the export the volumes."""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Callable
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from crowdseg.consensus.metrics import dice
from PIL import Image as PILImage

from tests.embedded import Api, EmbeddedServer, export_bundle, wait_for
from tests.integration.test_stack_consensus import crowd, settled, submit, upload_stack
from tests.stack_inputs import tiff_stack

pytestmark = pytest.mark.integration

SIZE, FRAMES, CENTRE, RADIUS = 48, 17, (23.5, 23.5, 8.0), 7.5  # x, y in pixels, z in frames
RATERS = 3
LABELS = [{"name": "organ", "color": "#ff0000"}, {"name": "lesion", "color": "#00ff00"}]


def sphere() -> np.ndarray[Any, Any]:
    z, y, x = np.mgrid[0:FRAMES, 0:SIZE, 0:SIZE].astype(np.float64)
    return np.asarray((x - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + ((z - CENTRE[2]) * 2.0) ** 2 <= (2 * RADIUS) ** 2)


def circle(frame: int, radius: float, label: str | None = None) -> dict[str, Any]:
    points = [
        [CENTRE[0] + radius * math.cos(2 * math.pi * k / 32), CENTRE[1] + radius * math.sin(2 * math.pi * k / 32)]
        for k in range(32)
    ]
    return {"type": "contour", "points": points, "frame": frame, **({"label": label} if label else {})}


def sphere_radius(frame: int) -> float:
    return math.sqrt(max((2 * RADIUS) ** 2 - ((frame - CENTRE[2]) * 2.0) ** 2, 0.0))


def stack_task(master: Api, **fields: Any) -> str:
    body = {"title": "Stack", "tool": "contour", "replicates": RATERS, "visibility": "private", **fields}
    created = master.http.post("/tasks", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def stack_image(master: Api, task_id: str) -> str:
    pages = [np.full((SIZE, SIZE), 30 + 5 * f, np.uint8) for f in range(FRAMES)]
    image = upload_stack(master, task_id, "stack.tif", tiff_stack(pages), "image/tiff")
    assert image["frames"] == FRAMES
    return str(image["id"])


def volume_of(response: Any) -> np.ndarray[Any, Any]:
    assert response.status_code == 200, response.text
    nifti = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    assert nifti.shape == (SIZE, SIZE, FRAMES)
    return np.transpose(np.asarray(nifti.dataobj), (2, 1, 0))


def test_interpolate_frames_is_a_validated_task_setting(taskmaster: Api) -> None:
    task_id = stack_task(taskmaster)
    assert taskmaster.http.get(f"/tasks/{task_id}").json()["interpolate_frames"] is False
    refused = taskmaster.http.patch(f"/tasks/{task_id}", json={"interpolate_frames": "yes"})
    assert refused.status_code == 422, refused.text
    points = taskmaster.http.post("/tasks", json={"title": "p", "tool": "point", "interpolate_frames": True})
    assert points.status_code == 422 and "contour or polygon" in points.text, points.text
    patched = taskmaster.http.patch(f"/tasks/{task_id}", json={"interpolate_frames": True})
    assert patched.status_code == 200 and patched.json()["interpolate_frames"] is True, patched.text


def test_a_task_that_interpolates_fills_the_consensus_volume_between_drawn_frames(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task_id = stack_task(taskmaster, interpolate_frames=True, max_shapes=1)
    image_id = stack_image(taskmaster, task_id)
    drawn = [1, 4, 8, 12, 15]  # every 3rd or 4th frame; nobody draws on the others
    for annotator in crowd(taskmaster, task_id, annotator_factory, RATERS):
        stored = submit(annotator, task_id, image_id, [circle(f, sphere_radius(f)) for f in drawn])
        assert stored.status_code == 201, stored.text
    consensus = wait_for(settled(taskmaster, image_id, RATERS), 120, "the consensus")
    between = [f for f in range(drawn[0], drawn[-1] + 1) if f not in drawn]
    assert [r["interpolated_frames"] for r in consensus["raters"]] == [between] * RATERS

    found = volume_of(taskmaster.http.get(f"/images/{image_id}/consensus/mask.nii.gz")) > 0
    assert all(found[f].any() for f in between)  # filled where nobody drew
    assert dice(found, sphere()) >= 0.85
    truth = [circle(f, sphere_radius(f)) for f in range(FRAMES) if sphere_radius(f) >= 1.0]
    assert taskmaster.http.put(f"/images/{image_id}/reference", json={"shapes": truth}).status_code == 200
    evaluation = taskmaster.http.get(f"/tasks/{task_id}/evaluation").json()
    assert all(rater["dice"] >= 0.85 for rater in evaluation["raters"]), evaluation  # raters' filled volumes
    changed = taskmaster.http.patch(f"/tasks/{task_id}", json={"interpolate_frames": False})
    assert changed.status_code == 409 and "submissions" in changed.text, changed.text


def test_a_two_label_task_on_an_uploaded_stack_gives_a_consensus_volume_per_label(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task_id = stack_task(taskmaster, labels=LABELS, max_shapes=2)
    image_id = stack_image(taskmaster, task_id)
    organ_frames, lesion_frames = range(2, 15), range(6, 11)
    shapes = [circle(f, 14.0, "organ") for f in organ_frames] + [circle(f, 4.0, "lesion") for f in lesion_frames]
    for annotator in crowd(taskmaster, task_id, annotator_factory, RATERS):
        assert submit(annotator, task_id, image_id, shapes).status_code == 201
    consensus = wait_for(settled(taskmaster, image_id, RATERS), 120, "the consensus")
    assert [entry["label"] for entry in consensus["labels"]] == ["organ", "lesion"]
    assert all(len(entry["raters"]) == RATERS and entry["pixels"] > 0 for entry in consensus["labels"])
    assert all(r["sensitivity"] == pytest.approx(1.0) for entry in consensus["labels"] for r in entry["raters"])

    label_map = volume_of(taskmaster.http.get(f"/images/{image_id}/consensus/mask.nii.gz"))
    assert set(np.unique(label_map)) == {0, 1, 2}  # label indices, 1-based
    assert [f for f in range(FRAMES) if (label_map[f] == 2).any()] == list(lesion_frames)
    assert [f for f in range(FRAMES) if (label_map[f] == 1).any()] == list(organ_frames)
    lesion = volume_of(taskmaster.http.get(f"/images/{image_id}/consensus/mask.nii.gz", params={"label": "lesion"}))
    assert np.array_equal(lesion > 0, label_map == 2)
    unknown = taskmaster.http.get(f"/images/{image_id}/consensus/mask.nii.gz", params={"label": "bone"})
    assert unknown.status_code == 404 and "organ, lesion" in unknown.text, unknown.text

    png = taskmaster.http.get(f"/images/{image_id}/consensus/mask.png", params={"frame": 8, "label": "lesion"})
    assert png.status_code == 200, png.text
    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(png.content))) > 0, label_map[8] == 2)
    whole = taskmaster.http.get(f"/images/{image_id}/consensus/mask.png", params={"frame": 8})
    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(whole.content))) > 0, label_map[8] > 0)

    archive = export_bundle(taskmaster, task_id)
    names = archive.namelist()
    [labels_volume] = [n for n in names if n.endswith("/labels.nii.gz")]
    exported = nib.Nifti1Image.from_bytes(gzip.decompress(archive.read(labels_volume)))
    assert np.array_equal(np.transpose(np.asarray(exported.dataobj), (2, 1, 0)), label_map)
    assert sorted(n.rsplit("/", 1)[1] for n in names if "/labels/" in n) == ["lesion.nii.gz", "organ.nii.gz"]
