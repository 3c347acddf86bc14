"""Lists at scale over HTTP (API.md v1.1): pages linked by `Link: <...>; rel="next"`, the coverage
route, and task statistics answered from counters."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from crowdseg.simulation import synthetic_image

from tests.embedded import Api, EmbeddedServer, wait_for

pytestmark = pytest.mark.integration

LINK = re.compile(r'^<(/api/v1/[^>]+)>; rel="next"$')


def create_task(owner: Api, **fields: object) -> dict[str, Any]:
    body = {"title": "lists", "tool": "contour", "visibility": "public", **fields}
    response = owner.http.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def upload(owner: Api, task_id: str, names: list[str]) -> list[dict[str, Any]]:
    files = [("files", (name, synthetic_image(n, 32, 32, seed=5).png, "image/png")) for n, name in enumerate(names)]
    response = owner.http.post(f"/tasks/{task_id}/images", files=files)
    assert response.status_code == 202, response.text
    accepted: list[dict[str, Any]] = response.json()["accepted"]
    return accepted


def follow(server: EmbeddedServer, api: Api, response: httpx.Response) -> httpx.Response | None:
    """The page a response's rel="next" link points to, or None on the last page."""
    assert response.status_code == 200, response.text
    header = response.headers.get("link")
    if header is None:
        return None
    match = LINK.match(header)
    assert match, header
    return api.http.get(server.url + match.group(1))  # a path-absolute reference: the server's own origin


def walk(server: EmbeddedServer, api: Api, path: str, **params: object) -> list[list[dict[str, Any]]]:
    pages = []
    response: httpx.Response | None = api.http.get(path, params=params)
    while response is not None:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        response = follow(server, api, response)
    return pages


def submit(api: Api, task_id: str, image_id: str) -> None:
    body = {
        "id": uuid.uuid4().hex,
        "image_id": image_id,
        "duration_ms": 1000,
        "shapes": [{"type": "contour", "points": [[4, 4], [20, 4], [20, 20], [4, 20]]}],
    }
    response = api.http.post(f"/tasks/{task_id}/submissions", json=body)
    assert response.status_code == 201, response.text


def test_images_page_by_name_through_links_while_images_arrive(embedded: EmbeddedServer, taskmaster: Api) -> None:
    task = create_task(taskmaster)
    upload(taskmaster, task["id"], [f"img-{n}.png" for n in (4, 1, 6, 0, 3, 5, 2)])
    first = taskmaster.http.get(f"/tasks/{task['id']}/images", params={"limit": 3, "tutorial": "false"})
    assert [image["name"] for image in first.json()] == ["img-0.png", "img-1.png", "img-2.png"]
    link = LINK.match(first.headers["link"])
    assert link and "limit=3" in link.group(1) and "tutorial=false" in link.group(1)
    # Images that arrive meanwhile: one before the cursor (not on the pages to come), one after it.
    upload(taskmaster, task["id"], ["img-00.png", "img-9.png"])
    names = [image["name"] for image in first.json()]
    response = follow(embedded, taskmaster, first)
    while response is not None:
        assert len(response.json()) <= 3
        names += [image["name"] for image in response.json()]
        response = follow(embedded, taskmaster, response)
    assert names == ["img-0.png", "img-1.png", "img-2.png", "img-3.png", "img-4.png", "img-5.png", "img-6.png",
                     "img-9.png"]  # fmt: skip
    everything = taskmaster.http.get(f"/tasks/{task['id']}/images", params={"limit": 5000})
    assert "link" not in everything.headers
    assert [image["name"] for image in everything.json()] == sorted([*names, "img-00.png"])
    # The default page (500) holds all of them, without a link; the tutorial list is another list.
    assert "link" not in taskmaster.http.get(f"/tasks/{task['id']}/images").headers
    assert taskmaster.http.get(f"/tasks/{task['id']}/images", params={"tutorial": "true"}).json() == []
    listed = taskmaster.http.get(f"/tasks/{task['id']}").json()
    assert listed["images"] == 9  # from the task's counters


