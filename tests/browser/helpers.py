"""Helpers of the browser tests: the system Chromium, screenshots, drawing with real mouse events."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from crowdseg.domain import Shape, Tool
from crowdseg.geometry import rasterize
from PIL import Image

from tests.embedded import Api

ARTIFACTS = Path(os.environ.get("CROWDSEG_BROWSER_ARTIFACTS", Path(__file__).parent / "artifacts"))
# The guides' screenshots (docs/screenshots/, committed): taken by these tests, so they show today's UI.
DOCS_SCREENSHOTS = Path(
    os.environ.get("CROWDSEG_DOCS_SCREENSHOTS", Path(__file__).resolve().parents[2] / "docs" / "screenshots")
)
VIEWPORT = {"width": 1280, "height": 800}  # the browser tests' window, and so the docs' screenshot size
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


def httpx_get(url: str) -> str:
    return httpx.get(url, timeout=30).text


class Shot:
    """Numbered full-page screenshots: <directory>/<prefix>NN-<name>.png; with ``docs=True`` the window is
    also saved as docs/screenshots/<name>.png, the picture a guide shows of that screen."""

    def __init__(self, directory: Path, prefix: str = "") -> None:
        self.directory = directory
        self.prefix = prefix
        self.count = 0

    def __call__(self, page: Any, name: str, *, docs: bool = False) -> None:
        self.count += 1
        page.screenshot(path=str(self.directory / f"{self.prefix}{self.count:02d}-{name}.png"), full_page=True)
        if docs:
            docs_screenshot(page, name)


def docs_screenshot(page: Any, name: str) -> None:
    """The window as docs/screenshots/<name>.png, in 256 colours: a UI's flat colours survive, the file is a
    fraction of the size (they are committed, and regenerated on every run)."""
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    picture = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        DOCS_SCREENSHOTS / f"{name}.png", optimize=True
    )


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
    shot(page, "annotator-tour", docs=True)
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


def sign_in_as(page: Any, url: str, email: str) -> None:
    page.goto(f"{url}/signin")
    page.fill("#f-email", email)
    page.fill("#f-password", PASSWORD)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/me") and r.ok):
        page.click("[data-testid='signin-submit']")
    page.wait_for_selector("[data-testid='signout']")
