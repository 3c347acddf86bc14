"""Group commit for the embedded store: one fsync makes every write committed before it durable.

SQLite in WAL mode with ``synchronous = NORMAL`` writes each commit to the WAL file without an
fsync: a crashed or killed process loses nothing (the frames are in the operating system's cache),
but a power cut may lose the newest commits. Syncing every commit instead (``FULL``) costs ~1.5 ms
of disk wait per write here, on the event loop, which capped the whole platform near 100
submissions a second. So commits do not sync, and whoever must not lose a write (an acknowledged
request) awaits :meth:`GroupSync.wait`: the fsyncs run in a thread of their own, one at a time, and
one fsync answers everybody who was waiting when it began, all at once (one future per batch, not a
lock handed from waiter to waiter, which on a busy event loop costs one loop iteration per waiter).

The files are opened once and stay open until :meth:`GroupSync.close`, after the store's connection
is closed: closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
too. A descriptor opened and closed per sync dropped the store's locks on the database file, so the
next process to open it (the embedded profile's restarted consensus worker) took itself for the only
one, rebuilt the WAL index, and this process went on reading an old snapshot for good
(https://sqlite.org/howtocorrupt.html, section 2.2).
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
        self.paths = paths
        # A thread of its own: behind CPU work in the shared default pool, a sync (and every
        # acknowledgement waiting on it) would queue for as long as that work takes.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="group-sync")
        self._next: asyncio.Future[None] | None = None  # the batch the next sync will answer
        self._syncing: asyncio.Task[None] | None = None
        self._descriptors: dict[Path, int] = {}  # never closed while the store is open (see above)
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
        for path in self.paths:
            descriptor = self._descriptors.get(path)
            if descriptor is None:
                try:
                    descriptor = self._descriptors[path] = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue  # the WAL file appears with the first write
            os.fsync(descriptor)

    def close(self) -> None:
        """Close the files; only once the SQLite connection is closed (its locks go with them)."""
        self._thread.shutdown(wait=True)
        descriptors, self._descriptors = self._descriptors, {}
        for descriptor in descriptors.values():
            with contextlib.suppress(OSError):
                os.close(descriptor)
