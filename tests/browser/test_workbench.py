"""The workbench as a new annotator meets it (issue 11), in headless Chromium.

On a desktop window: the session is the cookie's, so a task opened in a new tab or reloaded stays
signed in, and writes carry the CSRF header; the toolbar is one row at 1280 px; "image k of n"; undo
after closing an outline re-opens it; leaving mid-outline submits nothing and the outline waits on
this device; "no object here" and skip are buttons with keys (no native confirm()); the previous
image; the image is re-fitted when the window changes; the focus ring has the stylesheet's colour.
On a phone (390×844, touch): the tool speaks of taps, the toolbar is one row with the rest under
"More", the image keeps most of the height, and turning the phone re-fits it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.browser.helpers import VIEWPORT, Shot, model_shapes, sign_in_as, to_client, wait_new_image, wait_workbench
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = "bench-desk@example.org"
PHONE = "bench-phone@example.org"
TRIANGLE = [(40.0, 40.0), (120.0, 50.0), (70.0, 120.0)]


@pytest.fixture(scope="module")
def task_id(server: EmbeddedServer) -> str:
    """A public contour task of three images, one annotation each."""
    admin = Api.sign_up(server.url, "bench-admin@example.org", "Admin")
    Api.sign_up(server.url, DESKTOP, "Desk Top")
    Api.sign_up(server.url, PHONE, "Phone User")
    made = admin.http.post(
        "/tasks",
        json={"title": "Workbench nuclei", "instructions": "Outline every nucleus.", "tool": "contour",
              "replicates": 2, "order": "name_asc", "unseen_first": False, "visibility": "public", "max_shapes": 5},
    )
    assert made.status_code == 201, made.text
    files = [("files", (image.name, image.png, "image/png")) for image in (synthetic_image(i) for i in range(3))]
    assert admin.http.post(f"/tasks/{made.json()['id']}/images", files=files).status_code == 202
    return str(made.json()["id"])


def skip_tour(page: Any) -> None:
    page.wait_for_selector("[data-testid='tour']", timeout=30_000)
    page.click("[data-testid='tour-skip']")
    page.wait_for_selector("[data-testid='tour']", state="detached")


def click_at(page: Any, points: list[tuple[float, float]]) -> None:
    for x, y in to_client(page, points):
        page.mouse.click(x, y)


def image_id(page: Any) -> str:
    return str(page.evaluate("() => window.crowdseg.image.id"))


def progress_text(page: Any) -> str:
    return str(page.inner_text("[data-testid='image-progress']"))


def fitted(page: Any) -> bool:
    """Whether the view shows the whole image as fit() places it, for the surface's present size."""
    return bool(
        page.evaluate(
            "() => { const v = window.crowdseg.workbench.view, s = v.stage, m = v.model;"
            " const r = v.container.getBoundingClientRect();"
            " const k = Math.min(r.width / m.width, r.height / m.height) * 0.95;"
            " return Math.abs(s.width() - r.width) < 1 && Math.abs(s.height() - r.height) < 1"
            " && Math.abs(s.scaleX() - k) < 1e-6 && Math.abs(s.x() - (r.width - m.width * k) / 2) < 0.5; }"
        )
    )


