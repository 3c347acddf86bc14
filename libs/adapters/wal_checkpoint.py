"""Checkpoints of the embedded store's WAL in a thread of its own.

SQLite copies the WAL back into the database (a checkpoint) in whichever connection commits once the
WAL passes ``wal_autocheckpoint`` pages: on the embedded profile that is the event loop, which then
copies megabytes and waits for two fsyncs while every request waits with it (at 200 submissions/s,
about once a second). Here a thread with a connection of its own checkpoints every second without
waiting for readers or writers (``PASSIVE``, which never blocks them either; the sqlite3 module
releases the GIL meanwhile), and the store's own connection keeps a far larger threshold only as a
backstop (https://sqlite.org/wal.html#automatic_checkpoint).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

BACKSTOP_PAGES = 20_000  # the store connection's own threshold (80 MiB of WAL at 4 KiB pages)


class WalCheckpointer:
    def __init__(self, path: Path, interval_seconds: float = 1.0) -> None:
        self.path = path
        self.interval_seconds = interval_seconds
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            log.exception("the WAL checkpointer cannot open %s; commits checkpoint by themselves", self.path)
            return
        try:
            while not self._stop.wait(self.interval_seconds):
                self.checkpoint(connection)
        finally:
            connection.close()

    def checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # another process's checkpoint is running: the next second will do
            log.debug("WAL checkpoint skipped: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
