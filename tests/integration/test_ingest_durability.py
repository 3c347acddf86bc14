"""Ingest across a crash: an image the API accepted or lists is whole (original, rendition, thumbnail,
document) after the process is killed mid-upload and started again, and its ``image.ingested`` event
still goes out."""

from __future__ import annotations

import io
import signal
import sqlite3
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.embedded import Api, EmbeddedServer, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def png(rng: np.random.Generator, grey: bool) -> bytes:
    shape = (64, 48) if grey else (64, 48, 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def zip_of(start: int, count: int) -> bytes:
    rng = np.random.default_rng(start)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for n in range(start, start + count):
            zf.writestr(f"set/{n:05d}.png", png(rng, grey=n % 2 == 0))
    return buffer.getvalue()


def upload(api: Api, task_id: str, name: str, data: bytes) -> httpx.Response:
    return api.http.post(f"/tasks/{task_id}/images", files=[("files", (name, data, "application/zip"))])


def listed(api: Api, task_id: str) -> list[dict[str, object]]:
    response = api.http.get(f"/tasks/{task_id}/images", params={"limit": 5000})
    assert response.status_code == 200, response.text
    images: list[dict[str, object]] = response.json()
    return images


def objects(data_dir: Path) -> int:
    root = data_dir / "objects"
    return sum(1 for path in root.rglob("*") if path.is_file()) if root.exists() else 0


def unpublished(data_dir: Path) -> int:
    with sqlite3.connect(f"file:{data_dir / 'crowdseg.sqlite3'}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM images WHERE pending = 1").fetchone()
    return int(count)


def assert_whole(api: Api, image: dict[str, object]) -> None:
    for route in ("file", "thumbnail"):
        response = api.http.get(f"/images/{image['id']}/{route}")
        assert response.status_code == 200, (route, response.text)
        shown = Image.open(io.BytesIO(response.content))
        shown.load()  # the whole object is there and decodes
        assert shown.size == (48, 64)  # small enough to be its own thumbnail


def test_a_crash_mid_upload_leaves_only_whole_images_and_the_rest_can_be_uploaded_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = EmbeddedServer(data_dir).start()
    first, second = zip_of(0, 60), zip_of(60, 400)
    try:
        master = Api.sign_up(server.url, "master@durability.example", "Master")  # the first account: admin
        task = master.http.post("/tasks", json={"title": "crash", "tool": "contour"}).json()
        response = upload(master, task["id"], "first.zip", first)
        assert response.status_code == 202, response.text
        accepted = {image["id"] for image in response.json()["accepted"]}
        assert len(accepted) == 60
        before = objects(data_dir)

        # Kill the process (no clean shutdown) once the second upload has begun writing objects.
        outcome: list[httpx.Response | httpx.HTTPError] = []
        thread = threading.Thread(
            target=lambda: outcome.append(_try(lambda: upload(master, task["id"], "second.zip", second))),
            daemon=True,
        )
        thread.start()
        wait_for(lambda: objects(data_dir) > before or outcome, what="the second upload to start storing")
        port = server.port
        server.stop(signal.SIGKILL)
        thread.join(60)
    finally:
        server.stop()

    server = EmbeddedServer(data_dir, port=port).start()
    try:
        master = Api.login(server.url, "master@durability.example")
        images = listed(master, task["id"])
        assert accepted <= {image["id"] for image in images}  # everything accepted survived
        for image in images:  # and everything listed is whole
            assert_whole(master, image)

        # Uploading the interrupted set again stores exactly what is missing.
        response = upload(master, task["id"], "second.zip", second)
        assert response.status_code in (202, 422), response.text
        body = response.json()
        again_accepted = len(body.get("accepted", []))
        duplicates = [r for r in body.get("rejected", []) if "already in the task" in r["reason"]]
        assert again_accepted + len(duplicates) == 400
        images = listed(master, task["id"])
        assert len(images) == 460 and len({image["name"] for image in images}) == 460
        for image in images[::23]:
            assert_whole(master, image)
        # Events of images stored before the crash but not yet published go out after the restart.
        wait_for(lambda: unpublished(data_dir) == 0, what="every image.ingested event to be published")
    finally:
        server.stop()


def _try(call: Callable[[], httpx.Response]) -> httpx.Response | httpx.HTTPError:
    try:
        return call()
    except httpx.HTTPError as exc:  # the server was killed while answering
        return exc
