"""The same request many times at once on the embedded profile (issue 9 item 1): one submission id
replayed, fresh ids for one image and user, one upload, one export request, one role change and one
qualification attempt, each fired together (scenarios in tests/storms.py, shared with the cluster
profile's tests/cluster/test_cluster_storms.py). Whatever the interleaving: one outcome, never a 5xx."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest
from crowdseg.simulation import synthetic_image

from tests.concurrency import crowd_session, sign_up_crowd
from tests.embedded import Api, EmbeddedServer, wait_for
from tests.integration.test_work_rules import create_task, square, upload
from tests.storms import (
    fresh_ids_for_one_image,
    one_attempt,
    one_export_request,
    one_review,
    one_role_change,
    one_upload,
    replays_of_one_submission,
)

pytestmark = pytest.mark.integration

COPIES = 12


def token_of(api: Api) -> str:
    return str(api.http.headers["Authorization"])[7:]


def mask_files(embedded: EmbeddedServer, task_id: object, image_id: str) -> list[str]:
    folder = Path(embedded.data_dir) / "objects" / "masks" / str(task_id) / image_id
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


async def test_replays_of_one_submission_store_it_once_and_never_answer_500(
    embedded: EmbeddedServer, taskmaster: Api
) -> None:
    """issue 9 item 1: simultaneous identical submissions with one new id answered e.g. [200, 200, 201,
    500, 500, ...]: the file blob store wrote every key through one fixed `.partial` file, and each losing
    request left its mask behind. Now: one 201, the rest 200 with the same record, and no mask blob at all
    (issue 8: the shapes are the record; the consensus and the export rasterise them)."""
    task = create_task(taskmaster, replicates=3)
    (image,) = upload(taskmaster, task["id"], 1)
    api = f"{embedded.url}/api/v1"
    async with crowd_session() as session:
        (token,) = await sign_up_crowd(session, api, f"replay-{task['id']}", 1)
        await replays_of_one_submission(session, api, str(task["id"]), image["id"], token, COPIES)
    assert mask_files(embedded, task["id"], image["id"]) == []
    assert taskmaster.http.get(f"/tasks/{task['id']}/stats").json()["submissions"] == 1


async def test_fresh_ids_for_one_image_at_once_let_exactly_one_in(embedded: EmbeddedServer, taskmaster: Api) -> None:
    """issue 9 item 1: racing submissions with distinct ids for one image and user (two tabs): one 201,
    the others 409, and no request leaves a mask blob behind (issue 8: none is written)."""
    task = create_task(taskmaster, replicates=3)
    (image,) = upload(taskmaster, task["id"], 1)
    api = f"{embedded.url}/api/v1"
    async with crowd_session() as session:
        (token,) = await sign_up_crowd(session, api, f"tabs-{task['id']}", 1)
        await fresh_ids_for_one_image(session, api, str(task["id"]), image["id"], token, COPIES)
    assert mask_files(embedded, task["id"], image["id"]) == []
    assert taskmaster.http.get(f"/tasks/{task['id']}/stats").json()["submissions"] == 1


async def test_one_upload_at_once_stores_each_name_once(embedded: EmbeddedServer, taskmaster: Api) -> None:
    """issue 9 item 1 (uploads): the same upload sent many times at once stores the image once; the
    others are a clear 4xx naming the duplicate, never a 5xx."""
    task = create_task(taskmaster)
    png = synthetic_image(5, 48, 48, seed=11).png
    async with crowd_session() as session:
        await one_upload(session, f"{embedded.url}/api/v1", str(task["id"]), token_of(taskmaster), COPIES, png)


async def test_one_export_request_at_once_builds_every_export(embedded: EmbeddedServer, taskmaster: Api) -> None:
    """issue 9 item 1 (exports): export requests fired together are each accepted and each finishes."""
    task = create_task(taskmaster)
    upload(taskmaster, task["id"], 2)
    async with crowd_session() as session:
        await one_export_request(session, f"{embedded.url}/api/v1", str(task["id"]), token_of(taskmaster), 6)


async def test_one_role_change_at_once_has_one_outcome(embedded: EmbeddedServer, admin: Api) -> None:
    """issue 9 item 1 (role changes): the same role change fired together answers 200 every time and
    leaves the roles asked for."""
    target = Api.sign_up(embedded.url, f"roles-{uuid.uuid4().hex[:8]}@embedded.crowdseg")
    async with crowd_session() as session:
        api = f"{embedded.url}/api/v1"
        await one_role_change(session, api, token_of(admin), str(target.user["id"]), token_of(target), COPIES)


async def test_one_qualification_attempt_at_once_scores_alike(embedded: EmbeddedServer, taskmaster: Api) -> None:
    """issue 9 item 1 (qualification attempts): the same attempt fired together is scored alike every
    time, and none of the failed answers carries the reference (item 4)."""
    task = create_task(taskmaster, pass_threshold=0.95)
    tutorial = synthetic_image(9, 96, 96)
    added = taskmaster.http.post(
        f"/tasks/{task['id']}/tutorial",
        files={"file": ("tutorial.png", io.BytesIO(tutorial.png), "image/png")},
        data={"shapes": json.dumps([{"type": "contour", "points": tutorial.outline}])},
    )
    assert added.status_code == 201, added.text
    api = f"{embedded.url}/api/v1"
    async with crowd_session() as session:
        (token,) = await sign_up_crowd(session, api, f"attempts-{task['id']}", 1)
        await one_attempt(session, api, str(task["id"]), str(added.json()["id"]), token, COPIES)


async def test_one_review_at_once_has_one_outcome(embedded: EmbeddedServer, taskmaster: Api) -> None:
    """issue 10 (review): the same rejection, then the same acceptance, fired together answer 200
    with one verdict each time; the image's coverage follows it once, never twice."""
    task = create_task(taskmaster, replicates=2)
    (image,) = upload(taskmaster, task["id"], 1)
    annotator = Api.sign_up(embedded.url, f"reviewed-{uuid.uuid4().hex[:8]}@embedded.crowdseg")
    shapes = [{"type": "contour", "points": square(8, 8, 20)}]
    body = {"id": uuid.uuid4().hex, "image_id": image["id"], "shapes": shapes}
    submitted = annotator.http.post(f"/tasks/{task['id']}/submissions", json=body)
    assert submitted.status_code == 201, submitted.text
    async with crowd_session() as session:
        await one_review(session, f"{embedded.url}/api/v1", body["id"], token_of(taskmaster), COPIES)
    listed = {i["id"]: i["submissions"] for i in taskmaster.http.get(f"/tasks/{task['id']}/images").json()}
    assert listed[image["id"]] == 1

    def settled() -> bool:
        consensus = taskmaster.http.get(f"/images/{image['id']}/consensus")
        return consensus.status_code == 200 and consensus.json()["submissions"] == 1

    wait_for(settled, 60, "the consensus with the accepted submission")
