"""Group commit: one fsync answers every writer waiting when it began (issue 8: the embedded store
synced every commit on the event loop, ~1.5 ms each, which capped the platform near 100 submissions/s)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from crowdseg.adapters.group_sync import GroupSync

pytestmark = pytest.mark.unit


async def test_concurrent_waiters_share_the_syncs(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    path.write_bytes(b"frames")
    sync = GroupSync([path, tmp_path / "missing"])
    await asyncio.gather(*(sync.wait() for _ in range(50)))
    # The first waiter's sync began before the others arrived; one more covers all 49 of them.
    assert sync.syncs == 2


async def test_a_later_write_waits_for_a_sync_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    path.write_bytes(b"frames")
    sync = GroupSync([path])
    await sync.wait()
    await sync.wait()
    assert sync.syncs == 2
