"""The annotation tool's editing in headless Chromium, with real mouse and keyboard events.

Contours: close by Enter, undo/redo, insert a vertex on an edge, delete a vertex, move and delete a
whole contour, the per-image shape limit, RDP tolerance, Bézier smoothing toggle, zoom and pan,
the instructions; a failed save is kept on the device and retried until the server has it; leaving
the page saves. Points: crosshair clicks, move, delete. Polylines: click vertices, finish with Enter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.browser.helpers import (
    PASSWORD,
    VIEWPORT,
    Shot,
    drag,
    freehand,
    model_shapes,
    to_client,
    wait_new_image,
    wait_workbench,
)
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANNOTATOR = "editor@example.org"


@pytest.fixture(scope="module")
def tasks(server: EmbeddedServer) -> dict[str, str]:
    """An admin (the first account) makes one public task per tool, three images each, no tutorial."""
    admin = Api.sign_up(server.url, "admin@example.org", "Admin")
    Api.sign_up(server.url, ANNOTATOR, "Eddie Tor")
    made: dict[str, str] = {}
    for tool, max_shapes in (("contour", 2), ("point", 5), ("polyline", 3)):
        response = admin.http.post(
            "/tasks",
            json={
                "title": f"Editor {tool}",
                "instructions": f"# {tool}\n\nDraw **carefully**.",
                "tool": tool,
                "replicates": 1,
                "order": "name_asc",
                "unseen_first": True,
                "metric": "dice",
                "pass_threshold": 0.5,
                "visibility": "public",
                "max_shapes": max_shapes,
            },
        )
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
        files = [("files", (image.name, image.png, "image/png")) for image in (synthetic_image(i) for i in range(3))]
        upload = admin.http.post(f"/tasks/{task_id}/images", files=files)
        assert upload.status_code == 202 and len(upload.json()["accepted"]) == 3, upload.text
        made[tool] = task_id
    return made


@pytest.fixture
def page(server: EmbeddedServer, browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(f"{server.url}/signin")
    tab.fill("#f-email", ANNOTATOR)
    tab.fill("#f-password", PASSWORD)
    with tab.expect_response(lambda r: r.url.endswith("/api/v1/me") and r.ok):
        tab.click("[data-testid='signin-submit']")
    tab.wait_for_selector("[data-testid='signout']")
    yield tab
    context.close()
    assert not errors, errors


def open_task(page: Any, url: str, task_id: str) -> dict[str, Any]:
    page.goto(f"{url}/tasks/{task_id}")
    wait_workbench(page, "annotate")
    page.wait_for_selector("[data-testid='tour']")
    page.click("[data-testid='tour-skip']")
    page.wait_for_selector("[data-testid='tour']", state="detached")
    image: dict[str, Any] = page.evaluate("() => window.crowdseg.image")
    return image


def click_at(page: Any, points: list[tuple[float, float]], modifiers: list[str] | None = None) -> None:
    for x, y in to_client(page, points):
        for key in modifiers or []:
            page.keyboard.down(key)
        page.mouse.click(x, y)
        for key in reversed(modifiers or []):
            page.keyboard.up(key)


def points_of(page: Any, shape: int = 0) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in model_shapes(page)[shape]["points"]]


def near(a: list[tuple[float, float]], b: list[tuple[float, float]], tol: float = 0.75) -> bool:
    return len(a) == len(b) and all(math.dist(p, q) <= tol for p, q in zip(a, b, strict=True))


def view_state(page: Any) -> dict[str, float]:
    state: dict[str, float] = page.evaluate(
        "() => { const s = window.crowdseg.workbench.view.stage; return {scale: s.scaleX(), x: s.x(), y: s.y()}; }"
    )
    return state


def test_contour_editing_and_durable_saving(
    server: EmbeddedServer, tasks: dict[str, str], page: Any, artifacts: Path
) -> None:
    shot = Shot(artifacts, "contour-")
    task_id = tasks["contour"]
    image = open_task(page, server.url, task_id)

    # a triangle by clicks, closed with Enter
    triangle = [(60.0, 60.0), (140.0, 70.0), (90.0, 150.0)]
    click_at(page, triangle)
    assert model_shapes(page) == []
    page.keyboard.press("Enter")
    assert near(points_of(page), triangle)

    # undo / redo (keyboard and buttons)
    page.keyboard.press("Control+z")
    assert model_shapes(page) == []
    page.keyboard.press("Control+Shift+z")
    assert near(points_of(page), triangle)
    page.click("[data-testid='undo']")
    assert model_shapes(page) == []
    page.click("[data-testid='redo']")
    assert near(points_of(page), triangle)

    # a click inside selects the contour; then a click on one of its edges inserts a vertex there
    centroid = (sum(p[0] for p in triangle) / 3, sum(p[1] for p in triangle) / 3)
    click_at(page, [centroid])
    assert page.evaluate("() => window.crowdseg.workbench.model.selection.shape") == 0
    midpoint = (100.0, 65.0)
    click_at(page, [midpoint])
    pts = points_of(page)
    assert len(pts) == 4 and math.dist(pts[1], midpoint) < 1.0, pts

    # Alt+click deletes a vertex
    click_at(page, [pts[1]], ["Alt"])
    assert near(points_of(page), triangle)

    # drag inside moves the whole contour
    drag(page, centroid, (centroid[0] + 20, centroid[1] + 10))
    moved = [(x + 20, y + 10) for x, y in triangle]
    assert near(points_of(page), moved, 1.0), points_of(page)
    shot(page, "contour-moved")

    # a second contour by a freehand drag; the task allows two, so a third is refused
    circle = [(190 + 25 * math.cos(t / 24 * 2 * math.pi), 190 + 25 * math.sin(t / 24 * 2 * math.pi)) for t in range(24)]
    freehand(page, circle)
    assert len(model_shapes(page)) == 2
    freehand(page, [(x - 150, y) for x, y in circle])
    assert len(model_shapes(page)) == 2
    assert "2 / 2" in page.inner_text("[data-testid='shape-count']")

    # select the circle by a click inside and delete it with the Delete key
    click_at(page, [(190.0, 190.0)])
    page.keyboard.press("Delete")
    assert len(model_shapes(page)) == 1

    # RDP tolerance: ] raises it, the same stroke gives fewer vertices
    page.fill("[data-testid='tolerance']", "0.5")
    page.dispatch_event("[data-testid='tolerance']", "input")
    wobbly = [
        (190 + (25 + 1.5 * (-1) ** t) * math.cos(t / 48 * 2 * math.pi), 190 + 25 * math.sin(t / 48 * 2 * math.pi))
        for t in range(48)
    ]
    freehand(page, wobbly)
    fine = len(points_of(page, 1))
    page.keyboard.press("Control+z")
    for _ in range(19):
        page.keyboard.press("]")
    assert page.input_value("[data-testid='tolerance']") == "10"
    assert "10.0 px" in page.inner_text(".wb-tol output")
    freehand(page, wobbly)
    coarse = len(points_of(page, 1))
    assert coarse < fine, (coarse, fine)
    page.keyboard.press("Control+z")

    # Bézier smoothing toggles with S
    assert page.get_attribute("[data-testid='smooth']", "aria-pressed") == "true"
    page.keyboard.press("s")
    assert page.get_attribute("[data-testid='smooth']", "aria-pressed") == "false"
    page.keyboard.press("s")

    # zoom with the wheel, pan with the arrows, 0 fits
    fitted = view_state(page)
    x, y = to_client(page, [(128.0, 128.0)])[0]
    page.mouse.move(x, y)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"() => window.crowdseg.workbench.view.stage.scaleX() > {fitted['scale'] * 1.2}")
    page.keyboard.press("ArrowLeft")
    assert view_state(page)["x"] != fitted["x"]
    shot(page, "zoomed", docs=True)
    page.keyboard.press("0")
    assert abs(view_state(page)["scale"] - fitted["scale"]) < 1e-6

    # the instructions are one key away
    page.keyboard.press("i")
    page.wait_for_selector("dialog[open] h1:has-text('contour')")
    page.wait_for_selector("dialog[open] strong:has-text('carefully')")
    shot(page, "instructions", docs=True)
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog[open]", state="detached")

    # a failed save is kept on the device and retried until the server has it
    failures = {"left": 2}
    submissions = f"**/api/v1/tasks/{task_id}/submissions"

    def flaky(route: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(submissions, flaky)
    expected = points_of(page)
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions") and r.status == 201,
                              timeout=30_000) as saved:
        page.click("[data-testid='primary']")
        page.wait_for_selector(".pending-badge")
        pending = json.loads(page.evaluate("() => localStorage.getItem('crowdseg.pending-submissions.v1')"))
        assert pending and pending[0]["body"]["image_id"] == image["id"]
        shot(page, "save-pending")
    body = json.loads(saved.value.request.post_data or "{}")
    assert failures["left"] == 0
    page.wait_for_selector(".pending-badge", state="detached")
    page.unroute(submissions)
    stored = page.evaluate(
        "(b) => fetch('/api/v1/tasks/' + b.t + '/submissions', {method: 'POST', headers: {'Content-Type':"
        " 'application/json', 'X-CSRF-Token': document.cookie.match(/crowdseg_csrf=([^;]+)/)[1]},"
        " body: JSON.stringify(b.body)}).then(async (r) => ({status: r.status, json: await r.json()}))",
        {"t": task_id, "body": body},
    )
    assert stored["status"] == 200, stored
    outline = stored["json"]["shapes"][0]["points"]
    for vertex in expected:
        assert min(math.dist(vertex, p) for p in outline) < 1.5
    assert stored["json"]["click_times"] and stored["json"]["duration_ms"] > 0

    # leaving the page saves what is drawn
    wait_new_image(page, image["id"])
    second = page.evaluate("() => window.crowdseg.image")
    click_at(page, triangle)
    page.keyboard.press("Enter")
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as left:
        page.click("a[href='/']")
    assert left.value.status == 201
    assert json.loads(left.value.request.post_data or "{}")["image_id"] == second["id"]
    page.wait_for_selector("[data-testid='task-list']")

    # and so does unloading the page (pagehide sends it with keepalive)
    page.goto(f"{server.url}/tasks/{task_id}")
    wait_workbench(page, "annotate")
    third = page.evaluate("() => window.crowdseg.image")
    click_at(page, triangle)
    page.keyboard.press("Enter")
    page.goto("about:blank")
    admin = Api.login(server.url, "admin@example.org", PASSWORD)
    for _ in range(100):
        counts = {i["id"]: i["submissions"] for i in admin.http.get(f"/tasks/{task_id}/images").json()}
        if counts.get(third["id"]):
            break
        page.wait_for_timeout(100)
    assert counts == {image["id"]: 1, second["id"]: 1, third["id"]: 1}, counts


def test_points_and_polylines(server: EmbeddedServer, tasks: dict[str, str], page: Any, artifacts: Path) -> None:
    shot = Shot(artifacts, "objects-")
    # points: crosshair clicks, drag one, delete one
    task_id = tasks["point"]
    open_task(page, server.url, task_id)
    page.click("[data-testid='replay-tour']")  # the tour can be replayed at any time
    page.wait_for_selector("[data-testid='tour']")
    page.click("[data-testid='tour-skip']")
    page.wait_for_selector("[data-testid='tour']", state="detached")
    clicks = [(40.0, 40.0), (120.0, 60.0), (200.0, 200.0)]
    click_at(page, clicks)
    assert [s["type"] for s in model_shapes(page)] == ["point"] * 3
    drag(page, clicks[1], (130.0, 70.0))
    click_at(page, [clicks[2]])
    page.keyboard.press("Delete")
    got = [tuple(s["points"][0]) for s in model_shapes(page)]
    assert near(got, [clicks[0], (130.0, 70.0)]), got
    shot(page, "points", docs=True)
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as saved:
        page.click("[data-testid='primary']")
    assert saved.value.status == 201, saved.value.text()
    sent = json.loads(saved.value.request.post_data or "{}")
    assert near([tuple(s["points"][0]) for s in sent["shapes"]], [clicks[0], (130.0, 70.0)])

    # polylines: click vertices, Enter finishes; a vertex drag edits it
    task_id = tasks["polyline"]
    open_task(page, server.url, task_id)
    line = [(30.0, 200.0), (100.0, 150.0), (170.0, 170.0), (230.0, 100.0)]
    click_at(page, line)
    page.keyboard.press("Enter")
    assert near(points_of(page), line)
    drag(page, line[2], (175.0, 185.0))
    edited = [*line[:2], (175.0, 185.0), line[3]]
    assert near(points_of(page), edited)
    shot(page, "polyline", docs=True)
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as saved:
        page.click("[data-testid='primary']")
    assert saved.value.status == 201, saved.value.text()
    shape = json.loads(saved.value.request.post_data or "{}")["shapes"][0]
    assert shape["type"] == "polyline"
    assert math.dist(shape["points"][0], edited[0]) < 1.0 and math.dist(shape["points"][-1], edited[-1]) < 1.0
    for vertex in edited:
        assert min(math.dist(vertex, p) for p in shape["points"]) < 1.5


def test_live_console_draws_object_consensus(
    server: EmbeddedServer, tasks: dict[str, str], browser: Any, artifacts: Path
) -> None:
    """Point tasks have no consensus mask: the thumbnails draw the clustered points instead."""
    annotator = Api.login(server.url, ANNOTATOR, PASSWORD)
    task_id = tasks["point"]
    assigned = annotator.http.get(f"/tasks/{task_id}/next")
    assert assigned.status_code == 200, assigned.text
    image_id = assigned.json()["image"]["id"]
    body = {"id": "live-points-1", "image_id": image_id, "shapes": [{"type": "point", "points": [[50, 60]]}]}
    assert annotator.http.post(f"/tasks/{task_id}/submissions", json=body).status_code == 201

    context = browser.new_context(viewport=VIEWPORT)
    try:
        tab = context.new_page()
        tab.goto(f"{server.url}/signin?next=/console/tasks/{task_id}")
        tab.fill("#f-email", "admin@example.org")
        tab.fill("#f-password", PASSWORD)
        tab.click("[data-testid='signin-submit']")
        tab.wait_for_selector(f"[data-testid='consensus-thumbs'] .thumb[data-image='{image_id}'][data-consensus='1']",
                              timeout=90_000)
        assert tab.locator(f".cell[data-image='{image_id}'][data-on='1']").count() == 1
        Shot(artifacts, "live-")(tab, "points")
    finally:
        context.close()


def test_qualification_gate(server: EmbeddedServer, tasks: dict[str, str], page: Any, artifacts: Path) -> None:
    """A poor tutorial outline fails and keeps the task closed; a retry that meets the threshold opens it."""
    shot = Shot(artifacts, "gate-")
    admin = Api.login(server.url, "admin@example.org", PASSWORD)
    made = admin.http.post(
        "/tasks",
        json={
            "title": "Editor gate", "instructions": "Outline the object.", "tool": "polygon", "replicates": 1,
            "order": "name_asc", "unseen_first": True, "metric": "jaccard", "pass_threshold": 0.8,
            "visibility": "public", "max_shapes": 3,
        },
    )
    assert made.status_code == 201, made.text
    task_id = made.json()["id"]
    files = [("files", (image.name, image.png, "image/png")) for image in (synthetic_image(i) for i in range(2))]
    assert admin.http.post(f"/tasks/{task_id}/images", files=files).status_code == 202
    tutorial = synthetic_image(30)
    reference = tutorial.outline[::4]
    added = admin.http.post(
        f"/tasks/{task_id}/tutorial",
        files={"file": ("tutorial.png", tutorial.png, "image/png")},
        data={"shapes": json.dumps([{"type": "polygon", "points": reference}])},
    )
    assert added.status_code == 201, added.text
    annotator = Api.login(server.url, ANNOTATOR, PASSWORD)
    assert annotator.http.get(f"/tasks/{task_id}/next").status_code == 403

    page.goto(f"{server.url}/tasks/{task_id}")
    wait_workbench(page, "qualification")
    page.wait_for_selector("[data-testid='tour']")
    page.click("[data-testid='tour-skip']")
    page.wait_for_selector("[data-testid='tour']", state="detached")

    # a sloppy attempt: a small triangle inside the object
    cx = sum(x for x, _ in reference) / len(reference)
    cy = sum(y for _, y in reference) / len(reference)
    click_at(page, [(cx - 10, cy - 10), (cx + 10, cy - 10), (cx, cy + 10)])
    page.keyboard.press("Enter")
    with page.expect_response(lambda r: "/qualification/attempts" in r.url) as attempt:
        page.click("[data-testid='primary']")
    assert attempt.value.ok and not attempt.value.json()["passed"]
    page.wait_for_selector("body[data-attempt='failed']")
    assert "Not passed" in page.inner_text(".wb-banner")
    shot(page, "qualification-failed")
    page.click("[data-testid='primary']")
    page.wait_for_selector("[data-testid='retry-qualification']")
    assert annotator.http.get(f"/tasks/{task_id}/next").status_code == 403
    shot(page, "qualification-retry")

    # the retry follows the reference and opens the task
    page.click("[data-testid='retry-qualification']")
    wait_workbench(page, "qualification")
    click_at(page, reference)
    page.keyboard.press("Enter")
    with page.expect_response(lambda r: "/qualification/attempts" in r.url) as attempt:
        page.click("[data-testid='primary']")
    assert attempt.value.json()["passed"], attempt.value.text()
    page.wait_for_selector("body[data-attempt='passed']")
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/next")) as nxt:
        page.click("[data-testid='primary']")
    assert nxt.value.status == 200
    wait_workbench(page, "annotate")
