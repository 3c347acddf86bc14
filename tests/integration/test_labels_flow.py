"""Task labels end to end on the embedded profile (issue 11): validation, and a consensus per label.

A contour task with two exclusive labels ("cell", "nucleus"): four annotators outline the big object
as a cell and a small disc inside it as a nucleus; the consensus has one entry per label with its
raters' scores, ``mask.png`` is the label map and ``?label=`` each label's mask. A point task with two
labels clusters each label's clicks on their own.
"""

from __future__ import annotations

import io
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from crowdseg.simulation import SyntheticImage, careful_clicks, careful_outline, synthetic_image
from PIL import Image as PILImage

from tests.embedded import Api, wait_for
from tests.integration.test_tools_flow import export_bundle

pytestmark = pytest.mark.integration

ANNOTATORS = 4
LABELS = [{"name": "cell", "color": "#ff0000"}, {"name": "nucleus", "color": "#00ff00"}]
Point = tuple[float, float]


def disc(centre: Point, radius: float, vertices: int = 24) -> list[list[float]]:
    cx, cy = centre
    return [
        [cx + radius * math.cos(2 * math.pi * k / vertices), cy + radius * math.sin(2 * math.pi * k / vertices)]
        for k in range(vertices)
    ]


def labelled_task(taskmaster: Api, tool: str, **fields: Any) -> str:
    created = taskmaster.http.post(
        "/tasks",
        json={"title": f"Labelled {tool}s", "tool": tool, "replicates": ANNOTATORS, "visibility": "private",
              "labels": LABELS, **fields},
    )
    assert created.status_code == 201, created.text
    assert created.json()["labels"] == LABELS and created.json()["labels_exclusive"] is True
    return str(created.json()["id"])


def upload(taskmaster: Api, task_id: str, image: SyntheticImage) -> str:
    response = taskmaster.http.post(f"/tasks/{task_id}/images", files=[("files", (image.name, image.png, "image/png"))])
    assert response.status_code == 202 and response.json()["rejected"] == [], response.text
    return str(response.json()["accepted"][0]["id"])


def members(taskmaster: Api, task_id: str, annotator_factory: Callable[[], Api]) -> list[Api]:
    annotators = [annotator_factory() for _ in range(ANNOTATORS)]
    for annotator in annotators:
        added = taskmaster.http.post(f"/tasks/{task_id}/members", json={"user_id": annotator.user["id"]})
        assert added.status_code == 200, added.text
    return annotators


def labelled_work(
    taskmaster: Api, tool: str, annotator_factory: Callable[[], Api], image: SyntheticImage, **fields: Any
) -> tuple[str, str, list[Api]]:
    """A private labelled task of one image, and its annotators: (task id, image id, annotators)."""
    task_id = labelled_task(taskmaster, tool, **fields)
    image_id = upload(taskmaster, task_id, image)
    return task_id, image_id, members(taskmaster, task_id, annotator_factory)


def submit(annotator: Api, task_id: str, image_id: str, shapes: list[dict[str, Any]]) -> Any:
    return annotator.http.post(
        f"/tasks/{task_id}/submissions", json={"id": str(uuid.uuid4()), "image_id": image_id, "shapes": shapes}
    )


