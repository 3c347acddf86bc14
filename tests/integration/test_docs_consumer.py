"""The ML pipeline guide's consumer example (docs/ml-pipeline.md), run as the page prints it.

The snippet is taken from the page, not copied, so the docs cannot drift from code that works: it runs
as a script against the shared embedded platform's broker while one contour image gets its consensus,
and must print that consensus and save its mask.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from crowdseg.simulation import synthetic_image
from PIL import Image

from tests.embedded import ROOT, Api, EmbeddedServer, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGE = ROOT / "docs" / "ml-pipeline.md"
SNIPPET = re.compile(r"<!-- snippet: consumer -->\s*```python\n(.*?)```", re.DOTALL)
BROKER = re.compile(r"embedded broker listening on (\S+)")


def consumer_snippet() -> str:
    match = SNIPPET.search(PAGE.read_text())
    assert match, f"{PAGE} has no python block after <!-- snippet: consumer -->"
    return match.group(1)


def broker_address(server: EmbeddedServer) -> str:
    """What the guide tells the reader to look for: the broker's address in crowdseg up's log."""
    found = BROKER.search(server.log_path.read_text(errors="replace"))
    assert found, server.log_tail()
    return found.group(1)


def test_the_guides_consumer_saves_each_new_consensus_mask(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory, tmp_path: Path
) -> None:
    body = {"title": "pipeline", "tool": "contour", "replicates": 1, "max_shapes": 1}
    task = taskmaster.http.post("/tasks", json=body)
    assert task.status_code == 201, task.text
    task_id = task.json()["id"]
    image = synthetic_image(7)
    upload = taskmaster.http.post(f"/tasks/{task_id}/images", files=[("files", (image.name, image.png, "image/png"))])
    assert upload.status_code == 202 and len(upload.json()["accepted"]) == 1, upload.text
    image_id = upload.json()["accepted"][0]["id"]

    script = tmp_path / "consumer.py"
    script.write_text(consumer_snippet())
    output = tmp_path / "consumer.log"
    env = {
        **os.environ,
        "CROWDSEG_TASK": task_id,
        "CROWDSEG_API": f"{embedded.url}/api/v1",
        "CROWDSEG_TOKEN": str(taskmaster.http.headers["Authorization"]).removeprefix("Bearer "),
        "KAFKA_BOOTSTRAP_SERVERS": broker_address(embedded),
    }
    with open(output, "wb") as log:
        consumer = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        annotator = annotator_factory()
        assigned = annotator.http.get(f"/tasks/{task_id}/next")
        assert assigned.status_code == 200 and assigned.json()["image"]["id"] == image_id, assigned.text
        outline = [list(point) for point in image.outline[::4]]
        submission = {"id": str(uuid.uuid4()), "image_id": image_id, "shapes": [{"type": "contour", "points": outline}]}
        submitted = annotator.http.post(f"/tasks/{task_id}/submissions", json=submission)
        assert submitted.status_code == 201, submitted.text

        printed = f"consensus {image_id} version 1"

        def consumed() -> bool:
            assert consumer.poll() is None, output.read_text()
            return printed in output.read_text()

        wait_for(consumed, timeout=120, what=f"the snippet to print {printed!r}")
    finally:
        consumer.terminate()
        consumer.wait(10)

    saved = Image.open(io.BytesIO((tmp_path / f"{image_id}.png").read_bytes()))
    served = httpx.get(
        f"{embedded.url}/api/v1/images/{image_id}/consensus/mask.png", headers=taskmaster.http.headers, timeout=30
    )
    assert served.status_code == 200
    assert saved.size == (image.width, image.height)
    assert list(saved.getdata()) == list(Image.open(io.BytesIO(served.content)).getdata())
