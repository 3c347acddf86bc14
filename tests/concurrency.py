"""Many annotators asking and submitting at once, over real HTTP (aiohttp: httpx's pool cannot make
hundreds of requests at once here), for the embedded and the cluster concurrency tests (issue 8)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp

PASSWORD = "correct-horse-battery"
# Shorter than uvicorn's keep-alive (5 s): a connection the server is closing is never reused, which
# otherwise answers "connection reset by peer" on a busy machine.
KEEPALIVE_SECONDS = 2.0


def crowd_session() -> aiohttp.ClientSession:
    """A client session for hundreds of requests at once."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS))


@dataclass
class CrowdOutcome:
    accepted: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # image → users
    per_user: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # user → images
    refused: int = 0
    failures: list[str] = field(default_factory=list)  # any status we do not expect, 5xx above all


async def sign_up_crowd(session: aiohttp.ClientSession, api: str, prefix: str, count: int) -> list[str]:
    """``count`` annotators' bearer tokens (a few at a time: argon2 is meant to be slow)."""
    slots = asyncio.Semaphore(8)

    async def one(number: int) -> str:
        email = f"{prefix}-{number}@crowd.crowdseg"
        async with slots:
            async with session.post(
                f"{api}/auth/signup", json={"email": email, "password": PASSWORD, "name": f"{prefix} {number}"}
            ) as response:
                assert response.status == 201, await response.text()
            async with session.post(f"{api}/auth/login", json={"email": email, "password": PASSWORD}) as response:
                assert response.status == 200, await response.text()
                token: str = (await response.json())["access_token"]
                return token

    return list(await asyncio.gather(*(one(n) for n in range(count))))


def contour(index: int) -> list[list[float]]:
    x, y = 8 + index % 20, 8 + index % 17
    return [[x, y], [x + 24, y], [x + 24, y + 24], [x, y + 24]]


async def work_until_done(
    session: aiohttp.ClientSession, api: str, task_id: str, tokens: list[str], *, next_api: str | None = None
) -> CrowdOutcome:
    """Every annotator asks for the next image (at ``next_api``, by default ``api``) and submits it, all at
    once, until ``next`` answers 204."""
    outcome = CrowdOutcome()
    start = asyncio.Event()

    async def annotator(token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        await start.wait()
        for _ in range(1000):
            async with session.get(f"{next_api or api}/tasks/{task_id}/next", headers=headers) as response:
                if response.status == 204:
                    return
                if response.status != 200:
                    outcome.failures.append(f"next {response.status}: {await response.text()}")
                    return
                image_id = (await response.json())["image"]["id"]
            body = {
                "id": uuid.uuid4().hex,
                "image_id": image_id,
                "duration_ms": 1000,
                "shapes": [{"type": "contour", "points": contour(len(outcome.failures) + hash(token) % 97)}],
            }
            async with session.post(f"{api}/tasks/{task_id}/submissions", json=body, headers=headers) as response:
                if response.status == 201:
                    user_id = (await response.json())["user_id"]
                    outcome.accepted[image_id].append(user_id)
                    outcome.per_user[user_id].append(image_id)
                elif response.status == 409:
                    outcome.refused += 1
                else:
                    outcome.failures.append(f"submit {response.status}: {await response.text()}")

    workers = [asyncio.create_task(annotator(token)) for token in tokens]
    start.set()
    await asyncio.gather(*workers)
    return outcome


async def coverage_rows(session: aiohttp.ClientSession, api: str, task_id: str, token: str) -> list[dict[str, object]]:
    """Every row of the task's coverage, following the Link header."""
    rows: list[dict[str, object]] = []
    url: str | None = f"{api}/tasks/{task_id}/coverage?limit=7"
    base = api.split("/api/v1")[0]
    while url is not None:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200, await response.text()
            rows.extend(await response.json())
            link = response.links.get("next")
            url = None if link is None else str(link["url"])
            if url is not None and url.startswith("/"):
                url = base + url
    return rows
