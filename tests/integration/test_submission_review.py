"""Review of submissions over HTTP on the embedded platform (issue 10, review).

A task master rejects the spammer's submission of one image: the image's consensus is recomputed
without it (through the submission's outbox event, as for a new submission), the image's count of
submissions drops, and `next` hands the image to a new annotator but never back to the rejected
rater. Accepting the submission again reverses the verdict. Bad input changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.embedded import Api, wait_for
from tests.integration.test_quality_control import CAREFUL, contour, crowd_task

pytestmark = pytest.mark.integration

RATERS = CAREFUL + 1


@pytest.fixture
def reviewed_crowd(taskmaster: Api, annotator_factory: Callable[[], Api]) -> dict[str, Any]:
    return crowd_task(taskmaster, annotator_factory)


def consensus_of(api: Api, image_id: str) -> dict[str, Any]:
    found = api.http.get(f"/images/{image_id}/consensus")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def submission_of(api: Api, image_id: str, user_id: str) -> str:
    (found,) = [r["submission_id"] for r in consensus_of(api, image_id)["raters"] if r["user_id"] == user_id]
    return str(found)


def image_counts(api: Api, task_id: str) -> dict[str, int]:
    return {i["id"]: i["submissions"] for i in api.http.get(f"/tasks/{task_id}/images").json()}


def test_a_rejected_submission_leaves_the_consensus_and_its_image_is_handed_out_again(
    reviewed_crowd: dict[str, Any], taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task_id, spammer = reviewed_crowd["task_id"], reviewed_crowd["spammer"]
    image_id = sorted(reviewed_crowd["drawn"])[0]
    rejected = submission_of(taskmaster, image_id, spammer)
    review_url = f"/submissions/{rejected}/review"

    outsider = annotator_factory()
    assert outsider.http.post(review_url, json={"decision": "reject"}).status_code in (403, 404)
    assert reviewed_crowd["annotators"][-1].http.post(review_url, json={"decision": "reject"}).status_code == 403
    unknown = f"/submissions/{uuid.uuid4().hex}/review"
    assert taskmaster.http.post(unknown, json={"decision": "reject"}).status_code == 404
    for bad in ({"decision": "maybe"}, {}, {"decision": "reject", "reason": 3}, {"decision": "reject", "x": 1}):
        assert taskmaster.http.post(review_url, json=bad).status_code == 422, bad
    assert consensus_of(taskmaster, image_id)["submissions"] == RATERS  # bad input changed nothing

    answer = taskmaster.http.post(review_url, json={"decision": "reject", "reason": "random blob"})
    assert answer.status_code == 200, answer.text
    review = answer.json()["review"]
    assert review["decision"] == "reject" and review["reason"] == "random blob"
    assert review["by"] == taskmaster.user["id"] and review["at"]

    wait_for(lambda: consensus_of(taskmaster, image_id)["submissions"] == RATERS - 1, 60, "the consensus without it")
    assert spammer not in {r["user_id"] for r in consensus_of(taskmaster, image_id)["raters"]}
    assert image_counts(taskmaster, task_id)[image_id] == RATERS - 1
    listed = {s["id"]: s["review"] for s in taskmaster.http.get(f"/images/{image_id}/submissions").json()}
    assert len(listed) == RATERS and listed[rejected]["decision"] == "reject"

    assert reviewed_crowd["annotators"][-1].http.get(f"/tasks/{task_id}/next").status_code == 204
    newcomer = annotator_factory()
    assert taskmaster.http.post(f"/tasks/{task_id}/members", json={"user_id": newcomer.user["id"]}).is_success
    handed = newcomer.http.get(f"/tasks/{task_id}/next")
    assert handed.status_code == 200 and handed.json()["image"]["id"] == image_id, handed.text

    again = taskmaster.http.post(review_url, json={"decision": "accept"})
    assert again.status_code == 200 and again.json()["review"]["decision"] == "accept", again.text
    wait_for(lambda: consensus_of(taskmaster, image_id)["submissions"] == RATERS, 60, "the consensus with it again")
    assert spammer in {r["user_id"] for r in consensus_of(taskmaster, image_id)["raters"]}
    assert image_counts(taskmaster, task_id)[image_id] == RATERS


def test_the_newcomer_s_submission_replaces_the_rejected_one(
    reviewed_crowd: dict[str, Any], taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task_id, spammer = reviewed_crowd["task_id"], reviewed_crowd["spammer"]
    image_id = sorted(reviewed_crowd["drawn"])[1]
    rejected = submission_of(taskmaster, image_id, spammer)
    assert taskmaster.http.post(f"/submissions/{rejected}/review", json={"decision": "reject"}).status_code == 200
    newcomer = annotator_factory()
    assert taskmaster.http.post(f"/tasks/{task_id}/members", json={"user_id": newcomer.user["id"]}).is_success
    handed = newcomer.http.get(f"/tasks/{task_id}/next").json()["image"]
    assert handed["id"] == image_id
    outline = reviewed_crowd["truth"][handed["name"]].outline
    body = {"id": str(uuid.uuid4()), "image_id": image_id, "shapes": [contour(outline)], "duration_ms": 3000}
    assert newcomer.http.post(f"/tasks/{task_id}/submissions", json=body).status_code == 201

    def with_newcomer() -> bool:
        raters = {r["user_id"] for r in consensus_of(taskmaster, image_id)["raters"]}
        return newcomer.user["id"] in raters and spammer not in raters

    wait_for(with_newcomer, 60, "the consensus with the newcomer instead of the rejected rater")
    assert consensus_of(taskmaster, image_id)["submissions"] == RATERS
    assert newcomer.http.get(f"/tasks/{task_id}/next").status_code == 204  # the image is full again
