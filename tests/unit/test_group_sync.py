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
    assert sync.syncs == 1  # all 50 were waiting when it began


async def test_a_later_write_waits_for_a_sync_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    path.write_bytes(b"frames")
    sync = GroupSync([path])
    await sync.wait()
    await sync.wait()
    assert sync.syncs == 2


async def test_who_arrives_during_a_sync_waits_for_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "wal"
    path.write_bytes(b"frames")
    sync = GroupSync([path])
    first = asyncio.ensure_future(sync.wait())
    await asyncio.sleep(0.01)  # the first sync has taken its batch (it may even be done)
    later = [asyncio.ensure_future(sync.wait()) for _ in range(20)]
    await asyncio.gather(first, *later)
    assert sync.syncs == 2


def test_syncing_keeps_the_stores_locks(tmp_path: Path) -> None:
    """Regression (issue 8, the embedded consensus worker): each sync opened and closed the database
    file, and closing any descriptor of a file drops every POSIX lock the process holds on it. SQLite's
    shared lock on the database went with it, so a process that opened the file next took itself for
    the only one, rebuilt the WAL index, and this process's connection read an old snapshot for good."""
    import fcntl
    import os

    path = tmp_path / "db"
    path.write_bytes(b"pages")
    holder = os.open(path, os.O_RDWR)
    fcntl.lockf(holder, fcntl.LOCK_SH)  # as SQLite holds its lock: a POSIX record lock of this process
    sync = GroupSync([path])
    asyncio.run(sync.wait())
    probe = os.fork()
    if probe == 0:  # another process: the lock must still be there, so an exclusive one is refused
        try:
            fcntl.lockf(os.open(path, os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(probe, 0)
    sync.close()
    os.close(holder)
    assert os.waitstatus_to_exitcode(status) == 0, "a sync dropped this process's lock on the file"
