"""A simulated crowd over the public HTTP API (shared by the cluster tests and the pipeline bench)."""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import numpy as np
from crowdseg.simulation import SyntheticImage, careful_outline, sloppy_outline, synthetic_image

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