@pytest.fixture
def desktop(server: EmbeddedServer, browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    yield context
    context.close()


def test_desktop_workbench(server: EmbeddedServer, task_id: str, desktop: Any, artifacts: Path) -> None:
    shot = Shot(artifacts, "desktop-")
    errors: list[str] = []
    page = desktop.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in_as(page, server.url, DESKTOP)
    sent: list[Any] = []
    desktop.on("request", lambda r: sent.append(r) if r.method == "POST" and r.url.endswith("/submissions") else None)

    # -- the session is the cookie's: a new tab opens the task signed in, and so does a reload -----
    assert page.evaluate("() => Object.keys(sessionStorage).filter((k) => k.includes('token'))") == []
    tab = desktop.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(f"{server.url}/tasks/{task_id}")
    wait_workbench(tab, "annotate")
    skip_tour(tab)
    tab.reload()
    wait_workbench(tab, "annotate")
    assert "/signin" not in tab.url
    page.close()
    page = tab

    # -- one toolbar row at 1280 px, "image 1 of 3" ---------------------------------------------
    row = page.evaluate(
        "() => { const t = document.querySelector('.wb-toolbar');"
        " const items = [...t.querySelectorAll('button, .pill, .wb-tol, .wb-title')].filter((e) => e.offsetParent);"
        " const tops = items.map((e) => e.getBoundingClientRect())"
        ".map((r) => Math.round(r.top + r.height / 2));"
        " return {height: t.getBoundingClientRect().height, spread: Math.max(...tops) - Math.min(...tops),"
        " overflow: t.scrollWidth - t.clientWidth, count: items.length}; }"
    )
    assert row["count"] >= 15 and row["spread"] <= 2 and row["overflow"] <= 0 and row["height"] < 56, row
    assert progress_text(page) == "image 1 of 3"
    first = image_id(page)

    # -- undo right after closing an outline re-opens it, then takes its last vertex ------------
    click_at(page, TRIANGLE)
    page.keyboard.press("Enter")
    assert len(model_shapes(page)) == 1
    page.keyboard.press("Control+z")
    assert model_shapes(page) == [] and len(page.evaluate("() => window.crowdseg.workbench.model.draft")) == 3
    page.keyboard.press("Control+z")
    assert len(page.evaluate("() => window.crowdseg.workbench.model.draft")) == 2

    # -- leaving mid-outline submits nothing; back on the task, the outline waits to be finished --
    page.click("a[href='/']")
    page.wait_for_selector("[data-testid='task-list']")
    page.go_back()
    wait_workbench(page, "annotate")
    assert image_id(page) == first and len(page.evaluate("() => window.crowdseg.workbench.model.draft")) == 2
    page.wait_for_selector("[data-testid='draft-discard']")
    shot(page, "unfinished-outline", docs=True)
    assert sent == []
    page.click("[data-testid='draft-discard']")
    assert page.evaluate("() => window.crowdseg.workbench.model.draft") == []

    # -- Next (N) never closes an open outline by itself, and a reload keeps it too ---------------
    click_at(page, TRIANGLE[:2])
    page.keyboard.press("n")
    page.wait_for_selector("[data-testid='draft-discard']")
    page.reload()
    wait_workbench(page, "annotate")
    assert image_id(page) == first and len(page.evaluate("() => window.crowdseg.workbench.model.draft")) == 2
    page.click("[data-testid='draft-discard']")
    assert sent == []

    # -- Next with nothing drawn asks in the page (no native dialog); E is "no object here" -------
    page.on("dialog", lambda d: errors.append(f"native dialog: {d.message}"))
    page.click("[data-testid='primary']")
    page.wait_for_selector("[data-testid='ask-no-object']")
    shot(page, "nothing-drawn", docs=True)
    page.keyboard.press("Escape")
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as empty:
        page.keyboard.press("e")
    assert empty.value.status == 201, empty.value.text()
    request = empty.value.request
    assert json.loads(request.post_data or "{}")["shapes"] == []
    csrf = next(c["value"] for c in desktop.cookies() if c["name"] == "crowdseg_csrf")
    assert request.headers.get("x-csrf-token") == csrf and "authorization" not in request.headers
    wait_new_image(page, first)
    assert progress_text(page) == "image 2 of 3"
    second = image_id(page)

    # -- Shift+N skips without submitting: the next image, the same count --------------------------
    before = len(sent)
    with page.expect_response(lambda r: "/next?skip=" in r.url):
        page.keyboard.press("Shift+N")
    wait_new_image(page, second)
    third = image_id(page)
    assert third not in (first, second) and len(sent) == before and progress_text(page) == "image 2 of 3"

    # -- a triangle, Next; then only the skipped image is left, until asked for again -------------
    click_at(page, TRIANGLE)
    page.keyboard.press("Enter")
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as saved:
        page.click("[data-testid='primary']")
    assert saved.value.status == 201
    page.wait_for_selector("[data-testid='show-skipped']")
    page.click("[data-testid='show-skipped']")
    wait_new_image(page, third)
    assert image_id(page) == second and progress_text(page) == "image 3 of 3"

    # -- P shows the previous image as sent, read-only once the server has it; back again ---------
    page.keyboard.press("p")
    page.wait_for_selector("body[data-phase='previous'] [data-testid='workbench'][data-ready='1']")
    assert image_id(page) == third and len(model_shapes(page)) == 1
    assert "can no longer be changed" in page.inner_text(".wb-banner")
    assert page.evaluate("() => window.crowdseg.workbench.view.opts.readonly")
    page.click("[data-testid='primary']")
    wait_workbench(page, "annotate")
    assert image_id(page) == second

    # -- the image is re-fitted when the window changes -------------------------------------------
    assert fitted(page)
    page.set_viewport_size({"width": 1000, "height": 640})
    page.wait_for_function("() => window.crowdseg.workbench.view.stage.width() <= 1000")
    assert fitted(page)
    page.set_viewport_size(VIEWPORT)
    page.wait_for_function(f"() => window.crowdseg.workbench.view.stage.width() >= {VIEWPORT['width'] - 2}")
    assert fitted(page)

    # -- the focus ring is drawn in the workbench's ring colour ------------------------------------
    page.focus("[data-testid='tolerance']")
    page.keyboard.press("Tab")  # to the zoom-out button
    ring = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return {style: s.outlineStyle, width: s.outlineWidth, color: s.outlineColor}; }"
    )
    assert ring == {"style": "solid", "width": "3px", "color": "rgb(143, 180, 255)"}, ring
    assert not errors, errors


