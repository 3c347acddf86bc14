"""The web UI end to end in headless Chromium (Debian's package, driven by Playwright).

A task master signs up in the browser, creates a contour task, uploads a ZIP and draws a tutorial
reference; an annotator signs up, takes the tour, passes the qualification, outlines one image by
clicking vertices and another by a freehand drag (real mouse events), edits a vertex and presses
next. The stored submissions must match what was drawn; the dashboard shows the progress; the task
master sees the coverage matrix and the consensus and downloads the export. Every page is
screenshotted into tests/browser/artifacts/.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from crowdseg.domain import Shape, Tool
from crowdseg.geometry import rasterize
from crowdseg.simulation import synthetic_image

from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(os.environ.get("CROWDSEG_BROWSER_ARTIFACTS", Path(__file__).parent / "artifacts"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct-horse-battery"
LONG = 90_000  # ms: the consensus and the export go through the embedded Kafka broker


def chromium_path() -> str | None:
    cache = Path(os.environ.get("CROWDSEG_CACHE", Path.home() / ".cache" / "crowdseg"))
    try:
        configured = json.loads((cache / "servers.json").read_text())["chromium"]["bin"]
    except (OSError, KeyError, ValueError):
        configured = None
    for candidate in (configured, "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A platform of our own: the first account to sign up becomes the admin."""
    instance = EmbeddedServer(tmp_path_factory.mktemp("browser") / "data").start()
    index = httpx_get(f"{instance.url}/")
    if "crowdseg" not in index or "/assets/" not in index:
        instance.stop()
        pytest.skip("web/dist is not built (make install builds it)")
    yield instance
    instance.stop()


def httpx_get(url: str) -> str:
    import httpx

    return httpx.get(url, timeout=30).text


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no system Chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("*.png"):
        stale.unlink()
    return ARTIFACTS


class Shot:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    def __call__(self, page: Any, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.directory / f"{self.count:02d}-{name}.png"), full_page=True)


# ---- drawing helpers: image pixels -> page coordinates through the editor's own transform ----


def wait_workbench(page: Any, phase: str | None = None) -> None:
    if phase is not None:
        page.wait_for_selector(f"body[data-phase='{phase}']", timeout=30_000)
    page.wait_for_selector("[data-testid='workbench'][data-ready='1']", timeout=30_000)
    page.evaluate("() => document.querySelector(\"[data-testid='workbench']\").scrollIntoView({block: 'center'})")


def wait_new_image(page: Any, previous: str) -> None:
    """The workbench of another image than `previous`, loaded."""
    page.wait_for_function(
        "(prev) => { const c = window.crowdseg; const el = document.querySelector(\"[data-testid='workbench']\");"
        " return !!(c && c.image && c.image.id !== prev && c.phase === 'annotate'"
        " && el && el.dataset.ready === '1'); }",
        arg=previous,
        timeout=30_000,
    )
    page.evaluate("() => document.querySelector(\"[data-testid='workbench']\").scrollIntoView({block: 'center'})")


