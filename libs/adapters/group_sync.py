"""Group commit for the embedded store: one fsync makes every write committed before it durable.

SQLite in WAL mode with ``synchronous = NORMAL`` writes each commit to the WAL file without an
fsync: a crashed or killed process loses nothing (the frames are in the operating system's cache),
but a power cut may lose the newest commits. Syncing every commit instead (``FULL``) costs ~1.5 ms
of disk wait per write here, on the event loop, which capped the whole platform near 100
submissions a second. So commits do not sync, and whoever must not lose a write (an acknowledged
request) awaits :meth:`GroupSync.wait`: the fsyncs run in a thread of their own, one at a time, and
one fsync answers everybody who was waiting when it began, all at once (one future per batch, not a
lock handed from waiter to waiter, which on a busy event loop costs one loop iteration per waiter).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


class GroupSync:
    """fsync ``paths`` (those that exist) on behalf of every waiter, one sync for many."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = paths
        # A thread of its own: behind CPU work in the shared default pool, a sync (and every
        # acknowledgement waiting on it) would queue for as long as that work takes.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="group-sync")
        self._next: asyncio.Future[None] | None = None  # the batch the next sync will answer
        self._syncing: asyncio.Task[None] | None = None
        self.syncs = 0

    async def wait(self) -> None:
        """Return once everything written before this call is on disk."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        batch = self._next
        if self._syncing is None:
            self._syncing = asyncio.create_task(self._run())
        await asyncio.shield(batch)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._next is not None:
                batch, self._next = self._next, None  # who arrives from now on waits for the next sync
                try:
                    await loop.run_in_executor(self._thread, self._sync)
                except Exception as exc:
                    batch.set_exception(exc)
                else:
                    batch.set_result(None)
                self.syncs += 1
        finally:
            self._syncing = None

    def _sync(self) -> None:
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                descriptor = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
