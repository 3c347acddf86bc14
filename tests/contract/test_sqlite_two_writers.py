"""The embedded store's image writes from two processes (the request process's leases and slots, the
consensus worker's certainty) keep each other's fields.

Bug pinned (issue 8 review): adaptive replicates made the consensus worker read an image, set its
certainty and write the whole document back, while the request process reads and writes the same
document for every lease and slot. A slot claimed between the worker's read and its write was
undone: the image lost a submitter, so it could be handed past its replicates, and to that user again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from crowdseg.adapters.sqlite_store import SqliteImages, SqliteStore
from crowdseg.domain import Image, utcnow

from tests.contract.test_store_contract import image, task

pytestmark = pytest.mark.contract


def run_now(call: Coroutine[Any, Any, Any]) -> Any:
    """Run a store call that never awaits (SQLite answers at once) to its end, synchronously."""
    try:
        call.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the store call awaited")


def between_read_and_write(table: SqliteImages, other_write: Coroutine[Any, Any, Any]) -> None:
    """The next document ``table`` reads, ``other_write`` (the other process) writes before ``table``
    writes it back."""
    read = SqliteImages.one.__get__(table)

    def one(where: str, *args: Any) -> Any:
        found = read(where, *args)
        table.one = read  # type: ignore[method-assign]
        run_now(other_write)
        return found

    table.one = one  # type: ignore[method-assign]


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


async def test_a_slot_claimed_while_the_worker_sets_certainty_is_kept(
    two_processes: tuple[SqliteStore, SqliteStore, Image],
) -> None:
    request, worker, img = two_processes
    between_read_and_write(worker.images, request.images.claim_slot(img.id, "bob", replicates=3, now=utcnow()))
    await worker.images.set_certainty(img.id, 0.97, retired=True)
    stored = await request.images.get(img.id)
    assert stored is not None
    assert stored.submitted_by == ["bob"] and (stored.certainty, stored.retired) == (0.97, True)


async def test_certainty_set_while_a_lease_is_taken_is_kept(
    two_processes: tuple[SqliteStore, SqliteStore, Image],
) -> None:
    request, worker, img = two_processes
    now = utcnow()
    between_read_and_write(request.images, worker.images.set_certainty(img.id, 0.5, retired=False))
    assert await request.images.try_lease(img.id, "cy", replicates=3, now=now, expires_at=now + timedelta(minutes=1))
    between_read_and_write(request.images, worker.images.set_certainty(img.id, 0.75, retired=False))
    assert await request.images.claim_slot(img.id, "cy", replicates=3, now=now)
    stored = await request.images.get(img.id)
    assert stored is not None
    assert stored.certainty == 0.75 and stored.submitted_by == ["cy"] and stored.leases == []