def to_client(page: Any, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = page.evaluate("(pts) => pts.map((p) => window.crowdseg.workbench.view.imageToClient(p))", points)
    return [(float(x), float(y)) for x, y in out]


def click_polygon(page: Any, points: list[tuple[float, float]]) -> None:
    """Click every vertex, then the first one again to close the outline."""
    client = to_client(page, points)
    for x, y in client:
        page.mouse.click(x, y)
    page.mouse.click(*client[0])


def freehand(page: Any, points: list[tuple[float, float]]) -> None:
    """Hold the button and trace the points (closing the loop), then release."""
    client = to_client(page, points)
    page.mouse.move(*client[0])
    page.mouse.down()
    for x, y in client[1:] + client[:1]:
        page.mouse.move(x, y, steps=3)
    page.mouse.up()


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    (sx, sy), (ex, ey) = to_client(page, [start, end])
    page.mouse.move(sx, sy)
    page.mouse.down()
    page.mouse.move(ex, ey, steps=8)
    page.mouse.up()


def model_shapes(page: Any) -> list[dict[str, Any]]:
    shapes: list[dict[str, Any]] = page.evaluate("() => window.crowdseg.workbench.model.shapes")
    return shapes


def finish_tour(page: Any, shot: Shot) -> None:
    page.wait_for_selector("[data-testid='tour']", timeout=30_000)
    shot(page, "annotator-tour")
    for _ in range(20):
        if page.locator("[data-testid='tour']").count() == 0:
            return
        page.click("[data-testid='tour-next']")
    assert page.locator("[data-testid='tour']").count() == 0, "the tour did not end"


def sign_up(page: Any, url: str, name: str, email: str) -> None:
    page.goto(f"{url}/signup")
    page.fill("#f-name", name)
    page.fill("#f-email", email)
    page.fill("#f-password", PASSWORD)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/me") and r.ok):
        page.click("[data-testid='signup-submit']")
    page.wait_for_selector("[data-testid='signout']")


# ---- geometry checks -------------------------------------------------------------------------


def iou(a: list[tuple[float, float]], b: list[tuple[float, float]], width: int, height: int) -> float:
    ma = rasterize([Shape(type=Tool.CONTOUR, points=a)], width, height)
    mb = rasterize([Shape(type=Tool.CONTOUR, points=b)], width, height)
    return float(np.logical_and(ma, mb).sum() / max(1, np.logical_or(ma, mb).sum()))


def distance_to_outline(p: tuple[float, float], outline: list[tuple[float, float]]) -> float:
    best = math.inf
    for (ax, ay), (bx, by) in zip(outline, outline[1:] + outline[:1], strict=True):
        dx, dy = bx - ax, by - ay
        t = 0.0 if dx == dy == 0 else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / (dx * dx + dy * dy)))
        best = min(best, math.dist(p, (ax + t * dx, ay + t * dy)))
    return best


def stored_submission(annotator: Api, task_id: str, sent: dict[str, Any]) -> dict[str, Any]:
    """Posting the same client id again answers 200 with what the server stored, changing nothing."""
    response = annotator.http.post(f"/tasks/{task_id}/submissions", json=sent)
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()
    return stored


# ---- the flow -----------------------------------------------------------------------------------


