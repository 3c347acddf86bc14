"""Group commit for the embedded store: one fsync makes every write committed before it durable.

SQLite in WAL mode with ``synchronous = NORMAL`` writes each commit to the WAL file without an
fsync: a crashed or killed process loses nothing (the frames are in the operating system's cache),
but a power cut may lose the newest commits. Syncing every commit instead (``FULL``) costs ~1.5 ms
of disk wait per write here, on the event loop, which capped the whole platform near 100
submissions a second. So commits do not sync, and whoever must not lose a write (an acknowledged
request) awaits :meth:`GroupSync.wait`: the fsyncs run in a worker thread, one at a time, and one
fsync answers everybody who was waiting when it began.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path


class GroupSync:
    """fsync ``paths`` (those that exist) on behalf of every waiter, one sync for many."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = paths
        self._lock = asyncio.Lock()
        self._begun = 0  # syncs started so far
        self._done = 0  # the newest sync that has finished
        self.syncs = 0

    async def wait(self) -> None:
        """Return once everything written before this call is on disk."""
        needed = self._begun + 1  # a sync that begins after now covers what was written before now
        async with self._lock:
            if self._done >= needed:
                return
            self._begun += 1
            number = self._begun
            await asyncio.to_thread(self._sync)
            self._done = number
            self.syncs += 1

    def _sync(self) -> None:
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                descriptor = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
