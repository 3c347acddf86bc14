"""A simulated crowd over the public HTTP API (shared by the cluster tests and the pipeline bench)."""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import numpy as np
from crowdseg.consensus import dice
from crowdseg.simulation import SyntheticImage, careful_outline, sloppy_outline, synthetic_image
from PIL import Image as PILImage

from tests.embedded import Api, wait_for

RETRYABLE = {502, 503, 504}


def zip_of(images: list[SyntheticImage]) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for image in images:
            zf.writestr(image.name, image.png)
    return archive.getvalue()


@dataclass
class CrowdTask:
    """A contour task with synthetic images of known truth, created by ``master``."""

    master: Api
    task_id: str
    truth: dict[str, SyntheticImage]  # by image name
    images: dict[str, str]  # image id → name
    replicates: int
    accepted: dict[str, str] = field(default_factory=dict)  # submission id → image id
    accepted_at: dict[str, float] = field(default_factory=dict)  # submission id → time.time() of the answer

    @classmethod
    def create(
        cls, master: Api, *, images: int, replicates: int, seed: int = 11, size: int = 256, title: str = "cluster"
    ) -> CrowdTask:
        task = master.http.post(
            "/tasks",
            json={
                "title": title,
                "tool": "contour",
                "replicates": replicates,
                "instructions": "Outline the **large** bright object.",
                "order": "random",
                "unseen_first": True,
                "visibility": "public",
            },
        )
        assert task.status_code == 201, task.text
        synthetic = [synthetic_image(i, width=size, height=size, seed=seed) for i in range(images)]
        upload = master.http.post(
            f"/tasks/{task.json()['id']}/images",
            files=[("files", ("batch.zip", zip_of(synthetic), "application/zip"))],
        )
        assert upload.status_code == 202, upload.text
        assert upload.json()["rejected"] == [], upload.text
        ids = {image["id"]: image["name"] for image in upload.json()["accepted"]}
        assert len(ids) == images
        return cls(master, task.json()["id"], {image.name: image for image in synthetic}, ids, replicates)

    def annotate(
        self,
        api: Api,
        *,
        bad: bool,
        seed: int,
        limit: int | None = None,
        retry_for: float = 120.0,
        pause: float = 0.0,
    ) -> int:
        """``next`` → ``submissions`` until nothing is left (or ``limit``); a 5xx or a dropped connection
        is retried with the same submission id, as a client should. Returns how many were accepted."""
        rng = np.random.default_rng(seed)
        done = 0
        while limit is None or done < limit:
            response = self._retrying(lambda: api.http.get(f"/tasks/{self.task_id}/next"), retry_for)
            if response.status_code == 204:
                break
            assert response.status_code == 200, response.text
            image = response.json()["image"]
            outline = self.truth[image["name"]].outline
            points = sloppy_outline(outline, rng) if bad else careful_outline(outline, rng)
            body = {
                "id": uuid.uuid4().hex,
                "image_id": image["id"],
                "duration_ms": int(rng.integers(20_000, 90_000)),
                "shapes": [{"type": "contour", "points": points}],
            }
            stored = self._retrying(partial(api.http.post, f"/tasks/{self.task_id}/submissions", json=body), retry_for)
            assert stored.status_code in (200, 201), stored.text
            self.accepted[body["id"]] = image["id"]
            self.accepted_at[body["id"]] = time.time()
            done += 1
            if pause:
                time.sleep(pause)
        return done

    @staticmethod
    def _retrying(call: Callable[[], httpx.Response], retry_for: float) -> httpx.Response:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                response = call()
                if response.status_code not in RETRYABLE:
                    return response
                failure = f"{response.status_code} {response.text}"
            except httpx.TransportError as exc:
                failure = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"still failing after {retry_for:.0f} s: {failure}")
            time.sleep(0.5)

    def consensus(self, image_id: str) -> dict[str, Any] | None:
        response = self.master.http.get(f"/images/{image_id}/consensus")
        return response.json() if response.status_code == 200 else None

    def stored_counts(self) -> dict[str, int]:
        """Submissions per image, as the store has them."""
        listed = self.master.http.get(f"/tasks/{self.task_id}/images")
        assert listed.status_code == 200, listed.text
        return {image["id"]: image["submissions"] for image in listed.json()}

    def wait_for_full_consensus(self, timeout: float = 180.0) -> dict[str, dict[str, Any]]:
        """Every image's consensus includes every submission the store holds for it."""
        expected: dict[str, int] = {}
        for image_id in self.accepted.values():
            expected[image_id] = expected.get(image_id, 0) + 1

        def settled() -> dict[str, dict[str, Any]] | None:
            found = {image_id: self.consensus(image_id) for image_id in expected}
            if all(c is not None and c["submissions"] >= n for (image_id, n), c in zip(
                expected.items(), found.values(), strict=True
            )):
                return {k: v for k, v in found.items() if v is not None}
            return None

        result: dict[str, dict[str, Any]] = wait_for(settled, timeout, "every image's consensus over all submissions")
        return result

    def assert_nothing_lost(self, timeout: float = 180.0) -> dict[str, dict[str, Any]]:
        """Every accepted submission is stored, and each image's consensus includes all of its submissions."""
        counts = self.stored_counts()
        for submission_id, image_id in self.accepted.items():
            assert image_id in counts, submission_id
        per_image: dict[str, int] = {}
        for image_id in self.accepted.values():
            per_image[image_id] = per_image.get(image_id, 0) + 1
        for image_id, n in per_image.items():
            assert counts[image_id] == n, f"image {image_id}: {counts[image_id]} stored, {n} accepted"
        found = self.wait_for_full_consensus(timeout)
        for image_id, consensus in found.items():
            assert consensus["submissions"] == counts[image_id], (image_id, consensus["submissions"], counts[image_id])
            rated = {rater["submission_id"] for rater in consensus["raters"]}
            mine = {s for s, i in self.accepted.items() if i == image_id}
            assert rated == mine, f"image {image_id}: consensus rates {rated ^ mine} differently"
        return found


