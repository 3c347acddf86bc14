"""External crowds over HTTP on the embedded profile: study links (Prolific, MTurk, generic) with their
quota, completion code and ledger, concurrent first visits, invitations and member removal."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from crowdseg.simulation import synthetic_image

from tests.concurrency import crowd_session
from tests.embedded import Api, EmbeddedServer
from tests.integration.test_work_rules import create_task, submit, upload
from tests.storms import first_visits_of_one_worker

pytestmark = pytest.mark.integration

LEDGER_HEADER = ["external_id", "kind", "images", "seconds", "first_at", "last_at", "link_id", "completed"]


def make_link(owner: Api, task_id: object, **fields: object) -> dict[str, Any]:
    response = owner.http.post(f"/tasks/{task_id}/links", json={"kind": "prolific", "quota": 2, **fields})
    assert response.status_code == 201, response.text
    link: dict[str, Any] = response.json()
    return link


def prolific(pid: str) -> dict[str, str]:
    return {"PROLIFIC_PID": pid, "STUDY_ID": "study1", "SESSION_ID": f"session-{pid}"}


def open_link(url: str, link_id: str, params: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/links/{link_id}/sessions", json=params, timeout=60)


def worker_api(url: str, session: dict[str, Any]) -> Api:
    return Api(url, str(session["access_token"]))


def ledger(owner: Api, task_id: object) -> list[dict[str, str]]:
    response = owner.http.get(f"/tasks/{task_id}/ledger")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == LEDGER_HEADER
    return list(reader)


def test_a_prolific_worker_works_up_to_the_quota_sees_the_code_and_continues_on_return(
    embedded: EmbeddedServer, taskmaster: Api
) -> None:
    task = create_task(taskmaster, visibility="private", replicates=2)
    upload(taskmaster, task["id"], 4)
    completion_url = "https://app.prolific.com/submissions/complete?cc=C0DE1234"
    link = make_link(taskmaster, task["id"], quota=2, completion_url=completion_url, completion_code="C0DE1234")
    assert link["url"] == f"{embedded.url}/study/{link['id']}" and link["completion_code"] == "C0DE1234"
    assert link["panel_url"].endswith(
        "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )
    info = httpx.get(f"{embedded.url}/api/v1/links/{link['id']}").json()
    assert info["task"]["title"] == task["title"] and info["quota"] == 2

    first = open_link(embedded.url, link["id"], prolific("5f1a2b3c4d5e6f7a8b9c0d1e"))
    assert first.status_code == 200, first.text
    session = first.json()
    assert session["created"] and not session["preview"] and session["images"] == 0 and not session["done"]
    assert session["completion_code"] is None  # not before the quota is done
    assert "crowdseg_session" in first.cookies
    worker = worker_api(embedded.url, session)
    me = worker.http.get("/me").json()
    assert me["id"] == session["user_id"] and me["roles"] == ["annotator"]
    # the private task is open to the worker through the link, and nothing else is
    assert [t["id"] for t in worker.http.get("/tasks").json()] == [task["id"]]
    other = create_task(taskmaster, visibility="public")
    assert worker.http.get(f"/tasks/{other['id']}").status_code == 404

    done: list[str] = []
    for expected in range(2):
        answer = worker.http.get(f"/tasks/{task['id']}/next")
        assert answer.status_code == 200, answer.text
        assert answer.json()["progress"] == {"link_id": link["id"], "images": expected, "quota": 2}
        image_id = answer.json()["image"]["id"]
        assert submit(worker, task["id"], image_id) == 201
        done.append(image_id)
    assert worker.http.get(f"/tasks/{task['id']}/next").status_code == 204  # done: past the quota
    progress = worker.http.get(f"/links/{link['id']}/progress").json()
    assert progress["done"] and progress["images"] == 2
    assert progress["completion_code"] == "C0DE1234" and progress["completion_url"] == completion_url

    again = open_link(embedded.url, link["id"], prolific("5f1a2b3c4d5e6f7a8b9c0d1e"))
    assert again.status_code == 200, again.text
    back = again.json()
    assert not back["created"] and back["user_id"] == session["user_id"] and back["images"] == 2 and back["done"]
    assert back["completion_code"] == "C0DE1234"

    # an account made by a link has no password to sign in with
    email = f"{session['user_id']}@study-link.invalid"
    assert httpx.post(f"{embedded.url}/api/v1/auth/login", json={"email": email, "password": ""}).status_code == 401

    (row,) = ledger(taskmaster, task["id"])
    assert row["external_id"] == "5f1a2b3c4d5e6f7a8b9c0d1e" and row["kind"] == "prolific"
    assert row["images"] == "2" and float(row["seconds"]) == 2.0 and row["completed"] == "true"
    assert row["link_id"] == link["id"] and row["first_at"] <= row["last_at"]


def test_a_returning_worker_continues_where_they_left(embedded: EmbeddedServer, taskmaster: Api) -> None:
    task = create_task(taskmaster, replicates=1)
    upload(taskmaster, task["id"], 5)
    link = make_link(taskmaster, task["id"], kind="generic", quota=3)
    assert link["panel_url"] == f"{link['url']}?worker="
    session = open_link(embedded.url, link["id"], {"worker": "panel-user.42"}).json()
    worker = worker_api(embedded.url, session)
    image_id = worker.http.get(f"/tasks/{task['id']}/next").json()["image"]["id"]
    assert submit(worker, task["id"], image_id) == 201
    # a new visit (a new device): the same account, one image done, two to go
    back = open_link(embedded.url, link["id"], {"worker": "panel-user.42"}).json()
    assert back["user_id"] == session["user_id"] and back["images"] == 1 and not back["done"]
    again = worker_api(embedded.url, back)
    answer = again.http.get(f"/tasks/{task['id']}/next").json()
    assert answer["progress"]["images"] == 1 and answer["image"]["id"] != image_id
    # another worker of the same link is another account
    stranger = open_link(embedded.url, link["id"], {"worker": "panel-user.43"}).json()
    assert stranger["created"] and stranger["user_id"] != session["user_id"]
    rows = {row["external_id"]: row for row in ledger(taskmaster, task["id"])}
    assert rows["panel-user.42"]["images"] == "1" and rows["panel-user.42"]["completed"] == "false"
    assert rows["panel-user.43"]["images"] == "0"


def test_an_mturk_preview_shows_the_task_and_makes_no_account(embedded: EmbeddedServer, taskmaster: Api) -> None:
    task = create_task(taskmaster)
    upload(taskmaster, task["id"], 1)
    link = make_link(taskmaster, task["id"], kind="mturk", quota=1)
    assert link["panel_url"] == link["url"]  # MTurk adds its own parameters
    preview = open_link(embedded.url, link["id"], {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "3HIT"})
    assert preview.status_code == 200, preview.text
    assert (
        preview.json()["preview"]
        and preview.json()["access_token"] is None
        and "crowdseg_session" not in preview.cookies
    )
    assert ledger(taskmaster, task["id"]) == []
    accepted = open_link(
        embedded.url,
        link["id"],
        {
            "workerId": "A1B2C3D4E5",
            "assignmentId": "3ASSIGN",
            "hitId": "3HIT",
            "turkSubmitTo": "https://workersandbox.mturk.com",
        },
    )
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert not body["preview"] and body["external_id"] == "A1B2C3D4E5"
    assert body["mturk_submit_to"] == "https://workersandbox.mturk.com"
    assert [row["external_id"] for row in ledger(taskmaster, task["id"])] == ["A1B2C3D4E5"]


def test_bad_link_input_is_a_clear_4xx_and_changes_nothing(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task = create_task(taskmaster)
    upload(taskmaster, task["id"], 2)
    link = make_link(taskmaster, task["id"])
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 422, "without PROLIFIC_PID"),
        ({"PROLIFIC_PID": "abc"}, 422, "without STUDY_ID, SESSION_ID"),
        ({"worker": "abc"}, 422, "not worker"),
        ({**prolific("abc"), "workerId": "A1"}, 422, "not workerId"),
        (prolific("x" * 129), 422, "at most 128"),
        (prolific("{{%PROLIFIC_PID%}}"), 422, "pattern"),
        (prolific("a b"), 422, "pattern"),
        ({**prolific("abc"), "utm_source": "mail"}, 422, "utm_source"),
    ]
    for params, status, words in cases:
        answer = open_link(embedded.url, link["id"], params)
        assert answer.status_code == status, (params, answer.text)
        assert words in answer.text, (params, answer.text)
    assert open_link(embedded.url, "no-such-link", prolific("abc")).status_code == 404
    assert httpx.get(f"{embedded.url}/api/v1/links/no-such-link").status_code == 404
    mturk = make_link(taskmaster, task["id"], kind="mturk", quota=1)
    refused = open_link(
        embedded.url,
        mturk["id"],
        {"workerId": "A1", "assignmentId": "3A", "hitId": "3H", "turkSubmitTo": "https://evil.example"},
    )
    assert refused.status_code == 422
    assert ledger(taskmaster, task["id"]) == []

    for body in ({"kind": "panel", "quota": 1}, {"kind": "generic", "quota": 0}, {"kind": "generic", "quota": True},
                 {"kind": "generic", "quota": 1, "completion_url": "javascript:alert(1)"},
                 {"kind": "generic", "quota": 1, "completion_code": "=1+1"}):  # fmt: skip
        assert taskmaster.http.post(f"/tasks/{task['id']}/links", json=body).status_code == 422, body
    stranger = annotator_factory()
    assert stranger.http.post(f"/tasks/{task['id']}/links", json={"kind": "generic", "quota": 1}).status_code == 403
    assert stranger.http.get(f"/tasks/{task['id']}/ledger").status_code == 403
    assert stranger.http.get(f"/tasks/{task['id']}/links").status_code == 403
    assert stranger.http.delete(f"/tasks/{task['id']}/links/{link['id']}").status_code == 403

    # revoked: opens no more, and a worker who had started gets no more images
    session = open_link(embedded.url, link["id"], prolific("started")).json()
    worker = worker_api(embedded.url, session)
    revoked = taskmaster.http.delete(f"/tasks/{task['id']}/links/{link['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert taskmaster.http.delete(f"/tasks/{task['id']}/links/{link['id']}").json() == revoked.json()
    gone = open_link(embedded.url, link["id"], prolific("started"))
    assert gone.status_code == 410 and "closed" in gone.json()["detail"]
    assert httpx.get(f"{embedded.url}/api/v1/links/{link['id']}").status_code == 410
    assert worker.http.get(f"/tasks/{task['id']}/next").status_code == 409
    assert worker.http.get(f"/links/{mturk['id']}/progress").status_code == 404  # not their link
    listed = taskmaster.http.get(f"/tasks/{task['id']}/links").json()
    assert {entry["id"]: bool(entry["revoked_at"]) for entry in listed} == {link["id"]: True, mturk["id"]: False}


async def test_simultaneous_first_visits_of_one_worker_make_one_account(
    embedded: EmbeddedServer, taskmaster: Api
) -> None:
    task = create_task(taskmaster)
    upload(taskmaster, task["id"], 1)
    link = make_link(taskmaster, task["id"], kind="generic", quota=1)
    async with crowd_session() as session:
        token = await first_visits_of_one_worker(session, f"{embedded.url}/api/v1", link["id"], "w-storm", 16)
    assert [row["external_id"] for row in ledger(taskmaster, task["id"])] == ["w-storm"]
    assert Api(embedded.url, token).http.get(f"/tasks/{task['id']}/next").status_code == 200


def test_invitations_make_members_until_they_expire_or_are_revoked(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task = create_task(taskmaster, visibility="private")
    invitee, other = annotator_factory(), annotator_factory()
    assert invitee.http.get(f"/tasks/{task['id']}").status_code == 404
    created = taskmaster.http.post(
        f"/tasks/{task['id']}/invitations", json={"email": str(invitee.user["email"]).upper(), "expires_in_hours": 24}
    )
    assert created.status_code == 201, created.text
    invitation = created.json()
    assert invitation["url"] == f"{embedded.url}/invite/{invitation['id']}"
    assert other.http.post(f"/invitations/{invitation['id']}/accept").status_code == 403  # someone else's
    accepted = invitee.http.post(f"/invitations/{invitation['id']}/accept")
    assert accepted.status_code == 200 and accepted.json()["task_id"] == task["id"]
    assert invitee.http.get(f"/tasks/{task['id']}").status_code == 200
    assert invitee.http.post(f"/invitations/{invitation['id']}/accept").status_code == 200  # again: no change
    listed = taskmaster.http.get(f"/tasks/{task['id']}/invitations").json()
    assert [(i["id"], i["accepted_by"]) for i in listed] == [(invitation["id"], [invitee.user["id"]])]

    anyone = taskmaster.http.post(f"/tasks/{task['id']}/invitations", json={"expires_in_hours": 24}).json()
    revoked = taskmaster.http.delete(f"/tasks/{task['id']}/invitations/{anyone['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    withdrawn = other.http.post(f"/invitations/{anyone['id']}/accept")
    assert withdrawn.status_code == 410 and "withdrawn" in withdrawn.json()["detail"]
    brief = taskmaster.http.post(f"/tasks/{task['id']}/invitations", json={"expires_in_hours": 0.0003}).json()
    time.sleep(1.5)  # past its 1.08 s of validity
    expired = other.http.post(f"/invitations/{brief['id']}/accept")
    assert expired.status_code == 410 and "expired" in expired.json()["detail"]
    assert other.http.get(f"/tasks/{task['id']}").status_code == 404
    assert other.http.post(f"/invitations/{uuid.uuid4().hex}/accept").status_code == 404
    for body in ({"expires_in_hours": 0}, {"expires_in_hours": 1e9}, {"email": "not-an-address", "expires_in_hours": 1},
                 {"expires_in_hours": 1, "role": "admin"}):  # fmt: skip
        assert taskmaster.http.post(f"/tasks/{task['id']}/invitations", json=body).status_code == 422, body
    assert other.http.post(f"/tasks/{task['id']}/invitations", json={"expires_in_hours": 1}).status_code == 404


def test_a_removed_member_loses_the_private_task(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task = create_task(taskmaster, visibility="private")
    upload(taskmaster, task["id"], 1)
    member = annotator_factory()
    added = taskmaster.http.post(f"/tasks/{task['id']}/members", json={"user_id": member.user["id"]})
    assert added.status_code == 200
    assert member.http.get(f"/tasks/{task['id']}/next").status_code == 200
    assert member.http.delete(f"/tasks/{task['id']}/members/{member.user['id']}").status_code == 403  # not theirs
    removed = taskmaster.http.delete(f"/tasks/{task['id']}/members/{member.user['id']}")
    assert removed.status_code == 200 and removed.json()["members"] == []
    assert member.http.get(f"/tasks/{task['id']}").status_code == 404
    assert member.http.get(f"/tasks/{task['id']}/next").status_code == 404
    assert task["id"] not in [t["id"] for t in member.http.get("/tasks").json()]
    again = taskmaster.http.delete(f"/tasks/{task['id']}/members/{member.user['id']}")
    assert again.status_code == 404 and "not a member" in again.json()["detail"]


def test_the_task_qualification_applies_to_link_workers(embedded: EmbeddedServer, taskmaster: Api) -> None:
    task = create_task(taskmaster, pass_threshold=0.8)
    upload(taskmaster, task["id"], 1)
    tutorial = synthetic_image(9, 128, 128)
    added = taskmaster.http.post(
        f"/tasks/{task['id']}/tutorial",
        files={"file": ("tutorial.png", io.BytesIO(tutorial.png), "image/png")},
        data={"shapes": json.dumps([{"type": "contour", "points": tutorial.outline}])},
    )
    assert added.status_code == 201, added.text
    link = make_link(taskmaster, task["id"], kind="generic", quota=1)
    worker = worker_api(embedded.url, open_link(embedded.url, link["id"], {"worker": "qualifier"}).json())
    assert worker.http.get(f"/tasks/{task['id']}/next").status_code == 403
    state = worker.http.get(f"/tasks/{task['id']}/qualification").json()
    assert state["required"] and not state["passed"]
    attempt = worker.http.post(
        f"/tasks/{task['id']}/qualification/attempts",
        json={"image_id": added.json()["id"], "shapes": [{"type": "contour", "points": tutorial.outline}]},
    )
    assert attempt.status_code == 200 and attempt.json()["passed"], attempt.text
    assert worker.http.get(f"/tasks/{task['id']}/next").status_code == 200


def test_the_study_page_may_be_framed_by_mturk_and_nothing_else_is(embedded: EmbeddedServer) -> None:
    study = httpx.get(f"{embedded.url}/study/some-link?workerId=A1&assignmentId=3A&hitId=3H")
    assert study.status_code == 200 and "text/html" in study.headers["content-type"]
    policy = study.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://www.mturk.com https://workersandbox.mturk.com" in policy
    assert "form-action 'self' https://www.mturk.com https://workersandbox.mturk.com" in policy
    assert "script-src 'self'" in policy and "default-src 'self'" in policy
    for path in ("/", "/tasks/x", "/invite/x"):
        assert "frame-ancestors 'none'" in httpx.get(f"{embedded.url}{path}").headers["content-security-policy"]
