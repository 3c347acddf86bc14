"""Quality control over HTTP on the embedded platform (issue 10, first part).

A contour task with a crowd of careful annotators and one spammer who draws random blobs: every
rater's ``quality`` is their Dice against the others' majority, computed here directly from the
masks sent; the spammer ranks last and is flagged; specificity is over the whole image. Expert
references (``PUT /images/{id}/reference``) then make quality agreement with the reference, and
``GET /tasks/{id}/evaluation`` equals Dice, Jaccard, MHD and pixel error computed from the same masks.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from collections.abc import Callable
from statistics import fmean
from typing import Any

import numpy as np
import pytest
from crowdseg.consensus.metrics import modified_hausdorff
from crowdseg.domain import Shape
from crowdseg.geometry import png_to_mask, rasterize
from crowdseg.simulation import blob_outline, careful_outline, synthetic_image

from tests.embedded import Api, wait_for

pytestmark = pytest.mark.integration

SIZE = 96
IMAGES = 6  # at least the 5 images a flag needs
CAREFUL = 4


def contour(points: list[tuple[float, float]]) -> dict[str, Any]:
    return {"type": "contour", "points": [list(p) for p in points]}


def mask_of(shapes: list[dict[str, Any]]) -> np.ndarray:
    return rasterize([Shape.model_validate(s) for s in shapes], SIZE, SIZE)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def _vote_dice(masks: list[np.ndarray], rater: int, weights: list[float]) -> float:
    """Soft Dice of one rater against the others' weighted vote, a tie counting one half."""
    others = [i for i in range(len(masks)) if i != rater]
    total = sum(weights[i] for i in others)
    if total <= 0:
        weights, total = [1.0] * len(masks), float(len(others))
    votes = np.sum([weights[i] * masks[i].astype(float) for i in others], axis=0) * 2
    target = np.where(np.isclose(votes, total), 0.5, np.where(votes > total, 1.0, 0.0))
    mine = masks[rater].astype(float)
    return float(2 * (mine * target).sum() / (mine.sum() + target.sum()))


def leave_one_out_dice(masks: list[np.ndarray], rater: int) -> float:
    """Dice against the others' vote, each weighing their Dice against the plain majority of theirs
    (by hand, not the library's)."""
    first = [_vote_dice(masks, r, [1.0] * len(masks)) for r in range(len(masks))]
    return _vote_dice(masks, rater, first)


