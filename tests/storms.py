"""The same request many times at once, over real HTTP, for the embedded and the cluster storm tests
(issue 9): whatever the interleaving, one outcome and never a 5xx."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

EXPORT_SECONDS = 120


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


async def storm(
    session: aiohttp.ClientSession, method: str, url: str, token: str, copies: int, **request: Any
) -> list[Answer]:
    """``copies`` identical requests released together; every answer, in no particular order.

    ``request`` holds aiohttp's keyword arguments (``json=``), or ``form=`` a callable that makes a
    fresh :class:`aiohttp.FormData` per copy (a form can be sent only once), or ``bodies=`` one JSON
    body per copy (the same request but for, say, its client id).
    """
    start = asyncio.Event()
    form = request.pop("form", None)
    bodies = request.pop("bodies", None)

    async def one(number: int) -> Answer:
        await start.wait()
        data = form() if form is not None else None
        extra = {"json": bodies[number]} if bodies is not None else {}
        headers = {"Authorization": f"Bearer {token}"}
        async with session.request(method, url, headers=headers, data=data, **request, **extra) as response:
            text = await response.text()
            try:
                body: Any = await response.json(content_type=None)
            except ValueError:
                body = text
            return Answer(response.status, body)

    calls = [asyncio.create_task(one(number)) for number in range(copies)]
    await asyncio.sleep(0)
    start.set()
    return list(await asyncio.gather(*calls))


def statuses(answers: list[Answer]) -> Counter[int]:
    return Counter(answer.status for answer in answers)


def no_server_errors(answers: list[Answer]) -> None:
    failures = [answer for answer in answers if answer.status >= 500]
    assert failures == [], failures


# --- the storms both profiles run (tests/integration/test_request_storms.py, tests/cluster/...) ---------


def contour_submission(image_id: str, size: float = 30) -> dict[str, object]:
    points = [[10, 10], [10 + size, 10], [10 + size, 10 + size], [10, 10 + size]]
    shapes = [{"type": "contour", "points": points}]
    return {"id": uuid.uuid4().hex, "image_id": image_id, "duration_ms": 1000, "shapes": shapes}


async def get_json(session: aiohttp.ClientSession, url: str, token: str) -> Any:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def replays_of_one_submission(
    session: aiohttp.ClientSession, api: str, task_id: str, image_id: str, token: str, copies: int
) -> None:
    """One new submission id sent ``copies`` times at once: one 201, the rest 200 with the same record;
    then a fresh id for the image the user has done, ``copies`` times at once: 409 every time."""
    url = f"{api}/tasks/{task_id}/submissions"
    answers = await storm(session, "POST", url, token, copies, json=contour_submission(image_id))
    no_server_errors(answers)
    assert statuses(answers) == {201: 1, 200: copies - 1}, statuses(answers)
    assert all(answer.body == answers[0].body for answer in answers)
    again = await storm(session, "POST", url, token, copies, json=contour_submission(image_id, size=20))
    no_server_errors(again)
    assert statuses(again) == {409: copies}, statuses(again)


async def fresh_ids_for_one_image(
    session: aiohttp.ClientSession, api: str, task_id: str, image_id: str, token: str, copies: int
) -> None:
    """``copies`` submissions with distinct ids for one image and user at once (tabs, replicas): one 201,
    the rest 409."""
    bodies = [contour_submission(image_id) for _ in range(copies)]
    answers = await storm(session, "POST", f"{api}/tasks/{task_id}/submissions", token, copies, bodies=bodies)
    no_server_errors(answers)
    assert statuses(answers) == {201: 1, 409: copies - 1}, statuses(answers)


async def one_upload(
    session: aiohttp.ClientSession, api: str, task_id: str, token: str, copies: int, png: bytes
) -> None:
    """One upload sent ``copies`` times at once stores its image once; the others are a clear 4xx."""

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("files", png, filename="storm.png", content_type="image/png")
        return data

    answers = await storm(session, "POST", f"{api}/tasks/{task_id}/images", token, copies, form=form)
    no_server_errors(answers)
    assert statuses(answers)[202] >= 1 and set(statuses(answers)) <= {202, 409, 422}, statuses(answers)
    images = await get_json(session, f"{api}/tasks/{task_id}/images", token)
    assert [image["name"] for image in images] == ["storm.png"]


async def one_export_request(
    session: aiohttp.ClientSession, api: str, task_id: str, token: str, copies: int
) -> None:
    """One export request sent ``copies`` times at once: each is accepted and each export finishes."""
    answers = await storm(session, "POST", f"{api}/tasks/{task_id}/exports", token, copies)
    no_server_errors(answers)
    assert statuses(answers) == {202: copies}, statuses(answers)
    ids = {str(answer.body["id"]) for answer in answers}
    assert len(ids) == copies
    async with asyncio.timeout(EXPORT_SECONDS):
        while True:
            states = [(await get_json(session, f"{api}/exports/{i}", token))["status"] for i in ids]
            assert "failed" not in states, states
            if all(state == "done" for state in states):
                return
            await asyncio.sleep(0.5)


async def one_role_change(
    session: aiohttp.ClientSession, api: str, admin_token: str, user_id: str, user_token: str, copies: int
) -> None:
    """One role change sent ``copies`` times at once: 200 every time, and the roles asked for."""
    roles = ["annotator", "taskmaster"]
    answers = await storm(session, "PUT", f"{api}/users/{user_id}/roles", admin_token, copies, json={"roles": roles})
    no_server_errors(answers)
    assert statuses(answers) == {200: copies}, statuses(answers)
    assert (await get_json(session, f"{api}/me", user_token))["roles"] == roles


async def one_attempt(
    session: aiohttp.ClientSession, api: str, task_id: str, image_id: str, token: str, copies: int
) -> None:
    """One failing qualification attempt sent ``copies`` times at once: scored alike every time, and no
    answer carries the reference (issue 9 item 4)."""
    body = {"image_id": image_id, "shapes": [{"type": "contour", "points": [[1, 1], [11, 1], [11, 11], [1, 11]]}]}
    answers = await storm(session, "POST", f"{api}/tasks/{task_id}/qualification/attempts", token, copies, json=body)
    no_server_errors(answers)
    assert statuses(answers) == {200: copies}, statuses(answers)
    assert len({json.dumps(answer.body, sort_keys=True) for answer in answers}) == 1
    assert answers[0].body["passed"] is False and answers[0].body["reference"] == []


async def first_visits_of_one_worker(
    session: aiohttp.ClientSession, api: str, link_id: str, worker: str, copies: int
) -> str:
    """One panel worker opening a study link ``copies`` times at once (tabs, a double click, retries):
    every visit answers 200 with the same account, exactly one made it; returns that account's token."""
    url = f"{api}/links/{link_id}/sessions"
    answers = await storm(session, "POST", url, "none", copies, json={"worker": worker})
    no_server_errors(answers)
    assert statuses(answers) == {200: copies}, statuses(answers)
    assert sum(bool(answer.body["created"]) for answer in answers) == 1, [a.body["created"] for a in answers]
    assert len({answer.body["user_id"] for answer in answers}) == 1
    user = await get_json(session, f"{api}/me", str(answers[-1].body["access_token"]))
    assert user["id"] == answers[0].body["user_id"] and user["link_id"] == link_id
    return str(answers[0].body["access_token"])


async def one_review(session: aiohttp.ClientSession, api: str, submission_id: str, token: str, copies: int) -> None:
    """One rejection fired ``copies`` times at once: 200 every time with the same verdict (one revision:
    exactly one of them changed the submission); then one acceptance the same way."""
    url = f"{api}/submissions/{submission_id}/review"
    for decision, revision in (("reject", 1), ("accept", 2)):
        answers = await storm(session, "POST", url, token, copies, json={"decision": decision, "reason": "storm"})
        no_server_errors(answers)
        assert statuses(answers) == {200: copies}, statuses(answers)
        assert all(answer.body == answers[0].body for answer in answers)
        assert answers[0].body["review"]["decision"] == decision
        assert answers[0].body["review"]["revision"] == revision
