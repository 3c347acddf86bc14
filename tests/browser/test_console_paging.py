"""The task master's console pages through a task's images and coverage (API v1.1 "Lists at scale").

A task of 130 images with long names, three of them annotated: the images tab and the coverage
matrix show one page at a time (50 rows chosen here; the server's pages follow the Link header), the
window label counts the whole task, previous/next walk the pages in name order with no gap or
duplicate, every name is whole in its title attribute, and the progress and the coverage histogram
come from the stats' counters. Screenshots go to tests/browser/artifacts/test_console_paging/.
"""

from __future__ import annotations

import contextlib
import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.browser.helpers import LONG, PASSWORD, Shot, sign_up
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COUNT = 130
PAGE = 50


def image_name(k: int) -> str:
    return f"specimen-{k:04d}-section-stained-with-haematoxylin-and-eosin-scanned-at-40x.png"


def window(page: Any, testid: str) -> str:
    return str(page.inner_text(f"[data-testid='{testid}-window']")).strip()


def wait_window(page: Any, testid: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.textContent.trim() === text",
        arg=[f"[data-testid='{testid}-window']", text],
        timeout=LONG,
    )


def test_console_pages_through_images_and_coverage(server: EmbeddedServer, browser: Any, artifacts: Path) -> None:
    url = server.url
    shot = Shot(artifacts)
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_up(page, url, "Page Master", "pages@example.org")  # the first account: admin and task master
        master = Api.login(url, "pages@example.org", PASSWORD)
        made = master.http.post(
            "/tasks",
            json={
                "title": "Many images",
                "instructions": "Outline it.",
                "tool": "contour",
                "replicates": 1,
                "order": "name_asc",
            },
        )
        assert made.status_code == 201, made.text
        task_id = made.json()["id"]
        bundle = io.BytesIO()
        with zipfile.ZipFile(bundle, "w") as archive:
            for k in reversed(range(COUNT)):  # stored in any order, listed by name
                archive.writestr(image_name(k), synthetic_image(k, 48, 48).png)
        uploaded = master.http.post(
            f"/tasks/{task_id}/images", files={"files": ("many.zip", bundle.getvalue(), "application/zip")}
        )
        assert uploaded.status_code == 202 and len(uploaded.json()["accepted"]) == COUNT, uploaded.text
        names = sorted(image_name(k) for k in range(COUNT))

        # three images annotated by the task master (no tutorial: no qualification needed)
        done: list[str] = []
        for _ in range(3):
            nxt = master.http.get(f"/tasks/{task_id}/next")
            assert nxt.status_code == 200, nxt.text
            image = nxt.json()["image"]
            w, h = image["width"], image["height"]
            shape = {"type": "contour", "points": [[4, 4], [w - 4, 4], [w - 4, h - 4], [4, h - 4]]}
            sent = master.http.post(
                f"/tasks/{task_id}/submissions",
                json={
                    "id": str(uuid.uuid4()),
                    "image_id": image["id"],
                    "shapes": [shape],
                    "started_at": "2024-01-01T00:00:00Z",
                    "duration_ms": 900,
                },
            )
            assert sent.status_code == 201, sent.text
            done.append(image["id"])

        # -- images tab: 50 rows a page, in name order, names whole on hover ------------------------
        page.goto(f"{url}/console/tasks/{task_id}?tab=images")
        page.wait_for_selector("[data-testid='image-table'] tbody tr")
        page.select_option("[data-testid='images-page-size']", str(PAGE))
        wait_window(page, "images-page", f"1–{PAGE} of {COUNT}")
        seen: list[str] = []
        for at, end in ((1, PAGE), (PAGE + 1, 2 * PAGE), (2 * PAGE + 1, COUNT)):
            wait_window(page, "images-page", f"{at}–{end} of {COUNT}")
            cells = page.locator("[data-testid='image-table'] tbody td.name-cell")
            assert cells.count() == end - at + 1
            seen.extend(str(cells.nth(k).get_attribute("title")) for k in range(cells.count()))
            if end < COUNT:
                page.click("[data-testid='images-page-next']")
        assert seen == names, "every image once, in name order, across the pages"
        assert page.locator("[data-testid='images-page-next']").is_disabled()
        shot(page, "images-last-page")
        page.click("[data-testid='images-page-prev']")
        wait_window(page, "images-page", f"{PAGE + 1}–{2 * PAGE} of {COUNT}")

        # -- live tab: progress, histogram, a page of the coverage matrix --------------------------
        page.goto(f"{url}/console/tasks/{task_id}?tab=live")
        page.wait_for_selector("[data-testid='coverage'] th.name")
        page.wait_for_function(
            "() => document.querySelector(\"[data-testid='live-complete']\")?.textContent.trim() === '3 / 130'",
            timeout=LONG,
        )
        assert page.locator("[data-testid='live-progress']").get_attribute("aria-valuenow") == "2"  # 3 of 130
        assert page.locator("[data-testid='coverage-histogram']").count() == 1
        page.select_option("[data-testid='coverage-page-size']", str(PAGE))
        wait_window(page, "coverage-page", f"1–{PAGE} of {COUNT}")
        rows = page.locator("[data-testid='coverage'] tbody tr")
        assert rows.count() == PAGE, "the DOM holds one page, not the task"
        on = page.locator("[data-testid='coverage'] .cell[data-on='1']")
        marked = {str(on.nth(k).get_attribute("data-image")) for k in range(on.count())}
        assert marked == set(done), "the first page marks the three images annotated, by their submitter"
        assert page.locator("[data-testid='coverage'] th.col").count() == 1
        titles: list[str] = []
        for at, end in ((1, PAGE), (PAGE + 1, 2 * PAGE), (2 * PAGE + 1, COUNT)):
            wait_window(page, "coverage-page", f"{at}–{end} of {COUNT}")
            heads = page.locator("[data-testid='coverage'] tbody th.name")
            titles.extend(str(heads.nth(k).get_attribute("title")) for k in range(heads.count()))
            if end < COUNT:
                page.click("[data-testid='coverage-page-next']")
        assert titles == names, "every image once, in name order, across the pages"
        assert page.locator("[data-testid='coverage'] .cell[data-on='1']").count() == 0
        shot(page, "live-last-page")
        page.click("[data-testid='coverage-page-prev']")
        wait_window(page, "coverage-page", f"{PAGE + 1}–{2 * PAGE} of {COUNT}")
        assert not errors, errors
    except Exception:
        with contextlib.suppress(Exception):  # best effort, the original error matters
            shot(page, "failure")
        print(server.log_tail(80))
        raise
    finally:
        ctx.close()
