"""The same request many times at once on the embedded profile (issue 9 item 1): one submission id
replayed, fresh ids for one image and user, one upload, one export request, one role change and one
qualification attempt, each fired together. Whatever the interleaving: one outcome, never a 5xx."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import aiohttp
import pytest
from crowdseg.simulation import synthetic_image

from tests.concurrency import crowd_session, sign_up_crowd
from tests.embedded import Api, EmbeddedServer, wait_for
from tests.integration.test_work_rules import create_task, square, upload
from tests.storms import no_server_errors, statuses, storm

pytestmark = pytest.mark.integration

COPIES = 12


def token_of(api: Api) -> str:
    return str(api.http.headers["Authorization"])[7:]


def submission(image_id: str, submission_id: str | None = None, size: float = 30) -> dict[str, object]:
    return {
        "id": submission_id or uuid.uuid4().hex,
        "image_id": image_id,
        "duration_ms": 1000,
        "shapes": [{"type": "contour", "points": square(10, 10, size)}],
    }


def mask_files(embedded: EmbeddedServer, task_id: object, image_id: str) -> list[str]:
    folder = Path(embedded.data_dir) / "objects" / "masks" / str(task_id) / image_id
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


async def test_replays_of_one_submission_store_it_once_and_never_answer_500(
    embedded: EmbeddedServer, taskmaster: Api
) -> None:
    """issue 9 item 1: simultaneous identical submissions with one new id answered e.g. [200, 200, 201,
    500, 500, ...]: the file blob store wrote every key through one fixed `.partial` file, and each losing
    request left its mask behind. Now: one 201, the rest 200 with the same record, one mask blob."""
    task = create_task(taskmaster, replicates=3)
    (image,) = upload(taskmaster, task["id"], 1)
    api = f"{embedded.url}/api/v1"
    async with crowd_session() as session:
        (token,) = await sign_up_crowd(session, api, f"replay-{task['id']}", 1)
        for size in (30, 20):  # then a second burst with a fresh id, after the first is stored
            body = submission(image["id"], size=size)
            answers = await storm(session, "POST", f"{api}/tasks/{task['id']}/submissions", token, COPIES, json=body)
            no_server_errors(answers)
            if size == 30:
                assert statuses(answers) == {201: 1, 200: COPIES - 1}, statuses(answers)
                first = answers[0].body
                assert all(answer.body == first for answer in answers)
            else:  # a fresh id for an image the user already annotated: a clear 409 every time
                assert statuses(answers) == {409: COPIES}, statuses(answers)
    assert len(mask_files(embedded, task["id"], image["id"])) == 1
    stats = taskmaster.http.get(f"/tasks/{task['id']}/stats").json()
    assert stats["submissions"] == 1


async def test_fresh_ids_for_one_image_at_once_let_exactly_one_in(embedded: EmbeddedServer, taskmaster: Api) -> None:
    """issue 9 item 1: racing submissions with distinct ids for one image and user (two tabs): one 201,
    the others 409, and the losers' masks are removed (no orphaned blobs)."""
    task = create_task(taskmaster, replicates=3)
    (image,) = upload(taskmaster, task["id"], 1)
    api = f"{embedded.url}/api/v1"
    async with crowd_session() as session:
        (token,) = await sign_up_crowd(session, api, f"tabs-{task['id']}", 1)
        bodies = [submission(image["id"]) for _ in range(COPIES)]
        url = f"{api}/tasks/{task['id']}/submissions"
        answers = await storm(session, "POST", url, token, COPIES, bodies=bodies)
    no_server_errors(answers)
    assert statuses(answers) == {201: 1, 409: COPIES - 1}, statuses(answers)
    assert len(mask_files(embedded, task["id"], image["id"])) == 1
    assert taskmaster.http.get(f"/tasks/{task['id']}/stats").json()["submissions"] == 1


async def test_one_upload_at_once_stores_each_name_once(embedded: EmbeddedServer, taskmaster: Api) -> None:
    """issue 9 item 1 (uploads): the same upload sent many times at once stores the image once; the
    others are a clear 4xx naming the duplicate, never a 5xx."""
    task = create_task(taskmaster)
    png = synthetic_image(5, 48, 48, seed=11).png

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("files", png, filename="storm.png", content_type="image/png")
        return data

    async with crowd_session() as session:
        url = f"{embedded.url}/api/v1/tasks/{task['id']}/images"
        answers = await storm(session, "POST", url, token_of(taskmaster), COPIES, form=form)
    no_server_errors(answers)
    assert statuses(answers)[202] >= 1 and set(statuses(answers)) <= {202, 409, 422}, statuses(answers)
    images = taskmaster.http.get(f"/tasks/{task['id']}/images").json()
    assert [image["name"] for image in images] == ["storm.png"]


async def test_one_export_request_at_once_builds_every_export(embedded: EmbeddedServer, taskmaster: Api) -> None:
    """issue 9 item 1 (exports): export requests fired together are each accepted and each finishes."""
    task = create_task(taskmaster)
    upload(taskmaster, task["id"], 2)
    async with crowd_session() as session:
        url = f"{embedded.url}/api/v1/tasks/{task['id']}/exports"
        answers = await storm(session, "POST", url, token_of(taskmaster), 6)
    no_server_errors(answers)
    assert statuses(answers) == {202: 6}
    ids = {str(answer.body["id"]) for answer in answers}
    assert len(ids) == 6

    def all_done() -> bool:
        states = [taskmaster.http.get(f"/exports/{export_id}").json()["status"] for export_id in ids]
        assert "failed" not in states, states
        return all(state == "done" for state in states)

    wait_for(all_done, 120, "every export")


async def test_one_role_change_at_once_has_one_outcome(embedded: EmbeddedServer, admin: Api) -> None:
    """issue 9 item 1 (role changes): the same role change fired together answers 200 every time and
    leaves the roles asked for."""
    target = Api.sign_up(embedded.url, f"roles-{uuid.uuid4().hex[:8]}@embedded.crowdseg")
    async with crowd_session() as session:
        url = f"{embedded.url}/api/v1/users/{target.user['id']}/roles"
        answers = await storm(session, "PUT", url, token_of(admin), COPIES, json={"roles": ["annotator", "taskmaster"]})
    no_server_errors(answers)
    assert statuses(answers) == {200: COPIES}
    assert target.http.get("/me").json()["roles"] == ["annotator", "taskmaster"]


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
    body = {"image_id": added.json()["id"], "shapes": [{"type": "contour", "points": square(1, 1, 10)}]}
    async with crowd_session() as session:
        (token,) = await sign_up_crowd(session, api, f"attempts-{task['id']}", 1)
        url = f"{api}/tasks/{task['id']}/qualification/attempts"
        answers = await storm(session, "POST", url, token, COPIES, json=body)
    no_server_errors(answers)
    assert statuses(answers) == {200: COPIES}
    assert len({json.dumps(answer.body, sort_keys=True) for answer in answers}) == 1
    assert answers[0].body["passed"] is False and answers[0].body["reference"] == []
