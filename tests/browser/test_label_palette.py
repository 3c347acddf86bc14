"""The workbench's label palette (issue 11), in headless Chromium: on a task with two labels, pressing
2 chooses the second label, and the outline drawn next is shown in its colour and submitted with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.browser.helpers import VIEWPORT, Shot, model_shapes, sign_in_as, to_client, wait_workbench
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANNOTATOR = "palette-annotator@example.org"
LABELS = [{"name": "cell", "color": "#e6194b"}, {"name": "nucleus", "color": "#3cb44b"}]
TRIANGLE = [(40.0, 40.0), (120.0, 50.0), (70.0, 120.0)]


@pytest.fixture(scope="module")
def task_id(server: EmbeddedServer) -> str:
    admin = Api.sign_up(server.url, "palette-admin@example.org", "Admin")
    Api.sign_up(server.url, ANNOTATOR, "Palette User")
    made = admin.http.post(
        "/tasks",
        json={"title": "Cells and nuclei", "tool": "contour", "replicates": 1, "visibility": "public",
              "labels": LABELS},
    )
    assert made.status_code == 201, made.text
    image = synthetic_image(0)
    files = [("files", (image.name, image.png, "image/png"))]
    assert admin.http.post(f"/tasks/{made.json()['id']}/images", files=files).status_code == 202
    return str(made.json()["id"])


def pressed(page: Any) -> list[str]:
    return [str(b) for b in page.eval_on_selector_all(
        "[data-testid='label-palette'] button[aria-pressed='true']", "(bs) => bs.map((b) => b.dataset.label)"
    )]


def test_key_2_draws_and_submits_with_the_second_label(
    server: EmbeddedServer, task_id: str, browser: Any, artifacts: Path
) -> None:
    shot = Shot(artifacts, "palette-")
    context = browser.new_context(viewport=VIEWPORT)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in_as(page, server.url, ANNOTATOR)
    page.goto(f"{server.url}/tasks/{task_id}")
    wait_workbench(page, "annotate")
    page.wait_for_selector("[data-testid='tour']", timeout=30_000)
    page.click("[data-testid='tour-skip']")
    page.wait_for_selector("[data-testid='tour']", state="detached")
    assert pressed(page) == ["cell"]

    page.keyboard.press("2")
    assert pressed(page) == ["nucleus"]
    for x, y in to_client(page, TRIANGLE):
        page.mouse.click(x, y)
    page.keyboard.press("Enter")
    [shape] = model_shapes(page)
    assert shape["label"] == "nucleus"
    colour = page.evaluate("() => { const m = window.crowdseg.workbench.model; return m.colorOf(m.shapes[0]); }")
    assert colour == LABELS[1]["color"]
    shot(page, "nucleus-drawn")

    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as saved:
        page.click("[data-testid='primary']")
    assert saved.value.status == 201, saved.value.text()
    [sent] = json.loads(saved.value.request.post_data or "{}")["shapes"]
    assert sent["label"] == "nucleus" and sent["type"] == "contour"
    assert not errors, errors
    context.close()
