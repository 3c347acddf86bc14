"""Gold in the stream in the workbench (issue 10), in headless Chromium.

A task with ``gold_rate`` 1 (a newcomer's first image is gold) and ``gold_feedback``: after Next on a
gold image the workbench says it was a check image, shows the score the server computed and draws the
expert's outline over the image, read-only; Continue brings the next image.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.browser.helpers import PASSWORD, VIEWPORT, Shot, sign_in_as, to_client, wait_new_image, wait_workbench
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_gold_answer_shows_its_score_and_the_expert_s_outline(
    server: EmbeddedServer, browser: Any, artifacts: Path
) -> None:
    admin = Api.sign_up(server.url, "gold-admin@example.org", "Admin", PASSWORD)
    made = admin.http.post(
        "/tasks",
        json={"title": "Gold nuclei", "tool": "contour", "replicates": 1, "visibility": "public",
              "gold_rate": 1, "gold_feedback": True},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    task_id = made.json()["id"]
    images = [synthetic_image(i) for i in range(3)]
    upload = admin.http.post(
        f"/tasks/{task_id}/images", files=[("files", (im.name, im.png, "image/png")) for im in images]
    )
    accepted = {im["name"]: im["id"] for im in upload.json()["accepted"]}
    references = {}
    for im in images[:2]:
        shapes = [{"type": "contour", "points": [list(p) for p in im.outline]}]
        assert admin.http.put(f"/images/{accepted[im.name]}/reference", json={"shapes": shapes}).status_code == 200
        references[accepted[im.name]] = shapes
    email = f"gold-{uuid.uuid4().hex[:8]}@example.org"
    Api.sign_up(server.url, email, "Gold Annotator", PASSWORD)

    shot = Shot(artifacts, "gold-")
    context = browser.new_context(viewport=VIEWPORT)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        sign_in_as(page, server.url, email)
        page.goto(f"{server.url}/tasks/{task_id}")
        wait_workbench(page, "annotate")
        page.wait_for_selector("[data-testid='tour']", timeout=30_000)
        page.click("[data-testid='tour-skip']")
        first = str(page.evaluate("() => window.crowdseg.image.id"))
        assert first in references  # gold_rate 1: the first answer is gold
        outline = next(im.outline for im in images if accepted[im.name] == first)
        drawn = [(x + 6, y + 4) for x, y in outline[:: max(1, len(outline) // 9)]]  # a fair, not perfect, answer
        for x, y in to_client(page, drawn):
            page.mouse.click(x, y)
        page.keyboard.press("Enter")
        with page.expect_response(lambda r: r.url.endswith("/submissions") and r.status == 201) as answered:
            page.click("[data-testid='primary']")
        gold = answered.value.json()["gold"]
        page.wait_for_selector("body[data-gold='reference']", timeout=30_000)
        banner = page.inner_text(".wb-banner")
        assert "Check image" in banner and f"{gold['score']:.3f}" in banner, banner
        shown = page.evaluate("() => window.crowdseg.workbench.view.reference")
        assert [s["points"] for s in shown] == [s["points"] for s in references[first]]
        shot(page, "gold-feedback", docs=True)
        page.click("[data-testid='gold-continue']")
        wait_new_image(page, first)
        assert errors == []
    finally:
        context.close()
