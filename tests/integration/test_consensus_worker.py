"""The embedded profile computes consensus in a worker process of its own (issue 8: one Python process
runs Python code on one core at a time, so the request path and consensus each get one).

``crowdseg up`` starts the worker on the same data directory and broker; consensus made there is what
the main process answers; a worker that dies is started again and catches up; the worker never
outlives ``crowdseg up``, whether it is stopped or killed.
"""

from __future__ import annotations

import os
import signal
import uuid
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from crowdseg.simulation import careful_outline, synthetic_image

from tests.embedded import Api, EmbeddedServer, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    running = EmbeddedServer(tmp_path_factory.mktemp("worker") / "data").start()
    try:
        Api.sign_up(running.url, "master@worker.crowdseg", "Task Master")
        yield running
    finally:
        running.stop()


def workers(server: EmbeddedServer) -> list[psutil.Process]:
    assert server.process is not None
    return [
        child
        for child in psutil.Process(server.process.pid).children()
        if child.is_running() and child.status() != psutil.STATUS_ZOMBIE and "serve" in child.cmdline()
    ]


def one_worker(server: EmbeddedServer) -> psutil.Process:
    found = wait_for(lambda: workers(server) or None, 60, "the consensus worker to run")
    assert len(found) == 1, [w.cmdline() for w in found]
    assert found[0].cmdline()[-6:-4] == ["serve", "consensus"]
    return found[0]


TRUTH = {image.name: image for image in (synthetic_image(index, width=96, height=96, seed=5) for index in range(3))}


def task_with_images(master: Api, count: int) -> tuple[str, list[str]]:
    task = master.http.post("/tasks", json={"title": "Worker", "tool": "contour", "replicates": 2}).json()
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for image in list(TRUTH.values())[:count]:
            archive.writestr(image.name, image.png)
    answer = master.http.post(f"/tasks/{task['id']}/images", files=[("files", ("w.zip", buffer.getvalue()))])
    assert answer.status_code == 202, answer.text
    images = wait_for(
        lambda: (found := master.http.get(f"/tasks/{task['id']}/images").json()) and len(found) == count and found,
        60,
        "the images to be ingested",
    )
    return task["id"], [image["id"] for image in images]


def submit_all(api: Api, task_id: str, seed: int) -> int:
    accepted = 0
    while (answer := api.http.get(f"/tasks/{task_id}/next")).status_code == 200:
        image = answer.json()["image"]
        points = careful_outline(TRUTH[image["name"]].outline, np.random.default_rng(seed))
        body = {
            "id": uuid.uuid4().hex,
            "image_id": image["id"],
            "duration_ms": 900,
            "shapes": [{"type": "contour", "points": points}],
        }
        assert api.http.post(f"/tasks/{task_id}/submissions", json=body).status_code == 201
        accepted += 1
    return accepted


def consensus_counts(api: Api, image_ids: list[str]) -> list[Any]:
    found = [api.http.get(f"/images/{image_id}/consensus") for image_id in image_ids]
    return [answer.json()["submissions"] if answer.status_code == 200 else None for answer in found]


def test_consensus_is_computed_by_the_worker_and_answered_by_the_main_process(server: EmbeddedServer) -> None:
    worker = one_worker(server)
    master = Api.login(server.url, "master@worker.crowdseg")
    task_id, image_ids = task_with_images(master, 3)
    annotators = [Api.sign_up(server.url, f"a{n}@worker.crowdseg", f"A{n}") for n in range(2)]
    assert sum(submit_all(api, task_id, n) for n, api in enumerate(annotators)) == 6
    wait_for(lambda: consensus_counts(master, image_ids) == [2, 2, 2], 60, "the worker's consensus")
    assert worker.cpu_times().user > 0
    assert master.http.get(f"/tasks/{task_id}/stats").json()["consensus_images"] == 3


def test_a_worker_that_dies_is_started_again_and_catches_up(server: EmbeddedServer) -> None:
    dead = one_worker(server)
    dead.send_signal(signal.SIGKILL)
    dead.wait(10)
    master = Api.login(server.url, "master@worker.crowdseg")
    task_id, image_ids = task_with_images(master, 2)
    annotators = [Api.sign_up(server.url, f"b{n}@worker.crowdseg", f"B{n}") for n in range(2)]
    assert sum(submit_all(api, task_id, n) for n, api in enumerate(annotators)) == 4
    replacement = one_worker(server)
    assert replacement.pid != dead.pid
    wait_for(lambda: consensus_counts(master, image_ids) == [2, 2], 90, "consensus after the worker restarted")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_the_worker_never_outlives_crowdseg_up(tmp_path: Path, stop_signal: signal.Signals) -> None:
    running = EmbeddedServer(tmp_path / "data").start()
    try:
        pid = one_worker(running).pid
    finally:
        running.stop(stop_signal)
    wait_for(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        20,
        "the worker to exit with crowdseg up",
    )
    assert os.path.exists(tmp_path / "data")
