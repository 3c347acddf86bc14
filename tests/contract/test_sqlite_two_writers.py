"""The embedded store's writes from two processes (the request process's leases and slots, the
consensus worker's certainty): each waits for the other's transaction without blocking its event
loop, and neither loses what the other wrote. Two stores on one file stand for the two processes:
SQLite's locks are the same between two connections of one process.

Bugs pinned:
- issue 8 review: adaptive replicates made the consensus worker read an image, set its certainty and
  write the whole document back while the request process wrote a slot in between; the slot was
  undone, so the image could be handed past its replicates, and to that user again.
- issue 8: a write that found the worker's transaction in the way waited inside SQLite
  (``busy_timeout``), on the event loop: 3–27 ms stalls of every request, about three a second at
  200 submissions/s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from crowdseg.adapters import sqlite_store
from crowdseg.adapters.sqlite_store import SqliteStore
from crowdseg.domain import Image, utcnow
from crowdseg.errors import Unavailable

from tests.contract.test_store_contract import image, task

pytestmark = pytest.mark.contract

WHILE_HELD = 0.05  # how long one store keeps its transaction open while the other one's write waits


@pytest.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore, Image]]:
    request, worker = SqliteStore(tmp_path / "s.sqlite3"), SqliteStore(tmp_path / "s.sqlite3")
    await request.open()
    await worker.open()
    t = task()
    await request.tasks.add(t)
    img = image(t.id)
    await request.images.add(img)
    yield request, worker, img
    await worker.close()
    await request.close()


async def test_a_slot_claimed_while_the_worker_writes_waits_and_both_are_kept(
    two_processes: tuple[SqliteStore, SqliteStore, Image],
) -> None:
    request, worker, img = two_processes
    now = utcnow()
    assert await request.images.try_lease(img.id, "bob", replicates=3, now=now, expires_at=now + timedelta(minutes=1))
    async with worker.writing():  # the worker has read the image and is about to write its certainty
        stored = worker.images.one("id = ?", img.id)
        assert stored is not None
        claim = asyncio.create_task(request.images.claim_slot(img.id, "bob", replicates=3, now=now))
        await asyncio.sleep(WHILE_HELD)  # the loop runs on: the claim waits without blocking it
        assert not claim.done()
        certain = stored.model_copy(update={"certainty": 0.97, "retired": True})
        worker.images._set_fields(certain, "certainty", "retired")
    assert await claim
    stored = await request.images.get(img.id)
    assert stored is not None
    assert stored.submitted_by == ["bob"] and (stored.certainty, stored.retired) == (0.97, True)


async def test_certainty_set_while_a_slot_is_claimed_waits_and_both_are_kept(
    two_processes: tuple[SqliteStore, SqliteStore, Image],
) -> None:
    request, worker, img = two_processes
    now = utcnow()
    assert await request.images.try_lease(img.id, "cy", replicates=3, now=now, expires_at=now + timedelta(minutes=1))
    async with request.writing():
        stored = request.images.one("id = ?", img.id)
        assert stored is not None
        certainty = asyncio.create_task(worker.images.set_certainty(img.id, 0.75, retired=False))
        await asyncio.sleep(WHILE_HELD)
        assert not certainty.done()
        claimed = stored.model_copy(update={"submitted_by": ["cy"], "leases": []})
        request.images._set_fields(claimed, "submitted_by", "leases")
    await certainty
    stored = await request.images.get(img.id)
    assert stored is not None
    assert stored.certainty == 0.75 and stored.submitted_by == ["cy"] and stored.leases == []


async def test_a_write_held_up_too_long_is_refused_as_unavailable(
    two_processes: tuple[SqliteStore, SqliteStore, Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    request, worker, img = two_processes
    monkeypatch.setattr(sqlite_store, "WRITE_LOCK_SECONDS", WHILE_HELD)
    async with worker.writing():
        with pytest.raises(Unavailable, match="locked"):
            await request.images.claim_slot(img.id, "dee", replicates=3, now=utcnow())
    stored = await request.images.get(img.id)
    assert stored is not None and stored.submitted_by == []


async def test_a_body_that_awaits_another_write_of_the_same_store_fails_loudly(
    two_processes: tuple[SqliteStore, SqliteStore, Image],
) -> None:
    request, _, img = two_processes
    with pytest.raises(RuntimeError, match="awaited inside"):
        async with request.writing():
            await request.images.set_certainty(img.id, 0.5, retired=False)
    stored = await request.images.get(img.id)
    assert stored is not None and stored.certainty is None
