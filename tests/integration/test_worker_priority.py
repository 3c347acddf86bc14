"""`crowdseg up` runs its consensus workers at a lower CPU priority than the request process.

Pins issue 8: at the same priority, consensus with three raters per image competed with the request
path for the two cores, and `next` / submit p99 at 200 submissions/s were 31 / 90 ms against 18 / 45
ms with the workers at nice 10.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from tests.embedded import EmbeddedServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def consensus_workers(server: EmbeddedServer, timeout: float = 30.0) -> list[psutil.Process]:
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(server.process.pid).children(recursive=True)
        workers = [c for c in children if "consensus" in " ".join(c.cmdline())]
        if workers:
            return workers
        time.sleep(0.2)
    raise AssertionError("no consensus worker process was started")


@pytest.mark.parametrize("niceness", [None, "3"])
def test_consensus_workers_run_below_the_request_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, niceness: str | None
) -> None:
    if niceness is not None:
        monkeypatch.setenv("CROWDSEG_CONSENSUS_NICENESS", niceness)  # inherited by `crowdseg up`
    server = EmbeddedServer(tmp_path / "data").start()
    try:
        assert server.process is not None
        main = psutil.Process(server.process.pid).nice()
        expected = min(19, main + (10 if niceness is None else int(niceness)))
        assert [worker.nice() for worker in consensus_workers(server)] == [expected]
        assert main == os.nice(0)  # the request process keeps the priority it was started with
    finally:
        server.stop()
