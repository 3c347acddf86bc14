"""The embedded store's WAL is checkpointed by a thread of its own (issue 8: the commit that crossed
``wal_autocheckpoint`` copied the WAL back into the database and waited for two fsyncs on the event
loop, about once a second at 200 submissions/s)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from crowdseg.adapters.sqlite_store import SqliteStore
from crowdseg.adapters.wal_checkpoint import BACKSTOP_PAGES

pytestmark = pytest.mark.unit


async def test_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    try:
        assert store.connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
        for n in range(200):
            await store.meta.put(f"key-{n}", "x" * 2000)
        for _ in range(50):  # the thread checkpoints every second
            if store._checkpointer.checkpoints:
                break
            await asyncio.sleep(0.1)
        other = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
        busy, wal_frames, checkpointed = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        other.close()
        assert store._checkpointer.checkpoints > 0
        assert (busy, checkpointed) == (0, wal_frames)  # nothing was left behind
    finally:
        await store.close()
    assert store._checkpointer._thread is None  # stopped with the store
