"""Timings from inside every crowdseg process, for bench/load/cycles.py (not a benchmark itself).

Python imports this module at start-up when its directory is on ``PYTHONPATH``; the server processes
inherit that. Each of these variables turns one probe on, and names the file prefix it writes to
(``<prefix>.<pid>``, first line the command):

- ``PROBE_GC``: every collection of generation 1 or 2 (time, generation, pause);
- ``PROBE_FSYNC``: every ``os.fsync`` over 5 ms (time, duration, file, thread);
- ``PROBE_SQL``: every SQLite statement or commit over 3 ms (time, duration, statement);
- ``PROBE_MONGO``: store commands by command and collection (count, total µs), written every 2 s.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import sqlite3
import sys
import threading
import time
from typing import Any


def _open(variable: str) -> Any:
    handle = open(f"{os.environ[variable]}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115 - for the process's life
    handle.write(" ".join(sys.argv[:4]) + "\n")
    return handle


def _probe_gc() -> None:
    out, started = _open("PROBE_GC"), [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif info["generation"] >= 1:
            pause = 1000 * (time.perf_counter() - started[0])
            out.write(f"{time.time():.3f} gen{info['generation']} {pause:.1f}ms\n")

    gc.callbacks.append(callback)


def _probe_fsync() -> None:
    out, fsync = _open("PROBE_FSYNC"), os.fsync

    def timed(descriptor: int) -> None:
        started = time.perf_counter()
        fsync(descriptor)
        took = 1000 * (time.perf_counter() - started)
        if took > 5:
            try:
                name = os.readlink(f"/proc/self/fd/{descriptor}").rsplit("/", 1)[-1]
            except OSError:
                name = "?"
            out.write(f"{time.time():.3f} {took:.1f}ms {name} {threading.current_thread().name}\n")

    os.fsync = timed


def _probe_sql() -> None:
    out, connect = _open("PROBE_SQL"), sqlite3.connect

    def log(started: float, what: str) -> None:
        took = 1000 * (time.perf_counter() - started)
        if took > 3:
            out.write(f"{time.time():.3f} {took:.1f}ms {' '.join(what.split())[:70]}\n")

    class Timed(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            started = time.perf_counter()
            try:
                return super().execute(sql, *args)
            finally:
                log(started, sql)

        def commit(self) -> None:
            started = time.perf_counter()
            try:
                super().commit()
            finally:
                log(started, "COMMIT")

    def timed_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", Timed)
        return connect(*args, **kwargs)

    sqlite3.connect = timed_connect  # type: ignore[assignment]


def _probe_mongo() -> None:
    from pymongo import monitoring

    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    micros: collections.Counter[tuple[str, str]] = collections.Counter()
    pending: dict[int, tuple[str, str]] = {}

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            target = event.command.get(event.command_name)
            pending[event.request_id] = (event.command_name, target if isinstance(target, str) else "")

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            if (key := pending.pop(event.request_id, None)) is not None:
                counts[key] += 1
                micros[key] += event.duration_micros

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            if (key := pending.pop(event.request_id, None)) is not None:
                counts[(f"{key[0]} (failed)", key[1])] += 1

    monitoring.register(Listener())
    service = sys.argv[sys.argv.index("serve") + 1] if "serve" in sys.argv else os.path.basename(sys.argv[0])
    path = f"{os.environ['PROBE_MONGO']}.{os.getpid()}"

    def dump() -> None:
        while True:
            time.sleep(2)
            rows = [
                [command, collection, n, micros[(command, collection)]] for (command, collection), n in counts.items()
            ]
            with open(path, "w") as handle:
                json.dump({"service": service, "commands": rows}, handle)

    threading.Thread(target=dump, name="probe-mongo", daemon=True).start()


for _variable, _install in (
    ("PROBE_GC", _probe_gc),
    ("PROBE_FSYNC", _probe_fsync),
    ("PROBE_SQL", _probe_sql),
    ("PROBE_MONGO", _probe_mongo),
):
    if os.environ.get(_variable):
        _install()
