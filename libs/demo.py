"""``crowdseg demo``: a demo task with synthetic images and a simulated crowd, over the HTTP API."""

from __future__ import annotations

import io
import uuid
import zipfile
from dataclasses import dataclass

import httpx
import numpy as np
from crowdseg.simulation import careful_outline, sloppy_outline, synthetic_image

DEMO_PASSWORD = "demo-password"


@dataclass(frozen=True)
class DemoResult:
    task_id: str
    taskmaster_email: str
    password: str
    images: int
    submissions: int


def _account(client: httpx.Client, email: str, name: str) -> dict[str, str]:
    client.post("/api/v1/auth/signup", json={"email": email, "password": DEMO_PASSWORD, "name": name})
    response = client.post("/api/v1/auth/login", json={"email": email, "password": DEMO_PASSWORD})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def seed(base_url: str, *, images: int = 8, annotators: int = 6, bad: int = 1, replicates: int = 5) -> DemoResult:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        master = _account(client, "taskmaster@demo.crowdseg", "Demo Task Master")
        me = client.get("/api/v1/me", headers=master).json()
        if "taskmaster" not in me["roles"]:
            raise RuntimeError("the demo task master is not a taskmaster; seed an empty data directory")
        task = client.post(
            "/api/v1/tasks",
            headers=master,
            json={
                "title": "Demo: outline the bright object",
                "tool": "contour",
                "replicates": replicates,
                "instructions": "Outline the **large bright object** in each image. Ignore the small round cells.",
                "order": "random",
                "unseen_first": True,
                "metric": "dice",
                "pass_threshold": 0.7,
                "visibility": "public",
                "max_shapes": 3,
            },
        ).json()
        synthetic = [synthetic_image(i) for i in range(images)]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            for image in synthetic:
                zf.writestr(image.name, image.png)
        uploaded = client.post(
            f"/api/v1/tasks/{task['id']}/images",
            headers=master,
            files=[("files", ("demo.zip", archive.getvalue(), "application/zip"))],
        ).json()
        truth = {image.name: image for image in synthetic}
        submitted = 0
        for n in range(annotators):
            headers = _account(client, f"annotator{n}@demo.crowdseg", f"Annotator {n}")
            rng = np.random.default_rng(n)
            while (response := client.get(f"/api/v1/tasks/{task['id']}/next", headers=headers)).status_code == 200:
                image = response.json()["image"]
                outline = truth[image["name"]].outline
                points = sloppy_outline(outline, rng) if n < bad else careful_outline(outline, rng)
                client.post(
                    f"/api/v1/tasks/{task['id']}/submissions",
                    headers=headers,
                    json={
                        "id": uuid.uuid4().hex,
                        "image_id": image["id"],
                        "duration_ms": int(rng.integers(20_000, 90_000)),
                        "shapes": [{"type": "contour", "points": points}],
                    },
                ).raise_for_status()
                submitted += 1
        return DemoResult(task["id"], "taskmaster@demo.crowdseg", DEMO_PASSWORD, len(uploaded["accepted"]), submitted)
