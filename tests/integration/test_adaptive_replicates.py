"""Adaptive replicates over HTTP on the embedded platform (issue 10).

``replicates=5, min_replicates=2``: on the clear image two annotators trace the object exactly, its
consensus is certain and the image retires (no third annotator gets it); on the contested image every
annotator draws a circle of another size, so it keeps drawing annotators up to five. Bad settings get a
422 and change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from math import cos, pi, sin
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.embedded import Api, wait_for
from tests.integration.test_quality_control import SIZE, contour

pytestmark = pytest.mark.integration

RADII = (6, 22, 12, 30, 16, 26)


def circle(radius: float) -> dict[str, Any]:
    return contour([(48 + radius * cos(2 * pi * k / 48), 48 + radius * sin(2 * pi * k / 48)) for k in range(48)])


def test_a_clear_image_retires_early_and_a_contested_one_draws_up_to_replicates(
    taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    fields = {"title": "Adaptive", "tool": "contour", "replicates": 5, "visibility": "private"}
    for bad in ({"min_replicates": 6}, {"min_replicates": 0}, {"confidence": 1.5}, {"confidence": True}):
        refused = taskmaster.http.post("/tasks", json={**fields, **bad})
        assert refused.status_code == 422, (bad, refused.text)
    created = taskmaster.http.post("/tasks", json={**fields, "min_replicates": 2, "confidence": 0.9})
    assert created.status_code == 201, created.text
    task = created.json()
    assert (task["min_replicates"], task["confidence"]) == (2, 0.9)
    task_id = task["id"]
    patched = taskmaster.http.patch(f"/tasks/{task_id}", json={"min_replicates": 6})
    assert patched.status_code == 422, patched.text
    assert taskmaster.http.patch(f"/tasks/{task_id}", json={"replicates": 1}).status_code == 422
    assert taskmaster.http.get(f"/tasks/{task_id}").json()["min_replicates"] == 2  # nothing changed

    clear, contested = (synthetic_image(i, SIZE, SIZE, seed=43) for i in range(2))
    upload = taskmaster.http.post(
        f"/tasks/{task_id}/images", files=[("files", (im.name, im.png, "image/png")) for im in (clear, contested)]
    )
    assert upload.status_code == 202 and not upload.json()["rejected"], upload.text
    drawn: dict[str, int] = {}  # image name -> submissions
    ids: dict[str, str] = {}
    for n, radius in enumerate(RADII):
        annotator = annotator_factory()
        assert taskmaster.http.post(f"/tasks/{task_id}/members", json={"user_id": annotator.user["id"]}).is_success
        while (response := annotator.http.get(f"/tasks/{task_id}/next")).status_code == 200:
            image = response.json()["image"]
            ids[image["name"]] = image["id"]
            shapes = [contour(clear.outline)] if image["name"] == clear.name else [circle(radius)]
            body = {"id": str(uuid.uuid4()), "image_id": image["id"], "shapes": shapes, "duration_ms": 3000}
            assert annotator.http.post(f"/tasks/{task_id}/submissions", json=body).status_code == 201, n
            drawn[image["name"]] = drawn.get(image["name"], 0) + 1
        assert response.status_code == 204, response.text

        def caught_up() -> bool:
            return all(
                taskmaster.http.get(f"/images/{ids[name]}/consensus").json().get("submissions") == count
                for name, count in drawn.items()
            )

        wait_for(caught_up, 60, "the consensus of every image drawn so far")

    assert drawn == {clear.name: 2, contested.name: 5}
    retired = taskmaster.http.get(f"/images/{ids[clear.name]}/consensus").json()
    assert retired["retired"] and retired["certainty"] == pytest.approx(1.0)
    open_one = taskmaster.http.get(f"/images/{ids[contested.name]}/consensus").json()
    assert not open_one["retired"] and open_one["certainty"] < 0.9
    coverage = {row["name"]: row for row in taskmaster.http.get(f"/tasks/{task_id}/coverage").json()}
    assert coverage[clear.name]["complete"] and coverage[clear.name]["retired"]
    assert coverage[contested.name]["complete"] and not coverage[contested.name]["retired"]
    stats = taskmaster.http.get(f"/tasks/{task_id}/stats").json()
    assert (stats["complete"], stats["coverage"]) == (2, {"0": 0, "1": 0, "2": 1, "3": 0, "4": 0, "5": 1})


def test_min_replicates_null_is_fixed_coverage_again(taskmaster: Api) -> None:
    fields = {"title": "Adaptive", "tool": "point", "replicates": 4, "min_replicates": 2, "visibility": "private"}
    task_id = taskmaster.http.post("/tasks", json=fields).json()["id"]
    back = taskmaster.http.patch(f"/tasks/{task_id}", json={"min_replicates": None})
    assert back.status_code == 200 and back.json()["min_replicates"] == 4, back.text
    fewer = taskmaster.http.patch(f"/tasks/{task_id}", json={"replicates": 3})  # follows replicates
    assert fewer.status_code == 200 and fewer.json()["min_replicates"] == 3, fewer.text
