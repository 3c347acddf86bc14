"""A stack in the workbench (issue 11), in headless Chromium: a 12-page TIFF is one image with 12 frames.

The wheel, PageUp/PageDown, `,`/`.` and Home/End move through the frames and fetch each frame's rendition;
a thumbnail in the strip takes you to its frame and marks the frames that have shapes; a shape drawn on
frame k is sent with `frame: k`; only the frame on show's shapes are drawn and count toward the limit.
A DICOM series gets window/level: its own window first, presets, and a right-button drag.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.browser.helpers import VIEWPORT, Shot, click_polygon, model_shapes, sign_in_as, wait_workbench
from tests.embedded import Api, EmbeddedServer
from tests.stack_inputs import sphere_series

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANNOTATOR = "stack-annotator@example.org"
FRAMES = 12
TRIANGLE = [(40.0, 40.0), (100.0, 50.0), (64.0, 110.0)]


def disc_stack(frames: int, size: int = 128) -> bytes:
    """A multi-page TIFF of a disc that grows and shrinks through the frames (a sphere, sliced)."""
    yy, xx = np.mgrid[:size, :size]
    pages = []
    for k in range(frames):
        radius = 10 + 40 * np.sin(np.pi * (k + 0.5) / frames)
        disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2
        pages.append(Image.fromarray(np.where(disc, 220, 30).astype(np.uint8)))
    out = io.BytesIO()
    pages[0].save(out, format="TIFF", save_all=True, append_images=pages[1:])
    return out.getvalue()


@pytest.fixture(scope="module")
def admin(server: EmbeddedServer) -> Api:
    master = Api.sign_up(server.url, "stack-admin@example.org", "Admin")
    Api.sign_up(server.url, ANNOTATOR, "Stack Annotator")
    return master


def task_of(admin: Api, title: str, upload: tuple[str, bytes, str]) -> str:
    made = admin.http.post(
        "/tasks",
        json={"title": title, "instructions": "Outline the object on each frame.", "tool": "contour",
              "replicates": 1, "visibility": "public", "max_shapes": 1},
    )
    assert made.status_code == 201, made.text
    uploaded = admin.http.post(f"/tasks/{made.json()['id']}/images", files=[("files", upload)])
    assert uploaded.status_code == 202 and uploaded.json()["accepted"], uploaded.text
    return str(made.json()["id"])


@pytest.fixture(scope="module")
def task_id(admin: Api) -> str:
    return task_of(admin, "Spheroid", ("spheroid.tif", disc_stack(FRAMES), "image/tiff"))


@pytest.fixture
def page(server: EmbeddedServer, browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    sign_in_as(tab, server.url, ANNOTATOR)
    yield tab
    context.close()


def frame_label(page: Any) -> str:
    return str(page.inner_text("[data-testid='frame-label']"))


def wait_frame(page: Any, frame: int) -> None:
    page.wait_for_function("(k) => window.crowdseg.workbench.model.frame === k", arg=frame)
    assert frame_label(page) == f"Frame {frame + 1} / {FRAMES}"


def test_moving_through_a_stack_and_drawing_on_a_frame(
    server: EmbeddedServer, task_id: str, page: Any, artifacts: Path
) -> None:
    shot = Shot(artifacts, "stack-")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/file?frame=" in r.url else None)
    sent: list[Any] = []
    posted = lambda r: r.url.endswith("/submissions") and r.method == "POST"  # noqa: E731
    page.on("request", lambda r: sent.append(r.post_data_json) if posted(r) else None)

    page.goto(f"{server.url}/tasks/{task_id}")
    wait_workbench(page, "annotate")
    page.wait_for_selector("[data-testid='tour']", timeout=30_000)
    page.click("[data-testid='tour-skip']")
    assert page.evaluate("() => window.crowdseg.image.frames") == FRAMES
    wait_frame(page, 0)

    # -- the wheel over the image, then the keys ------------------------------------------------------
    box = page.locator(".wb-stage").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 100)
    wait_frame(page, 1)
    page.keyboard.press("PageDown")
    wait_frame(page, 2)
    page.keyboard.press(",")
    wait_frame(page, 1)
    page.keyboard.press("End")
    wait_frame(page, FRAMES - 1)
    page.keyboard.press("Home")
    wait_frame(page, 0)
    assert any("frame=1" in url for url in fetched) and any(f"frame={FRAMES - 1}" in url for url in fetched), fetched

    # -- a thumbnail takes you to its frame; a shape drawn there is marked in the strip ---------------
    page.click("[data-testid='frame-thumb-4']")
    wait_frame(page, 4)
    click_polygon(page, TRIANGLE)
    shapes = model_shapes(page)
    assert [s.get("frame") for s in shapes] == [4], shapes
    # the strip shows the frames' thumbnails (bug pinned: they pointed at the page's route, not the API's)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.wb-thumb img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    marked = page.evaluate("() => [...document.querySelectorAll('.wb-thumb')].map((t) => t.dataset.shapes)")
    assert marked == ["0"] * 4 + ["1"] + ["0"] * (FRAMES - 5), marked
    # the limit (one shape) is per frame: frame 5 takes a shape too, and frame 4's is not drawn there
    page.keyboard.press(".")
    wait_frame(page, 5)
    assert page.inner_text("[data-testid='shape-count']").startswith("0 / 1")
    click_polygon(page, [(x + 5, y) for x, y in TRIANGLE])
    assert sorted(s.get("frame") for s in model_shapes(page)) == [4, 5]
    shot(page, "annotate-stack", docs=True)

    # -- an open outline keeps its frame ---------------------------------------------------------------
    page.keyboard.press("PageDown")
    wait_frame(page, 6)
    first = page.evaluate("(p) => window.crowdseg.workbench.view.imageToClient(p)", [20, 20])
    page.mouse.click(*first)
    page.keyboard.press("PageDown")
    wait_frame(page, 6)
    assert "open outline" in page.inner_text("[data-testid='status']")
    page.keyboard.press("Escape")

    # -- sent with their frames ------------------------------------------------------------------------
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/submissions")) as response:
        page.click("[data-testid='primary']")
    assert response.value.status in (200, 201), response.value.text()
    assert sorted(s["frame"] for s in sent[-1]["shapes"]) == [4, 5], sent
    assert not errors, errors


def test_window_and_level_on_a_dicom_series(server: EmbeddedServer, admin: Api, page: Any, artifacts: Path) -> None:
    series, _truth = sphere_series()
    task_id = task_of(admin, "Sphere CT", ("sphere-series.zip", series, "application/zip"))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    windowed: list[Any] = []
    page.on("response", lambda r: windowed.append(r) if "&window=" in r.url else None)
    page.goto(f"{server.url}/tasks/{task_id}")
    wait_workbench(page, "annotate")
    page.wait_for_selector("[data-testid='tour']", timeout=30_000)
    page.click("[data-testid='tour-skip']")
    assert page.evaluate("() => window.crowdseg.image.window") == [500, 1000]
    assert page.inner_text("[data-testid='window-readout']") == "W 1000 L 500"

    # -- a preset --------------------------------------------------------------------------------------
    with page.expect_response(lambda r: "window=400,1800" in r.url):
        page.select_option("[data-testid='window-preset']", label="Bone (400/1800)")
    assert page.inner_text("[data-testid='window-readout']") == "W 1800 L 400"

    # -- a right-button drag: sideways widens, down raises the level ----------------------------------
    box = page.locator(".wb-stage").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x + 64, y + 32, steps=4)
    with page.expect_response(lambda r: "window=625,2250" in r.url):
        page.mouse.up(button="right")
    readout = page.inner_text("[data-testid='window-readout']")
    assert readout == "W 2250 L 625", readout  # 1800 / 256 per pixel: +450 wide, +225 level
    assert page.input_value("[data-testid='window-preset']") == "-1"
    assert all(r.status == 200 for r in windowed), [(r.url, r.status) for r in windowed]
    Shot(artifacts, "window-")(page, "window-level")
    assert model_shapes(page) == []  # the drag drew nothing
    assert not errors, errors