def crowd_task(taskmaster: Api, annotator_factory: Callable[[], Api]) -> dict[str, Any]:
    """A private contour task, fully annotated by the careful crowd and one spammer."""
    raters = CAREFUL + 1
    created = taskmaster.http.post(
        "/tasks",
        json={"title": "Quality", "tool": "contour", "replicates": raters, "visibility": "private"},
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    images = [synthetic_image(i, SIZE, SIZE, seed=41) for i in range(IMAGES)]
    upload = taskmaster.http.post(
        f"/tasks/{task_id}/images", files=[("files", (im.name, im.png, "image/png")) for im in images]
    )
    assert upload.status_code == 202 and not upload.json()["rejected"], upload.text
    truth = {im.name: im for im in images}
    annotators = [annotator_factory() for _ in range(raters)]
    drawn: dict[str, dict[str, list[dict[str, Any]]]] = {}  # image id -> user id -> shapes
    names: dict[str, str] = {}
    for n, annotator in enumerate(annotators):
        assert taskmaster.http.post(f"/tasks/{task_id}/members", json={"user_id": annotator.user["id"]}).is_success
        rng = np.random.default_rng(500 + n)
        while (response := annotator.http.get(f"/tasks/{task_id}/next")).status_code == 200:
            image = response.json()["image"]
            names[image["id"]] = image["name"]
            if n < CAREFUL:
                shapes = [contour(careful_outline(truth[image["name"]].outline, rng, noise=1.0))]
            else:  # the spammer: a random blob anywhere
                centre = rng.uniform(15, SIZE - 15, size=2)
                shapes = [contour(blob_outline(rng, float(centre[0]), float(centre[1]), 10))]
            body = {"id": str(uuid.uuid4()), "image_id": image["id"], "shapes": shapes, "duration_ms": 4000}
            assert annotator.http.post(f"/tasks/{task_id}/submissions", json=body).status_code == 201
            drawn.setdefault(image["id"], {})[str(annotator.user["id"])] = shapes
        assert response.status_code == 204, response.text
    assert len(drawn) == IMAGES and all(len(by_user) == raters for by_user in drawn.values())

    def settled() -> bool:
        stats = taskmaster.http.get(f"/tasks/{task_id}/stats").json()
        return stats["consensus_images"] == IMAGES and all(
            taskmaster.http.get(f"/images/{i}/consensus").json().get("submissions") == raters for i in drawn
        )

    wait_for(settled, 120, "the consensus of every image")
    return {
        "task_id": task_id,
        "drawn": drawn,
        "names": names,
        "truth": truth,
        "annotators": annotators,
        "spammer": str(annotators[-1].user["id"]),
    }


@pytest.fixture
def crowd(taskmaster: Api, annotator_factory: Callable[[], Api]) -> dict[str, Any]:
    return crowd_task(taskmaster, annotator_factory)


def expected_qualities(drawn: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, float]:
    per_user: dict[str, list[float]] = {}
    for by_user in drawn.values():
        users = sorted(by_user)
        masks = [mask_of(by_user[u]) for u in users]
        for r, user in enumerate(users):
            per_user.setdefault(user, []).append(leave_one_out_dice(masks, r))
    return {user: fmean(values) for user, values in per_user.items()}


def test_quality_is_leave_one_out_dice_and_the_spammer_is_flagged(crowd: dict[str, Any], taskmaster: Api) -> None:
    task_id, spammer = crowd["task_id"], crowd["spammer"]
    stats = taskmaster.http.get(f"/tasks/{task_id}/stats").json()
    rows = {row["user_id"]: row for row in stats["users"]}
    expected = expected_qualities(crowd["drawn"])
    for user, quality in expected.items():
        assert rows[user]["quality"] == pytest.approx(quality, abs=1e-6)
        assert rows[user]["quality_images"] == IMAGES
    assert min(rows, key=lambda u: rows[u]["quality"]) == spammer
    assert [u for u, row in rows.items() if row["flagged"]] == [spammer]
    assert stats["flag_rule"]["k"] == 3 and stats["flag_rule"]["min_images"] == 5

    # Specificity over the whole image: the share of the consensus background each rater left empty.
    tn: dict[str, int] = {}
    negatives: dict[str, int] = {}
    for image_id, by_user in crowd["drawn"].items():
        consensus = taskmaster.http.get(f"/images/{image_id}/consensus").json()
        assert {r["user_id"]: r["flagged"] for r in consensus["raters"]}[spammer] is True
        for rater in consensus["raters"]:
            assert 0.0 <= rater["quality"] <= 1.0 and rater["quality_basis"] == "crowd"
        truth = png_to_mask(taskmaster.http.get(f"/images/{image_id}/consensus/mask.png").content)
        for user, shapes in by_user.items():
            tn[user] = tn.get(user, 0) + int((~mask_of(shapes) & ~truth).sum())
            negatives[user] = negatives.get(user, 0) + int((~truth).sum())
    for user, row in rows.items():
        assert row["specificity"] == pytest.approx(tn[user] / negatives[user], abs=0.01)
        if user != spammer:
            assert row["specificity"] > 0.97  # over the union alone a careful rater would show far less

    mine = crowd["annotators"][-1].http.get("/me/stats").json()
    assert mine["quality"] == pytest.approx(expected[spammer], abs=1e-6) and mine["quality_images"] == IMAGES
    (entry,) = [t for t in mine["per_task"] if t["task_id"] == task_id]
    assert entry["flagged"] is True and entry["quality"] == pytest.approx(expected[spammer], abs=1e-6)


def export_bundle(api: Api, task_id: str) -> zipfile.ZipFile:
    started = api.http.post(f"/tasks/{task_id}/exports")
    assert started.status_code == 202, started.text
    export_id = started.json()["id"]
    wait_for(lambda: api.http.get(f"/exports/{export_id}").json()["status"] == "done", 120, "the export")
    return zipfile.ZipFile(io.BytesIO(api.http.get(f"/exports/{export_id}/download").content))


def test_references_make_quality_and_evaluation_agree_with_a_direct_computation(
    crowd: dict[str, Any], taskmaster: Api
) -> None:
    task_id, drawn, names, truth = crowd["task_id"], crowd["drawn"], crowd["names"], crowd["truth"]
    annotator = crowd["annotators"][0]
    referenced = sorted(drawn)[:3]
    first = referenced[0]
    outline = [contour(truth[names[first]].outline)]
    assert taskmaster.http.get(f"/images/{first}/reference").status_code == 404  # none yet
    assert annotator.http.put(f"/images/{first}/reference", json={"shapes": outline}).status_code == 403
    assert taskmaster.http.put(f"/images/{uuid.uuid4().hex}/reference", json={"shapes": outline}).status_code == 404
    for bad in ([], [{"type": "point", "points": [[5, 5]]}], [{"type": "contour", "points": [[1, 1], [2, 2]]}]):
        assert taskmaster.http.put(f"/images/{first}/reference", json={"shapes": bad}).status_code == 422, bad
    assert taskmaster.http.get(f"/images/{first}/reference").status_code == 404  # bad input changed nothing

    references: dict[str, np.ndarray] = {}
    for image_id in referenced:
        shapes = [contour(truth[names[image_id]].outline)]
        stored = taskmaster.http.put(f"/images/{image_id}/reference", json={"shapes": shapes})
        assert stored.status_code == 200, stored.text
        assert stored.json()["version"] == 1 and stored.json()["updated_by"] == taskmaster.user["id"]
        got = taskmaster.http.get(f"/images/{image_id}/reference").json()
        assert got["shapes"] == [{**shapes[0], "label": None}]
        references[image_id] = mask_of(shapes)
    listed = {i["id"]: i["reference"] for i in taskmaster.http.get(f"/tasks/{task_id}/images").json()}
    assert {i for i, has in listed.items() if has} == set(referenced)

    # Quality: agreement with the reference on referenced images, leave-one-out on the others.
    per_user: dict[str, list[float]] = {}
    for image_id, by_user in drawn.items():
        users = sorted(by_user)
        masks = [mask_of(by_user[u]) for u in users]
        consensus = taskmaster.http.get(f"/images/{image_id}/consensus").json()
        basis = {r["user_id"]: r["quality_basis"] for r in consensus["raters"]}
        for r, user in enumerate(users):
            if image_id in references:
                value = dice(masks[r], references[image_id])
                assert basis[user] == "reference"
            else:
                value = leave_one_out_dice(masks, r)
                assert basis[user] == "crowd"
            per_user.setdefault(user, []).append(value)
    rows = {row["user_id"]: row for row in taskmaster.http.get(f"/tasks/{task_id}/stats").json()["users"]}
    for user, values in per_user.items():
        assert rows[user]["quality"] == pytest.approx(fmean(values), abs=1e-6)
        assert rows[user]["quality_images"] == IMAGES  # rescored, not counted twice
    assert rows[crowd["spammer"]]["flagged"] is True

    # Evaluation: the consensus masks and every rater's against the references.
    evaluation = taskmaster.http.get(f"/tasks/{task_id}/evaluation")
    assert evaluation.status_code == 200, evaluation.text
    assert annotator.http.get(f"/tasks/{task_id}/evaluation").status_code == 403
    found = evaluation.json()
    assert found["images"] == len(referenced)
    figures: list[dict[str, float]] = []
    raters: dict[str, list[dict[str, float]]] = {}
    for image_id, reference in references.items():
        mask = png_to_mask(taskmaster.http.get(f"/images/{image_id}/consensus/mask.png").content)
        boundary = modified_hausdorff(mask, reference)
        figures.append(
            {
                "dice": dice(mask, reference),
                "jaccard": jaccard(mask, reference),
                "mhd": boundary,
                "pixel_error": float((mask != reference).mean()),
            }
        )
        for user, shapes in drawn[image_id].items():
            mine = mask_of(shapes)
            raters.setdefault(user, []).append(
                {
                    "dice": dice(mine, reference),
                    "jaccard": jaccard(mine, reference),
                    "sensitivity": float((mine & reference).sum() / reference.sum()),
                    "specificity": float((~mine & ~reference).sum() / (~reference).sum()),
                }
            )
    for name in ("dice", "jaccard", "mhd", "pixel_error"):
        assert found["consensus"][name] == pytest.approx(fmean(f[name] for f in figures), abs=1e-6), name
    assert found["consensus"]["dice"] > 0.9
    by_user = {row["user_id"]: row for row in found["raters"]}
    assert set(by_user) == set(raters)
    for user, rows_of_user in raters.items():
        assert by_user[user]["images"] == len(referenced)
        for name in ("dice", "jaccard", "sensitivity", "specificity"):
            assert by_user[user][name] == pytest.approx(fmean(r[name] for r in rows_of_user), abs=1e-6), name
    assert min(by_user, key=lambda u: by_user[u]["dice"]) == crowd["spammer"]

    archive = export_bundle(taskmaster, task_id)
    assert json.loads(archive.read("evaluation.json")) == found
    assert len([n for n in archive.namelist() if n.startswith("references/")]) == len(referenced)
    performance = list(csv.DictReader(io.StringIO(archive.read("user_performance.csv").decode())))
    assert {row["user_id"]: row["flagged"] for row in performance}[crowd["spammer"]] in ("True", "true")
    assert all(float(row["quality"]) == pytest.approx(fmean(per_user[row["user_id"]]), abs=1e-5) for row in performance)
    assert b"quality" in archive.read("quality.md")


def test_point_evaluation_is_precision_recall_and_rmse_within_the_radius(
    taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    created = taskmaster.http.post(
        "/tasks", json={"title": "Cells", "tool": "point", "replicates": 3, "visibility": "private"}
    )
    task_id = created.json()["id"]
    image = synthetic_image(0, SIZE, SIZE, seed=43)
    assert taskmaster.http.post(
        f"/tasks/{task_id}/images", files=[("files", (image.name, image.png, "image/png"))]
    ).is_success
    (image_id,) = [i["id"] for i in taskmaster.http.get(f"/tasks/{task_id}/images").json()]
    cells = np.asarray(image.cells)
    offsets = [np.array([1.0, 0.0]), np.array([0.0, -1.5]), np.array([2.0, 1.0])]
    clicks = [cells + offsets[0], cells[:-1] + offsets[1], np.vstack([cells[:2] + offsets[2], [[3.0, 3.0]]])]
    users = []
    for points in clicks:
        annotator = annotator_factory()
        users.append(str(annotator.user["id"]))
        assert taskmaster.http.post(f"/tasks/{task_id}/members", json={"user_id": annotator.user["id"]}).is_success
        assert annotator.http.get(f"/tasks/{task_id}/next").status_code == 200
        body = {
            "id": str(uuid.uuid4()),
            "image_id": image_id,
            "shapes": [{"type": "point", "points": [list(map(float, p))]} for p in points],
        }
        assert annotator.http.post(f"/tasks/{task_id}/submissions", json=body).status_code == 201
    wait_for(
        lambda: taskmaster.http.get(f"/images/{image_id}/consensus").json().get("submissions") == 3, 60, "consensus"
    )
    reference = [{"type": "point", "points": [list(c)]} for c in cells]
    assert taskmaster.http.put(f"/images/{image_id}/reference", json={"shapes": reference}).status_code == 200
    consensus = taskmaster.http.get(f"/images/{image_id}/consensus").json()
    radius = consensus["radius"]
    assert radius > 2.5  # every careful click lies within it
    found = taskmaster.http.get(f"/tasks/{task_id}/evaluation").json()
    assert found["images"] == 1

    def expected(points: np.ndarray) -> dict[str, float | None]:
        """Nearest reference cell within the radius (cells lie far apart, so matching is unambiguous)."""
        distances = [float(np.min(np.linalg.norm(cells - p, axis=1))) for p in points]
        hits = [d for d in distances if d <= radius]
        return {
            "precision": len(hits) / len(points),
            "recall": len(hits) / len(cells),
            "rmse": float(np.sqrt(np.mean(np.square(hits)))) if hits else None,
        }

    centres = np.asarray([[p["x"], p["y"]] for p in consensus["points"]])
    for name, value in expected(centres).items():
        assert found["consensus"][name] == pytest.approx(value, abs=1e-6), name
    by_user = {row["user_id"]: row for row in found["raters"]}
    for user, points in zip(users, clicks, strict=True):
        for name, value in expected(points).items():
            assert by_user[user][name] == pytest.approx(value, abs=1e-6), (user, name)
    qualities = {r["user_id"]: r["quality"] for r in consensus["raters"]}
    for user, points in zip(users, clicks, strict=True):
        e = expected(points)
        hits = round(e["precision"] * len(points))  # type: ignore[operator]
        assert qualities[user] == pytest.approx(2 * hits / (len(points) + len(cells)), abs=1e-6)
