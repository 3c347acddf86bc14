"""Stacks through the embedded HTTP API (issue 11): a DICOM series, a multi-frame DICOM, a 30-page TIFF and
a NIfTI upload as one image each, with frames, spacing and a window; every frame's rendition and thumbnail
is served, other windows are rendered and kept; bad frames, windows and stacks are refused with a reason."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.embedded import Api, EmbeddedServer
from tests.stack_inputs import colour_dicom, multiframe_dicom, nifti, series_zip, sphere_series, tiff_stack

pytestmark = pytest.mark.integration


def create_task(owner: Api) -> str:
    response = owner.http.post("/tasks", json={"title": "stacks", "tool": "contour", "visibility": "public"})
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def upload(owner: Api, task_id: str, name: str, data: bytes) -> dict[str, Any]:
    response = owner.http.post(f"/tasks/{task_id}/images", files=[("files", (name, data, "application/octet-stream"))])
    assert response.status_code in (202, 422), response.text
    report: dict[str, Any] = response.json()
    return report


def only_image(owner: Api, task_id: str, name: str, data: bytes) -> dict[str, Any]:
    report = upload(owner, task_id, name, data)
    assert report["rejected"] == [] and len(report["accepted"]) == 1, report
    image: dict[str, Any] = report["accepted"][0]
    return image


def pixels(owner: Api, path: str, **params: object) -> np.ndarray:
    response = owner.http.get(path, params=params)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(BytesIO(response.content)))


def test_dicom_series_uploads_as_one_stack_with_every_frame(embedded: EmbeddedServer, taskmaster: Api) -> None:
    task_id = create_task(taskmaster)
    zip_bytes, truth = sphere_series()
    image = only_image(taskmaster, task_id, "ct.zip", zip_bytes)
    assert image["frames"] == 24 and image["spacing"] == pytest.approx([2.5, 0.8, 0.7])
    assert image["window"] == [500.0, 1000.0]
    listed = taskmaster.http.get(f"/tasks/{task_id}/images").json()
    assert [(i["id"], i["frames"]) for i in listed] == [(image["id"], 24)]
    for frame in (0, 11, 23):
        shown = pixels(taskmaster, f"/images/{image['id']}/file", frame=frame)
        # The DICOM window 0..1000 HU shows the sphere (1000 HU) white and the rest (0 HU) black.
        assert np.array_equal(shown > 127, truth[frame])
        assert pixels(taskmaster, f"/images/{image['id']}/thumbnail", frame=frame).shape == truth[frame].shape


def test_another_window_is_rendered_and_kept(embedded: EmbeddedServer, taskmaster: Api) -> None:
    task_id = create_task(taskmaster)
    zip_bytes, truth = sphere_series()
    image_id = only_image(taskmaster, task_id, "ct.zip", zip_bytes)["id"]
    # Centre 2000, width 100: everything (0 and 1000 HU) is below the window, so black.
    dark = pixels(taskmaster, f"/images/{image_id}/file", frame=12, window="2000,100")
    assert dark.max() == 0
    wide = pixels(taskmaster, f"/images/{image_id}/file", frame=12, window="500,2000")
    assert set(np.unique(wide[truth[12]])) == {191} and set(np.unique(wide[~truth[12]])) == {64}
    again = pixels(taskmaster, f"/images/{image_id}/file", frame=12, window="500,2000")
    assert np.array_equal(again, wide)
    cached = list((embedded.data_dir / "objects").rglob("window/*.png"))
    assert len(cached) >= 2


def test_multiframe_dicom_tiff_and_nifti_upload_as_stacks(embedded: EmbeddedServer, taskmaster: Api) -> None:
    task_id = create_task(taskmaster)
    cine = only_image(taskmaster, task_id, "cine.dcm", multiframe_dicom(np.zeros((5, 8, 8)) + 7))
    assert (cine["frames"], cine["spacing"]) == (5, None)
    movie = only_image(
        taskmaster, task_id, "movie.tif", tiff_stack([np.full((16, 24), k, np.uint8) for k in range(30)])
    )
    assert (movie["frames"], movie["width"], movie["height"], movie["window"]) == (30, 24, 16, [127.5, 255.0])
    assert pixels(taskmaster, f"/images/{movie['id']}/file", frame=29).max() == 29
    affine = np.diag([1.5, 1.5, 4.0, 1.0])
    brain = only_image(
        taskmaster, task_id, "brain.nii.gz", nifti(np.ones((10, 12, 6), np.float32), affine, compressed=True)
    )
    assert (brain["frames"], brain["width"], brain["height"]) == (6, 10, 12)
    assert brain["spacing"] == pytest.approx([4.0, 1.5, 1.5])
    shown = taskmaster.http.get(f"/images/{brain['id']}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["frames"] == 6 and shown.json()["window"] == pytest.approx([1.0, 1e-6])


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"frame": 24}, "frame 24 is out of range"),
        ({"frame": -1}, "frame -1 is out of range"),
        ({"frame": 0, "window": "wide"}, "is not 'center,width'"),
        ({"frame": 0, "window": "40,0"}, "is not 'center,width'"),
        ({"frame": 0, "window": "nan,400"}, "is not 'center,width'"),
    ],
)
def test_bad_frame_or_window_is_a_clear_422(
    embedded: EmbeddedServer, taskmaster: Api, params: dict[str, object], detail: str
) -> None:
    task_id = create_task(taskmaster)
    zip_bytes, _truth = sphere_series(shape=(24, 16, 16), radius_mm=5.0)
    image_id = only_image(taskmaster, task_id, "ct.zip", zip_bytes)["id"]
    response = taskmaster.http.get(f"/images/{image_id}/file", params=params)
    assert response.status_code == 422 and detail in response.text, response.text


def test_window_on_an_image_without_raw_values_is_a_422(embedded: EmbeddedServer, taskmaster: Api) -> None:
    # A colour DICOM is shown in colour, as uploaded (greyscale TIFF stacks now keep their values).
    task_id = create_task(taskmaster)
    movie = only_image(taskmaster, task_id, "colour.dcm", colour_dicom(np.zeros((2, 4, 4, 3), np.uint8)))
    assert movie["window"] is None
    response = taskmaster.http.get(f"/images/{movie['id']}/file", params={"window": "40,400"})
    assert response.status_code == 422 and "no raw values to window" in response.text


def test_bad_stacks_are_refused_with_their_reason(embedded: EmbeddedServer, taskmaster: Api) -> None:
    task_id = create_task(taskmaster)
    volume = np.zeros((3, 8, 8), np.uint16)
    series = series_zip(volume)
    uneven = series_zip(volume, spacing=(0.0, 0.8, 0.7))
    movie = tiff_stack([np.zeros((4, 4), np.uint8)] * 1001)
    for name, data, reason in [
        ("same.zip", uneven.zip_bytes, "two slices of the series are at the same position"),
        ("long.tif", movie, "image has more than 1000 frames"),
    ]:
        report = upload(taskmaster, task_id, name, data)
        assert report["accepted"] == [] and reason in str(report), report
    assert only_image(taskmaster, task_id, "fine.zip", series.zip_bytes)["frames"] == 3