def test_phone_workbench(server: EmbeddedServer, task_id: str, browser: Any, artifacts: Path) -> None:
    shot = Shot(artifacts, "phone-")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                  device_scale_factor=2)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        sign_in_as(page, server.url, PHONE)
        page.goto(f"{server.url}/tasks/{task_id}")
        wait_workbench(page, "annotate")
        tour = page.inner_text("[data-testid='tour']")
        skip_tour(page)
        assert page.evaluate("() => matchMedia('(pointer: coarse)').matches")
        assert page.get_attribute("[data-testid='workbench']", "data-touch") == "1"

        # -- taps, not clicks and keys -------------------------------------------------------------
        status = page.inner_text("[data-testid='status']")
        assert "Tap" in status and "double-tap to close" in status, status
        for text in (status, tour):
            assert "click" not in text.lower() and "enter" not in text.lower(), text

        # -- one toolbar row, the image keeps at least 70 % of the height -------------------------
        layout = page.evaluate(
            "() => { const t = document.querySelector('.wb-toolbar').getBoundingClientRect();"
            " const s = document.querySelector('.wb-stage').getBoundingClientRect();"
            " return {toolbar: t.height, stage: s.height, width: document.documentElement.scrollWidth,"
            " page: document.documentElement.scrollHeight}; }"
        )
        assert layout["toolbar"] < 56 and layout["stage"] >= 0.7 * 844, layout
        assert layout["width"] <= 390 and layout["page"] <= 844, layout
        assert progress_text(page) == "1/3"
        shot(page, "annotate-phone", docs=True)

        # -- the rest is under "More" --------------------------------------------------------------
        assert not page.is_visible("[data-testid='fit']")
        page.tap("[data-testid='more']")
        page.wait_for_selector("[data-testid='fit']", state="visible")
        shot(page, "annotate-phone-more")
        page.tap("[data-testid='fit']")
        assert not page.is_visible("[data-testid='fit']")

        # -- a tap-drawn triangle, closed with a double-tap on its last vertex -----------------------
        for x, y in to_client(page, TRIANGLE):
            page.touchscreen.tap(x, y)
        last = to_client(page, [TRIANGLE[-1]])[0]
        page.touchscreen.tap(*last)
        assert len(model_shapes(page)) == 1

        # -- turning the phone re-fits the image, even zoomed in -----------------------------------
        page.evaluate("() => window.crowdseg.workbench.view.zoomAt(2)")
        assert not fitted(page)
        page.set_viewport_size({"width": 844, "height": 390})
        page.evaluate("() => window.dispatchEvent(new Event('orientationchange'))")
        page.wait_for_function("() => window.crowdseg.workbench.view.stage.width() > 800")
        assert fitted(page)
    finally:
        context.close()
    assert not errors, errors