def crowd_reaches_expert_consensus_and_exports_it(
    url: str, master: Api, *, images: int = 6, annotators: int = 10, bad: int = 2, replicates: int = 10
) -> None:
    """The end-to-end flow through a gateway at ``url``: ``master`` (an admin) creates a contour task
    of synthetic images with known truth; ``annotators`` simulated annotators (the first ``bad`` of them
    sloppy) loop ``next`` → ``submissions`` at once; every image's consensus covers all its submissions
    with Dice ≥ 0.95 against the truth; the sloppy annotators rank last; the export ZIP holds it all."""
    task = CrowdTask.create(master, images=images, replicates=replicates, seed=11, title="cluster flow")
    domain = uuid.uuid4().hex[:8]
    crowd = [Api.sign_up(url, f"flow-{n}@{domain}.crowdseg", f"Annotator {n}") for n in range(annotators)]
    with ThreadPoolExecutor(annotators) as pool:
        done = list(pool.map(lambda n: task.annotate(crowd[n], bad=n < bad, seed=n), range(annotators)))
    assert sum(done) == images * replicates
    assert set(task.stored_counts().values()) == {replicates}  # never over-covered, across processes

    found = task.assert_nothing_lost()
    for image_id, consensus in found.items():
        assert consensus["method"] == "staple"
        png = master.http.get(f"/images/{image_id}/consensus/mask.png")
        assert png.status_code == 200, png.text
        mask = np.asarray(PILImage.open(io.BytesIO(png.content))) > 127
        truth = task.truth[task.images[image_id]].truth()
        assert dice(mask, truth) >= 0.95, task.images[image_id]

    stats = master.http.get(f"/tasks/{task.task_id}/stats").json()
    sensitivity = {user["user_id"]: user["sensitivity"] for user in stats["users"]}
    sloppy = {str(api.user["id"]) for api in crowd[:bad]}
    careful = {str(api.user["id"]) for api in crowd[bad:]}
    assert max(sensitivity[u] for u in sloppy) < min(sensitivity[u] for u in careful)
    quality = {user["user_id"]: user["quality"] for user in stats["users"]}
    assert max(quality[u] for u in sloppy) < min(quality[u] for u in careful)

    # An expert reference (the truth) on one image rescores it in the consensus service at once.
    image_id = sorted(task.images)[0]
    outline = {"type": "contour", "points": [[x, y] for x, y in task.truth[task.images[image_id]].outline]}
    reference = master.http.put(f"/images/{image_id}/reference", json={"shapes": [outline]})
    assert reference.status_code == 200, reference.text
    rescored = master.http.get(f"/images/{image_id}/consensus").json()
    assert {r["quality_basis"] for r in rescored["raters"]} == {"reference"}
    evaluation = master.http.get(f"/tasks/{task.task_id}/evaluation").json()
    assert evaluation["images"] == 1 and evaluation["consensus"]["dice"] >= 0.95, evaluation

    export = master.http.post(f"/tasks/{task.task_id}/exports")
    assert export.status_code == 202, export.text
    export_id = export.json()["id"]

    def finished() -> dict[str, object] | None:
        status: dict[str, object] = master.http.get(f"/exports/{export_id}").json()
        assert status["status"] != "failed", status
        return status if status["status"] == "done" else None

    wait_for(finished, 180, "the export")
    download = master.http.get(f"/exports/{export_id}/download")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(download.content)).namelist())
    for required in ("manifest.json", "task.json", "staple_parameters.csv", "user_performance.csv", "evaluation.json"):
        assert required in names
    assert {"coco/annotations.json", "coco/consensus.json"} <= names
    submission_files = [n for n in names if n.startswith("submissions/") and n.endswith(".json")]
    assert len(submission_files) == images * replicates
