"""A study link in headless Chromium: the task master makes a Prolific link in the console; a worker
opens the study URL as Prolific would (the placeholders filled in), is signed in without an account,
annotates an image, comes back on another device and continues, finishes the quota and sees the
completion code; the ledger in the console shows the row the CSV has; opening the link once more shows
the code again. Screenshots: tests/browser/artifacts/test_study_links/."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.browser.helpers import PASSWORD, Shot, click_polygon, finish_tour, sign_up, wait_new_image, wait_workbench
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PID = "60c0ffee5eed000000000042"
VIEWPORT = {"width": 1300, "height": 900}


def annotate_one(page: Any, task_id: str, expected: str) -> str:
    """Outline the image on show and press next; the pill says how many of the quota were done before."""
    wait_workbench(page, "annotate")
    assert page.locator("[data-testid='link-progress']").inner_text() == expected
    image = page.evaluate("() => window.crowdseg.image")
    click_polygon(page, [(40, 40), (120, 40), (120, 120), (40, 120)])
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as saved:
        page.click("[data-testid='primary']")
    assert saved.value.status == 201, saved.value.text()
    return str(image["id"])


def test_a_prolific_worker_in_the_browser(server: EmbeddedServer, browser: Any, artifacts: Path) -> None:
    url = server.url
    shot = Shot(artifacts)
    errors: list[str] = []
    master_ctx = browser.new_context(viewport=VIEWPORT)
    master = master_ctx.new_page()
    master.on("pageerror", lambda exc: errors.append(str(exc)))
    contexts = [master_ctx]

    def worker_page() -> Any:
        context = browser.new_context(viewport=VIEWPORT)  # a device of its own: no token, no storage
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    try:
        sign_up(master, url, "Tess Master", "master@study.example.org")  # the first account: admin
        owner = Api.login(url, "master@study.example.org", PASSWORD)
        task = owner.http.post(
            "/tasks", json={"title": "Study nuclei", "tool": "contour", "visibility": "private", "replicates": 3}
        ).json()
        task_id = task["id"]
        files = [("files", (f"img-{n}.png", synthetic_image(n, 160, 160).png, "image/png")) for n in range(3)]
        assert owner.http.post(f"/tasks/{task_id}/images", files=files).status_code == 202

        # -- the task master makes a Prolific link of 2 images in the console -------------------
        master.goto(f"{url}/console/tasks/{task_id}?tab=crowds")
        master.wait_for_selector("[data-testid='create-link']")
        master.select_option("[data-testid='link-kind']", "prolific")
        master.fill("[data-testid='link-quota']", "2")
        master.fill("[data-testid='link-completion-code']", "CSEG2026")
        master.click("[data-testid='create-link']")
        master.wait_for_selector("[data-testid='link-row']")
        panel_url = master.input_value("[data-testid='link-panel-url']")
        assert master.locator("[data-testid='link-code']").inner_text() == "CSEG2026"
        shot(master, "console-study-link")
        assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in panel_url, panel_url
        # what Prolific opens: its placeholders filled in with the participant's ids
        study_url = (
            panel_url.replace("{{%PROLIFIC_PID%}}", PID)
            .replace("{{%STUDY_ID%}}", "65a1study")
            .replace("{{%SESSION_ID%}}", "sess01")
        )

        # -- the worker opens it: signed in, tour, one image -------------------------------------
        worker = worker_page()
        worker.goto(study_url)
        worker.wait_for_url(f"**/tasks/{task_id}")
        wait_workbench(worker, "annotate")
        finish_tour(worker, shot)
        first = annotate_one(worker, task_id, "0 of 2")
        wait_new_image(worker, first)
        shot(worker, "worker-second-image")

        # -- back on another device: the same account, one image done ------------------------------
        again = worker_page()
        again.goto(study_url)
        again.wait_for_url(f"**/tasks/{task_id}")
        wait_workbench(again, "annotate")
        finish_tour(again, shot)
        assert again.evaluate("() => window.crowdseg.image.id") != first
        annotate_one(again, task_id, "1 of 2")
        again.wait_for_selector("[data-testid='study-complete']")
        assert again.locator("[data-testid='completion-code']").inner_text() == "CSEG2026"
        shot(again, "worker-completion-code")

        # -- the ledger: in the console as in the CSV ----------------------------------------------
        (row,) = list(csv.DictReader(io.StringIO(owner.http.get(f"/tasks/{task_id}/ledger").text)))
        assert row["external_id"] == PID and row["kind"] == "prolific" and row["images"] == "2"
        assert row["completed"] == "true" and float(row["seconds"]) > 0
        master.click("[data-testid='reload-ledger']")
        shown = master.locator(f"[data-testid='ledger-row'][data-worker='{PID}']")
        shown.wait_for()
        assert shown.locator("[data-testid='ledger-images']").inner_text() == "2"
        shot(master, "console-ledger")

        # -- once more: straight to the code --------------------------------------------------------
        third = worker_page()
        third.goto(study_url)
        third.wait_for_selector("[data-testid='study-complete']")
        assert third.locator("[data-testid='completion-code']").inner_text() == "CSEG2026"
        bad = worker_page()
        bad.goto(panel_url)  # the placeholders never filled in: a clear message, no account
        bad.wait_for_selector("[data-testid='study-error']")
        assert "PROLIFIC_PID" in bad.locator("[data-testid='study-error']").inner_text()
        shot(bad, "worker-bad-link")
        assert len(list(csv.DictReader(io.StringIO(owner.http.get(f"/tasks/{task_id}/ledger").text)))) == 1
        assert errors == [], errors
    finally:
        for context in contexts:
            context.close()