def test_tasks_and_users_page_by_creation(embedded: EmbeddedServer, admin: Api, taskmaster: Api) -> None:
    mine = [create_task(taskmaster, title=f"page {n}") for n in range(3)]
    upload(taskmaster, mine[1]["id"], ["a.png", "b.png"])
    paged = [task for page in walk(embedded, taskmaster, "/tasks", limit=2) for task in page]
    whole = taskmaster.http.get("/tasks", params={"limit": 5000}).json()
    assert [t["id"] for t in paged] == [t["id"] for t in whole]
    assert len({t["id"] for t in paged}) == len(paged)
    assert [t["created_at"] for t in paged] == sorted(t["created_at"] for t in paged)
    ours = [t for t in paged if t["id"] in {m["id"] for m in mine}]
    assert [t["id"] for t in ours] == [m["id"] for m in mine]
    assert [t["images"] for t in ours] == [0, 2, 0]
    users = [user for page in walk(embedded, admin, "/users", limit=2) for user in page]
    assert [u["id"] for u in users] == [u["id"] for u in admin.http.get("/users", params={"limit": 5000}).json()]
    assert taskmaster.user["id"] in {u["id"] for u in users}


def test_coverage_rows_and_stats_from_counters(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task = create_task(taskmaster, replicates=2)
    images = upload(taskmaster, task["id"], ["c.png", "a.png", "b.png"])
    alice, bob = annotator_factory(), annotator_factory()
    offered = alice.http.get(f"/tasks/{task['id']}/next")
    assert offered.status_code == 200, offered.text
    done = offered.json()["image"]["id"]
    submit(alice, task["id"], done)
    leased = bob.http.get(f"/tasks/{task['id']}/next")
    assert leased.status_code == 200, leased.text
    held = leased.json()["image"]["id"]

    pages = walk(embedded, taskmaster, f"/tasks/{task['id']}/coverage", limit=2)
    assert [len(page) for page in pages] == [2, 1]
    rows = {row["image_id"]: row for page in pages for row in page}
    assert [row["name"] for page in pages for row in page] == ["a.png", "b.png", "c.png"]
    assert set(rows) == {image["id"] for image in images}
    assert rows[done]["submissions"] == 1 and rows[done]["users"] == [alice.user["id"]]
    assert not any(row["complete"] for row in rows.values())
    assert sum(row["leased"] for row in rows.values()) == 1 and rows[held]["leased"] == 1
    assert all(row["users"] == [] for image_id, row in rows.items() if image_id != done)

    stats = taskmaster.http.get(f"/tasks/{task['id']}/stats").json()
    assert stats["coverage"] == {"0": 2, "1": 1, "2": 0}
    assert (stats["images"], stats["submissions"], stats["complete"], stats["replicates"]) == (3, 1, 0, 2)
    assert "matrix" not in stats
    (row,) = stats["users"]
    assert row["user_id"] == alice.user["id"] and row["submissions"] == 1 and row["mean_seconds"] == 1.0

    def consensus_counted() -> dict[str, Any] | None:
        found: dict[str, Any] = taskmaster.http.get(f"/tasks/{task['id']}/stats").json()
        return found if found["consensus_images"] == 1 else None

    stats = wait_for(consensus_counted, 60, "the consensus to be counted")
    assert stats["users"][0]["sensitivity"] is not None

    mine = alice.http.get("/me/stats").json()
    assert mine["submissions"] == 1
    assert [(t["task_id"], t["images"], t["submissions"]) for t in mine["per_task"]] == [(task["id"], 3, 1)]
    ((day, count),) = mine["per_day"].items()
    assert count == 1 and day <= datetime.now(UTC).date().isoformat()
    assert alice.http.get("/me").json()["xp"] >= 0
    refused = taskmaster.http.get(f"/tasks/{task['id']}/coverage", params={"cursor": "bogus"})
    assert refused.status_code == 422 and "cursor" in refused.json()["detail"]
    assert alice.http.get(f"/tasks/{task['id']}/coverage").status_code == 403