def settled(taskmaster: Api, image_id: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        response = taskmaster.http.get(f"/images/{image_id}/consensus")
        found: dict[str, Any] = response.json()
        return found if response.status_code == 200 and found["submissions"] == ANNOTATORS else None

    result: dict[str, Any] = wait_for(ready, 120, "the consensus over every submission")
    return result


def png(taskmaster: Api, url: str) -> np.ndarray[Any, Any]:
    response = taskmaster.http.get(url)
    assert response.status_code == 200, response.text
    with PILImage.open(io.BytesIO(response.content)) as image:
        return np.asarray(image)


def test_task_labels_are_validated_on_create_and_patch(taskmaster: Api) -> None:
    base = {"title": "Bad labels", "tool": "contour"}
    bad = [
        [],
        [{"name": "a", "color": "red"}],
        [{"name": "", "color": "#000000"}],
        [{"name": "x" * 65, "color": "#000000"}],
        [{"name": "a", "color": "#000000"}, {"name": "a", "color": "#ffffff"}],
        [{"name": f"l{i}", "color": "#000000"} for i in range(51)],
    ]
    before = len(taskmaster.http.get("/tasks").json())
    for labels in bad:
        response = taskmaster.http.post("/tasks", json={**base, "labels": labels})
        assert response.status_code == 422, (labels, response.text)
    assert len(taskmaster.http.get("/tasks").json()) == before
    task_id = labelled_task(taskmaster, "contour")
    assert taskmaster.http.patch(f"/tasks/{task_id}", json={"labels": bad[4]}).status_code == 422
    assert taskmaster.http.get(f"/tasks/{task_id}").json()["labels"] == LABELS
    renamed = [LABELS[1], LABELS[0]]
    assert taskmaster.http.patch(f"/tasks/{task_id}", json={"labels": renamed}).json()["labels"] == renamed


def test_labelled_shapes_are_required_and_labels_freeze_once_submitted(
    taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    image = synthetic_image(0, seed=31)
    task_id, image_id, [annotator, *_] = labelled_work(taskmaster, "polygon", annotator_factory, image)
    outline = [list(p) for p in image.outline]
    for label in (None, "mitochondrion"):
        refused = submit(annotator, task_id, image_id, [{"type": "polygon", "points": outline, "label": label}])
        assert refused.status_code == 422, refused.text
        assert "cell, nucleus" in refused.json()["detail"]
    assert taskmaster.http.get(f"/tasks/{task_id}/images").json()[0]["submissions"] == 0
    stored = submit(annotator, task_id, image_id, [{"type": "polygon", "points": outline, "label": "cell"}])
    assert stored.status_code == 201, stored.text

    reordered = taskmaster.http.patch(f"/tasks/{task_id}", json={"labels": [LABELS[1], LABELS[0]]})
    assert reordered.status_code == 409 and "added to" in reordered.json()["detail"], reordered.text
    overlapping = taskmaster.http.patch(f"/tasks/{task_id}", json={"labels_exclusive": False})
    assert overlapping.status_code == 409, overlapping.text
    assert taskmaster.http.get(f"/tasks/{task_id}").json()["labels"] == LABELS
    grown = [*LABELS, {"name": "vesicle", "color": "#0000ff"}]
    added = taskmaster.http.patch(f"/tasks/{task_id}", json={"labels": grown})
    assert added.status_code == 200 and added.json()["labels"] == grown, added.text


def test_a_two_label_contour_task_gives_a_consensus_per_label(
    taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    image = synthetic_image(1, seed=29)
    task_id, image_id, annotators = labelled_work(taskmaster, "contour", annotator_factory, image)
    cx, cy = np.asarray(image.outline).mean(axis=0)  # the blob's centre, well inside it
    nucleus = (float(cx), float(cy))
    for n, annotator in enumerate(annotators):
        rng = np.random.default_rng(50 + n)
        shapes = [
            {"type": "contour", "points": [list(p) for p in careful_outline(image.outline, rng, noise=1.0)],
             "label": "cell"},
            {"type": "contour", "points": disc(nucleus, 6 + rng.uniform(-0.5, 0.5)), "label": "nucleus"},
        ]
        assert submit(annotator, task_id, image_id, shapes).status_code == 201

    consensus = settled(taskmaster, image_id)
    by_label = {entry["label"]: entry for entry in consensus["labels"]}
    assert [entry["index"] for entry in consensus["labels"]] == [1, 2]
    assert set(by_label) == {"cell", "nucleus"}
    for entry in by_label.values():
        assert entry["pixels"] > 0
        assert len(entry["raters"]) == ANNOTATORS
        assert all(r["quality"] is not None and r["quality"] > 0.8 for r in entry["raters"]), entry
    assert by_label["nucleus"]["pixels"] < by_label["cell"]["pixels"]

    label_map = png(taskmaster, f"/images/{image_id}/consensus/mask.png")
    assert set(np.unique(label_map)) == {0, 1, 2}
    x, y = (round(v) for v in nucleus)
    assert label_map[y, x] == 2  # the nucleus lies inside the cell; exclusive labels give it the nucleus
    for index, entry in enumerate(consensus["labels"], start=1):
        mask = png(taskmaster, f"/images/{image_id}/consensus/mask.png?label={entry['label']}")
        assert set(np.unique(mask)) == {0, 255}
        assert np.array_equal(mask == 255, label_map == index)
    unknown = taskmaster.http.get(f"/images/{image_id}/consensus/mask.png?label=vesicle")
    assert unknown.status_code == 404 and "cell, nucleus" in unknown.json()["detail"]
    check_label_export(taskmaster, task_id)


def check_label_export(taskmaster: Api, task_id: str) -> None:
    """COCO's categories are the labels; the consensus holds one mask object per label."""
    archive = export_bundle(taskmaster, task_id)
    coco = json.loads(archive.read("coco/consensus.json"))
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "cell"), (2, "nucleus")]
    assert sorted(a["category_id"] for a in coco["annotations"]) == [1, 2]
    raw = json.loads(archive.read("coco/annotations.json"))
    assert sorted({a["category_id"] for a in raw["annotations"]}) == [1, 2]
    names = archive.namelist()
    assert any(name.endswith("/labels/nucleus.png") for name in names)
    assert any(name.endswith("/labels.png") for name in names)


def test_a_two_label_point_task_clusters_each_label(taskmaster: Api, annotator_factory: Callable[[], Api]) -> None:
    image = synthetic_image(2, seed=37)
    task_id, image_id, annotators = labelled_work(taskmaster, "point", annotator_factory, image, max_shapes=50)
    half = len(image.cells) // 2
    for n, annotator in enumerate(annotators):
        clicks = careful_clicks(image.cells, np.random.default_rng(70 + n))
        shapes = [
            {"type": "point", "points": [list(click)], "label": "cell" if i < half else "nucleus"}
            for i, click in enumerate(clicks)
        ]
        assert submit(annotator, task_id, image_id, shapes).status_code == 201

    consensus = settled(taskmaster, image_id)
    by_label = {entry["label"]: entry for entry in consensus["labels"]}
    assert len(by_label["cell"]["points"]) == half
    assert len(by_label["nucleus"]["points"]) == len(image.cells) - half
    assert len(consensus["points"]) == len(image.cells)
    for entry in by_label.values():
        assert all(r["precision"] == 1.0 and r["recall"] == 1.0 for r in entry["raters"]), entry
