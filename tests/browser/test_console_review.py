"""The task master reviews an image's submissions in the console (issue 10, review).

Two annotators outline one image; in the Images tab the task master opens the image's review card,
rejects one submission and sees the image's count of submissions drop to one and the row marked
rejected; accepting it again brings the count back. Screenshots go to
tests/browser/artifacts/test_console_review/.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.browser.helpers import LONG, PASSWORD, Shot, sign_up
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def wait_count(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelector(\"[data-testid='image-submissions']\")?.textContent.trim() === String(n)",
        arg=count,
        timeout=LONG,
    )


def test_rejecting_a_submission_in_the_console_drops_its_image_s_count(
    server: EmbeddedServer, browser: Any, artifacts: Path
) -> None:
    url = server.url
    shot = Shot(artifacts)
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_up(page, url, "Review Master", "review@example.org")  # the first account: admin and task master
        master = Api.login(url, "review@example.org", PASSWORD)
        made = master.http.post("/tasks", json={"title": "Review", "tool": "contour", "replicates": 2})
        assert made.status_code == 201, made.text
        task_id = made.json()["id"]
        png = synthetic_image(1, 64, 64).png
        uploaded = master.http.post(f"/tasks/{task_id}/images", files={"files": ("one.png", png, "image/png")})
        assert uploaded.status_code == 202, uploaded.text
        for n, size in enumerate((40, 12)):
            annotator = Api.sign_up(url, f"rater-{n}-{uuid.uuid4().hex[:6]}@example.org", f"Rater {n}")
            image = annotator.http.get(f"/tasks/{task_id}/next").json()["image"]
            shape = {"type": "contour", "points": [[4, 4], [4 + size, 4], [4 + size, 4 + size], [4, 4 + size]]}
            body = {"id": str(uuid.uuid4()), "image_id": image["id"], "shapes": [shape], "duration_ms": 900}
            assert annotator.http.post(f"/tasks/{task_id}/submissions", json=body).status_code == 201

        page.goto(f"{url}/console/tasks/{task_id}?tab=images")
        wait_count(page, 2)
        page.click("[data-testid='review-image']")
        page.wait_for_selector("[data-testid='review-card'] [data-testid='review-row']")
        assert page.locator("[data-testid='review-row']").count() == 2
        shot(page, "review-card")
        page.locator("[data-testid='review-reject']").last.click()
        wait_count(page, 1)
        page.wait_for_selector("[data-testid='review-accept']")
        states = page.locator("[data-testid='review-state']").all_inner_texts()
        assert sum("rejected" in s for s in states) == 1, states
        shot(page, "review-rejected")
        page.click("[data-testid='review-accept']")
        wait_count(page, 2)
        assert errors == []
    finally:
        ctx.close()