def test_task_master_and_annotator_in_the_browser(
    server: EmbeddedServer, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    url = server.url
    shot = Shot(artifacts)
    images = [synthetic_image(i) for i in range(4)]
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for image in images:
            bundle.writestr(image.name, image.png)
        bundle.writestr("notes.txt", b"not an image")
        bundle.writestr("broken.png", b"\x89PNG\r\n\x1a\n-truncated")
    tutorial = synthetic_image(40)
    tutorial_file = tmp_path / "tutorial.png"
    tutorial_file.write_bytes(tutorial.png)
    reference = tutorial.outline[::6]  # 8 vertices

    viewport = {"width": 1400, "height": 900}
    master_ctx = browser.new_context(viewport=viewport, accept_downloads=True)
    annot_ctx = browser.new_context(viewport=viewport)
    master = master_ctx.new_page()
    annot = annot_ctx.new_page()
    errors: list[str] = []
    for page in (master, annot):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        # -- the task master signs up (first account: admin, so also task master) ---------------
        sign_up(master, url, "Tess Master", "master@example.org")
        shot(master, "master-dashboard")
        master.click("a[href='/console']")
        master.wait_for_selector("[data-testid='new-task']")
        shot(master, "console")
        master.click("[data-testid='new-task']")
        master.fill("#f-title", "Browser nuclei")
        instructions = "## Outline the large object\n\n**Follow** its edge. <script>window.pwned=1</script>"
        master.fill("#f-instructions", instructions)
        master.select_option("#f-tool", "contour")
        master.fill("#f-replicates", "2")
        master.fill("#f-max_shapes", "5")
        master.select_option("#f-metric", "dice")
        master.fill("#f-pass_threshold", "0.8")
        master.select_option("#f-visibility", "private")
        master.wait_for_selector("[data-testid='md-preview'] strong")
        assert master.evaluate("() => window.pwned === undefined")
        assert master.locator("[data-testid='md-preview'] script").count() == 0
        shot(master, "new-task")
        with master.expect_response(lambda r: r.url.endswith("/api/v1/tasks") and r.request.method == "POST") as made:
            master.click("[data-testid='save-task']")
        assert made.value.status == 201, made.value.text()
        task_id = made.value.json()["id"]

        # -- ZIP upload: four images accepted, two files rejected -------------------------------
        master.wait_for_selector("[data-testid='image-files']", state="attached")
        uploaded = f"/tasks/{task_id}/images"
        with master.expect_response(lambda r: r.url.endswith(uploaded) and r.request.method == "POST") as up:
            master.set_input_files("[data-testid='image-files']", str(archive))
        assert up.value.status == 202, up.value.text()
        master.wait_for_selector("[data-testid='rejected'] li")
        assert master.locator("[data-testid='rejected'] li").count() == 2
        master.wait_for_selector("text=4 image(s) accepted")
        shot(master, "upload")

        # -- tutorial image with its reference, drawn with the same tool ------------------------
        master.click("[data-testid='tab-tutorial']")
        master.set_input_files("[data-testid='tutorial-file']", str(tutorial_file))
        wait_workbench(master)
        click_polygon(master, reference)
        drawn = model_shapes(master)
        assert len(drawn) == 1 and len(drawn[0]["points"]) == len(reference)
        shot(master, "tutorial-reference")
        with master.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/tutorial")) as tut:
            master.click("[data-testid='save-tutorial']")
        assert tut.value.status == 201, tut.value.text()
        master.wait_for_selector("[data-testid='tutorial-list'] li:has-text('tutorial.png')")

        # -- the annotator signs up, opens the task, takes the tour -----------------------------
        sign_up(annot, url, "Ann Otator", "annotator@example.org")
        annot.wait_for_selector("[data-testid='task-list']")
        assert annot.locator(f"[data-task-id='{task_id}']").count() == 0, "a private task is for its members only"

        # -- the task master makes the annotator a member of the private task --------------------
        master.click("[data-testid='tab-settings']")
        master.fill("[data-testid='member-input']", "Annotator@example.org")
        with master.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/members")) as member:
            master.click("[data-testid='add-member']")
        assert member.value.ok, member.value.text()
        master.wait_for_selector("[data-testid='members'] li:has-text('annotator@example.org')")
        shot(master, "settings-members")

        annot.reload()
        annot.wait_for_selector(f"[data-task-id='{task_id}'] [data-testid='open-task']")
        shot(annot, "annotator-dashboard-before")
        annot.click(f"[data-task-id='{task_id}'] [data-testid='open-task']")
        wait_workbench(annot, "qualification")
        finish_tour(annot, shot)

        # -- qualification: outline the tutorial image, see the score and the reference ---------
        click_polygon(annot, reference)
        with annot.expect_response(lambda r: "/qualification/attempts" in r.url) as attempt:
            annot.click("[data-testid='primary']")
        assert attempt.value.ok, attempt.value.text()
        result = attempt.value.json()
        assert result["passed"] and result["score"] >= 0.95, result
        annot.wait_for_selector("body[data-attempt='passed']")
        banner = annot.locator(".wb-banner").inner_text()
        assert "Passed" in banner and "expert" in banner
        assert annot.evaluate("() => window.crowdseg.workbench.view.reference.length") == 1
        shot(annot, "qualification-result")

        # -- image 1: click vertices, then drag one of them --------------------------------------
        sent: list[dict[str, Any]] = []
        annot.on(
            "request",
            lambda r: sent.append(json.loads(r.post_data or "{}"))
            if r.method == "POST" and r.url.endswith(f"/tasks/{task_id}/submissions")
            else None,
        )
        with annot.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/next")):
            annot.click("[data-testid='primary']")
        wait_workbench(annot, "annotate")
        first = annot.evaluate("() => window.crowdseg.image")
        truth = next(i for i in images if i.name == first["name"])
        clicked = truth.outline[::6]
        click_polygon(annot, clicked)
        moved_from = clicked[2]
        moved_to = (moved_from[0] + 7.0, moved_from[1] - 5.0)
        drag(annot, moved_from, moved_to)
        shapes = model_shapes(annot)
        assert len(shapes) == 1 and len(shapes[0]["points"]) == len(clicked), shapes
        edited = [moved_to if k == 2 else p for k, p in enumerate(clicked)]
        for got, want in zip(shapes[0]["points"], edited, strict=True):
            assert math.dist(got, want) < 0.75, (got, want)
        shot(annot, "annotate-clicked")
        with annot.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as saved:
            annot.click("[data-testid='primary']")
        assert saved.value.status == 201, saved.value.text()

        # -- image 2: one freehand drag ----------------------------------------------------------
        wait_new_image(annot, first["id"])
        second = annot.evaluate("() => window.crowdseg.image")
        assert second["id"] != first["id"]
        truth2 = next(i for i in images if i.name == second["name"])
        traced = truth2.outline
        freehand(annot, traced)
        shapes2 = model_shapes(annot)
        assert len(shapes2) == 1, shapes2
        assert 4 <= len(shapes2[0]["points"]) < len(traced), "the stroke was simplified with RDP"
        shot(annot, "annotate-freehand")
        with annot.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as saved2:
            annot.click("[data-testid='primary']")
        assert saved2.value.status == 201, saved2.value.text()
        wait_new_image(annot, second["id"])
        shot(annot, "annotate-third")

        # -- what was stored is what was drawn ---------------------------------------------------
        annotator = Api.login(url, "annotator@example.org", PASSWORD)
        assert len(sent) == 2
        one = stored_submission(annotator, task_id, sent[0])
        two = stored_submission(annotator, task_id, sent[1])
        assert one["image_id"] == first["id"] and two["image_id"] == second["id"]
        for stored in (one, two):
            assert stored["duration_ms"] and stored["duration_ms"] > 0
            assert stored["click_times"], "the time of every click is recorded"
            assert len(stored["shapes"]) == 1 and stored["shapes"][0]["type"] == "contour"
        outline1 = [tuple(p) for p in one["shapes"][0]["points"]]
        for vertex in edited:  # the smoothed outline passes through every vertex, the edited one included
            assert min(math.dist(vertex, p) for p in outline1) < 1.5, vertex
        assert iou(outline1, edited, truth.width, truth.height) > 0.9
        outline2 = [tuple(p) for p in two["shapes"][0]["points"]]
        assert max(distance_to_outline(p, traced) for p in outline2) < 4.0
        assert iou(outline2, traced, truth2.width, truth2.height) > 0.93

        # -- the dashboard shows the progress ------------------------------------------------------
        annot.goto(f"{url}/")
        progress = annot.locator(f"[data-task-id='{task_id}'] [data-testid='task-progress']")
        progress.wait_for()
        assert progress.inner_text().strip().startswith("2 /"), progress.inner_text()
        assert annot.locator("[data-testid='submissions-total']").inner_text().strip() == "2"
        shot(annot, "annotator-dashboard-after")

        # -- the task master watches the task live: coverage, consensus ---------------------------
        master.goto(f"{url}/console/tasks/{task_id}?tab=live")
        master.wait_for_selector("[data-testid='coverage'] .cell[data-on='1']")
        master.wait_for_function(
            "() => document.querySelectorAll(\"[data-testid='coverage'] .cell[data-on='1']\").length === 2",
            timeout=LONG,
        )
        assert master.locator("[data-testid='live-submissions']").inner_text().strip() == "2"
        master.wait_for_function(
            "() => document.querySelectorAll(\"[data-testid='consensus-thumbs'] .thumb[data-consensus='1']\")"
            ".length === 2",
            timeout=LONG,
        )
        shot(master, "live")

        # -- export with a progress bar, then the download ----------------------------------------
        master.click("[data-testid='tab-export']")
        master.click("[data-testid='start-export']")
        master.wait_for_selector("[data-testid='download-export']", timeout=LONG)
        shot(master, "export")
        with master.expect_download() as download:
            master.click("[data-testid='download-export']")
        target = artifacts / "export.zip"
        download.value.save_as(str(target))
        with zipfile.ZipFile(io.BytesIO(target.read_bytes())) as bundle:
            names = bundle.namelist()
        assert names and any(first["id"] in n or first["name"].rsplit(".", 1)[0] in n for n in names), names

        # -- the admin page --------------------------------------------------------------------------
        master.goto(f"{url}/admin")
        master.wait_for_selector("input[data-role='taskmaster']")
        shot(master, "admin")
        assert not errors, errors
    except Exception:
        for name, page in (("failure-master", master), ("failure-annotator", annot)):
            with contextlib.suppress(Exception):  # best effort, the original error matters
                shot(page, name)
        print(server.log_tail(80))
        raise
    finally:
        master_ctx.close()
        annot_ctx.close()
