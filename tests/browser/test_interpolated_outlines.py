"""Interpolated outlines in the stack workbench (issue 11), in headless Chromium: on a task with
``interpolate_frames``, an annotator outlines a disc on frames 3 and 7 of a 12-page TIFF; frames 4-6
show the outline between them, dashed and labelled "interpolated" (the frame bar says between which
frames), drawn frames and frames outside the drawn range show none; the submission carries only the
drawn outlines (the server fills the volume)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import VIEWPORT, Shot, click_polygon, model_shapes, sign_in_as, wait_workbench
from tests.browser.test_stack_workbench import FRAMES, disc_stack, wait_frame
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANNOTATOR = "interpolation-annotator@example.org"
CENTRE = (64.0, 64.0)

# The shape layer's opacity (0-255) at image points on the frame on show: the largest in 5x5 device pixels.
INK = """(pts) => {
  const v = window.crowdseg.workbench.view;
  const canvas = v.stage.getLayers()[1].getCanvas()._canvas;
  const ratio = canvas.width / v.stage.width();
  const box = v.stage.container().getBoundingClientRect();
  const ctx = canvas.getContext('2d');
  return pts.map((p) => {
    const [x, y] = v.imageToClient(p);
    const [cx, cy] = [Math.round((x - box.left) * ratio), Math.round((y - box.top) * ratio)];
    const d = ctx.getImageData(cx - 2, cy - 2, 5, 5).data;
    let a = 0;
    for (let i = 3; i < d.length; i += 4) a = Math.max(a, d[i]);
    return a;
  });
}"""


def ring(radius: float, vertices: int) -> list[tuple[float, float]]:
    angles = [2 * math.pi * k / vertices for k in range(vertices)]
    return [(CENTRE[0] + radius * math.cos(a), CENTRE[1] + radius * math.sin(a)) for a in angles]


def inked(page: Any, radius: float) -> float:
    """The share of points on the circle of ``radius`` where the shape layer has ink."""
    alpha = page.evaluate(INK, ring(radius, 48))
    return sum(1 for a in alpha if a > 0) / len(alpha)


@pytest.fixture(scope="module")
def task_id(server: EmbeddedServer) -> str:
    admin = Api.sign_up(server.url, "interpolation-admin@example.org", "Admin")
    Api.sign_up(server.url, ANNOTATOR, "Interpolation Annotator")
    made = admin.http.post(
        "/tasks",
        json={"title": "Spheroid, every 4th slice", "instructions": "Outline the disc on a few frames.",
              "tool": "polygon", "replicates": 1, "visibility": "public", "max_shapes": 1,
              "interpolate_frames": True},
    )  # fmt: skip
    assert made.status_code == 201 and made.json()["interpolate_frames"] is True, made.text
    upload = ("spheroid.tif", disc_stack(FRAMES), "image/tiff")
    uploaded = admin.http.post(f"/tasks/{made.json()['id']}/images", files=[("files", upload)])
    assert uploaded.status_code == 202 and uploaded.json()["accepted"], uploaded.text
    return str(made.json()["id"])


@pytest.fixture
def page(server: EmbeddedServer, browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    sign_in_as(tab, server.url, ANNOTATOR)
    yield tab
    context.close()


def test_outlines_between_drawn_frames_are_shown_as_interpolated(
    server: EmbeddedServer, task_id: str, page: Any, artifacts: Path
) -> None:
    shot = Shot(artifacts, "interpolated-")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sent: list[Any] = []
    posted = lambda r: r.url.endswith("/submissions") and r.method == "POST"  # noqa: E731
    page.on("request", lambda r: sent.append(r.post_data_json) if posted(r) else None)
    page.goto(f"{server.url}/tasks/{task_id}")
    wait_workbench(page, "annotate")
    page.wait_for_selector("[data-testid='tour']", timeout=30_000)
    page.click("[data-testid='tour-skip']")
    badge = page.locator("[data-testid='frame-interpolated']")

    page.click("[data-testid='frame-thumb-2']")
    wait_frame(page, 2)
    click_polygon(page, ring(20.0, 16))
    page.click("[data-testid='frame-thumb-6']")
    wait_frame(page, 6)
    assert not badge.is_visible()  # one drawn frame: nothing lies between yet
    click_polygon(page, ring(40.0, 16))
    assert sorted(s["frame"] for s in model_shapes(page)) == [2, 6]

    page.mouse.move(2, 2)  # no hover hint on the selected outline's edge
    page.keyboard.press("PageUp")
    page.keyboard.press("PageUp")
    wait_frame(page, 4)
    badge.wait_for(state="visible")
    assert badge.inner_text() == "interpolated between frames 3 and 7"
    page.wait_for_timeout(300)  # the frame's rendition drawn under the outline, for the picture
    assert inked(page, 30.0) >= 0.4  # the dashed outline halfway between the two drawn ones
    assert inked(page, 20.0) == 0 and inked(page, 40.0) == 0  # neither drawn outline on this frame
    shot(page, "annotate-interpolated", docs=True)

    page.keyboard.press("PageUp")
    wait_frame(page, 3)
    assert badge.is_visible() and inked(page, 25.0) >= 0.4
    page.click("[data-testid='frame-thumb-9']")
    wait_frame(page, 9)
    assert not badge.is_visible() and inked(page, 40.0) == 0  # no extrapolation past the last drawn frame

    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/submissions")) as response:
        page.click("[data-testid='primary']")
    assert response.value.status in (200, 201), response.value.text()
    assert sorted(s["frame"] for s in sent[-1]["shapes"]) == [2, 6], sent  # only what was drawn
    assert not errors, errors
