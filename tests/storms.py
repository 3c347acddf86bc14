"""The same request many times at once, over real HTTP, for the embedded and the cluster storm tests
(issue 9): whatever the interleaving, one outcome and never a 5xx."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp


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
