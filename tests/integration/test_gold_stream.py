"""Gold in the stream over HTTP on the embedded platform (issue 10, "Gold in the stream").

A contour task with ``gold_rate``: ``next`` mixes the images that have an expert reference into an
annotator's stream exactly when the schedule's draw for their count says so (the draw is a hash, so
the test predicts every answer), the gold answer's score equals Dice against the reference computed
here, the answer shows the reference (``gold_feedback``), a gold image never enters a consensus nor
takes a replicate's slot, the rater's ``quality`` is their gold scores, and the export marks them.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from statistics import fmean
from typing import Any

import numpy as np
import pytest
from crowdseg.services.assign.gold import gold_share, serves_gold
from crowdseg.simulation import careful_outline, synthetic_image

from tests.embedded import Api, wait_for
from tests.integration.test_quality_control import SIZE, contour, dice, export_bundle, mask_of

pytestmark = pytest.mark.integration

IMAGES = 40
GOLD = 8
RATE = 0.4


def new_task(taskmaster: Api) -> str:
    body = {"title": "Gold", "tool": "contour", "replicates": 1, "visibility": "private"}
    for bad in (1.5, -0.1, "0.3", True, None):
        refused = taskmaster.http.post("/tasks", json={**body, "gold_rate": bad})
        assert refused.status_code == 422, (bad, refused.text)
    assert taskmaster.http.post("/tasks", json={**body, "gold_feedback": "yes"}).status_code == 422
    created = taskmaster.http.post("/tasks", json={**body, "gold_rate": RATE, "gold_feedback": True})
    assert created.status_code == 201, created.text
    assert created.json()["gold_rate"] == RATE and created.json()["gold_feedback"] is True
    task_id: str = created.json()["id"]
    for bad in (2, "high", True):
        assert taskmaster.http.patch(f"/tasks/{task_id}", json={"gold_rate": bad}).status_code == 422, bad
    assert taskmaster.http.get(f"/tasks/{task_id}").json()["gold_rate"] == RATE  # bad input changed nothing
    return task_id


def member(taskmaster: Api, task_id: str, annotator_factory: Callable[[], Api]) -> Api:
    annotator = annotator_factory()
    assert taskmaster.http.post(f"/tasks/{task_id}/members", json={"user_id": annotator.user["id"]}).is_success
    return annotator


def test_gold_comes_at_the_scheduled_share_scores_the_rater_and_never_enters_a_consensus(
    taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task_id = new_task(taskmaster)
    images = {im.name: im for im in (synthetic_image(i, SIZE, SIZE, seed=77) for i in range(IMAGES))}
    upload = taskmaster.http.post(
        f"/tasks/{task_id}/images", files=[("files", (im.name, im.png, "image/png")) for im in images.values()]
    )
    assert upload.status_code == 202 and not upload.json()["rejected"], upload.text
    ids = {i["name"]: i["id"] for i in upload.json()["accepted"]}
    ann = member(taskmaster, task_id, annotator_factory)
    user_id = str(ann.user["id"])
    rng = np.random.default_rng(7)

    def submit(image: dict[str, Any]) -> dict[str, Any]:
        shapes = [contour(careful_outline(images[image["name"]].outline, rng, noise=1.5))]
        body = {"id": uuid.uuid4().hex, "image_id": image["id"], "shapes": shapes}
        answer = ann.http.post(f"/tasks/{task_id}/submissions", json=body)
        assert answer.status_code == 201, answer.text
        return {"shapes": shapes, **answer.json()}

    # The first `next` builds the task's selection before any reference exists: the references set
    # afterwards reach it through image.referenced.
    first = ann.http.get(f"/tasks/{task_id}/next").json()["image"]
    submit(first)
    references = {ids[name]: [contour(images[name].outline)] for name in sorted(ids) if ids[name] != first["id"]}
    references = dict(list(references.items())[:GOLD])
    for image_id, shapes in references.items():
        assert taskmaster.http.put(f"/images/{image_id}/reference", json={"shapes": shapes}).status_code == 200

    # A probe at gold_rate 1 (every first answer gold) sees the gold set once the events are in; it
    # gives back every lease it takes.
    assert taskmaster.http.patch(f"/tasks/{task_id}", json={"gold_rate": 1}).status_code == 200
    probe = member(taskmaster, task_id, annotator_factory)
    held: list[str] = []

    def probe_gets_gold() -> bool:
        got = probe.http.get(f"/tasks/{task_id}/next", params={"skip": held})
        held[:] = [got.json()["image"]["id"]]
        return held[0] in references

    wait_for(probe_gets_gold, 60, "the gold set in the selection")
    assert probe.http.get(f"/tasks/{task_id}/next", params={"skip": held}).status_code in (200, 204)
    assert taskmaster.http.patch(f"/tasks/{task_id}", json={"gold_rate": RATE}).status_code == 200

    done, gold_answers, predicted_shares = 1, [], []
    while (response := ann.http.get(f"/tasks/{task_id}/next")).status_code == 200:
        image = response.json()["image"]
        gold_left = len(references) > len(gold_answers)
        expected_gold = serves_gold(RATE, task_id, user_id, done) and gold_left
        assert (image["id"] in references) == expected_gold, (done, image)
        predicted_shares.append(gold_share(RATE, done))
        answer = submit(image)
        done += 1
        if expected_gold:
            gold_answers.append(answer)
            truth = mask_of(references[image["id"]])
            assert answer["gold"]["metric"] == "dice"
            assert answer["gold"]["score"] == pytest.approx(dice(mask_of(answer["shapes"]), truth), abs=1e-6)
            assert answer["gold"]["quality"] == pytest.approx(answer["gold"]["score"], abs=1e-6)
            shown = [(s["type"], s["points"]) for s in answer["reference"]]  # gold_feedback
            assert shown == [(s["type"], s["points"]) for s in references[image["id"]]]
        else:
            assert answer["gold"] is None and answer["reference"] is None
    assert response.status_code == 204, response.text
    assert done - len(gold_answers) == IMAGES - GOLD  # every crowd image, gold or not as drawn
    assert 0 < len(gold_answers) <= GOLD
    # about the scheduled share: the served gold against the schedule's expectation while gold was left
    assert abs(len(gold_answers) - sum(predicted_shares)) < 4 * np.sqrt(sum(predicted_shares)) + 1

    # Gold takes no replicate's slot: with replicates 1 and the image answered, another annotator
    # still gets it as gold (gold_rate 1: the first answer is gold).
    assert taskmaster.http.patch(f"/tasks/{task_id}", json={"gold_rate": 1, "gold_feedback": False}).is_success
    second = member(taskmaster, task_id, annotator_factory)
    got = second.http.get(f"/tasks/{task_id}/next")
    assert got.status_code == 200 and got.json()["image"]["id"] in references
    answered = {a["image_id"] for a in gold_answers}
    shapes = [contour(images[got.json()["image"]["name"]].outline)]
    body = {"id": uuid.uuid4().hex, "image_id": got.json()["image"]["id"], "shapes": shapes}
    exact = second.http.post(f"/tasks/{task_id}/submissions", json=body).json()
    assert exact["gold"]["score"] == pytest.approx(1.0) and exact["reference"] is None  # no feedback now

    # Never a consensus for a gold image; the crowd images have theirs.
    crowd = set(ids.values()) - set(references)
    stats = wait_for(
        lambda: (s := taskmaster.http.get(f"/tasks/{task_id}/stats").json())["consensus_images"] >= len(crowd) and s,
        120,
        "the consensus of every crowd image",
    )
    assert stats["consensus_images"] == len(crowd)
    for image_id in references:
        assert taskmaster.http.get(f"/images/{image_id}/consensus").status_code == 404
    for image_id in list(crowd)[:3]:
        assert taskmaster.http.get(f"/images/{image_id}/consensus").json()["submissions"] == 1

    # Quality: a lone rater of a crowd image has none there, so theirs is the mean of their gold scores.
    rows = {row["user_id"]: row for row in stats["users"]}
    assert rows[user_id]["quality"] == pytest.approx(fmean(a["gold"]["quality"] for a in gold_answers), abs=1e-6)
    assert rows[user_id]["quality_images"] == len(gold_answers)
    assert rows[str(second.user["id"])]["quality"] == pytest.approx(1.0)

    # The evaluation measures every rater against the references, on gold images too (no consensus there).
    evaluation = taskmaster.http.get(f"/tasks/{task_id}/evaluation").json()
    assert evaluation["images"] == 0  # no reference image has a consensus
    (mine,) = [r for r in evaluation["raters"] if r["user_id"] == user_id]
    assert mine["images"] == len(gold_answers)
    assert mine["dice"] == pytest.approx(fmean(a["gold"]["score"] for a in gold_answers), abs=1e-3)

    # The export has every submission, gold ones marked.
    bundle = export_bundle(taskmaster, task_id)
    table = json.loads(bundle.read("tables/submissions.json"))
    marked = {row["id"] for row in table if row["gold"]}
    assert marked == {a["id"] for a in gold_answers} | {exact["id"]}
    assert answered <= set(references)
    rows_csv = list(csv.DictReader(io.StringIO(bundle.read("tables/submissions.csv").decode())))
    assert {r["id"] for r in rows_csv if r["gold"] == "True"} == marked
    assert {r["id"]: float(r["gold_score"]) for r in rows_csv if r["gold"] == "True"}[exact["id"]] == 1.0
