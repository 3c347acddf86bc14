"""The web UI end to end in headless Chromium (Debian's package, driven by Playwright).

A task master signs up in the browser, creates a contour task, uploads a ZIP and draws a tutorial
reference; an annotator signs up, takes the tour, passes the qualification, outlines one image by
clicking vertices and another by a freehand drag (real mouse events), edits a vertex and presses
next. The stored submissions must match what was drawn; the dashboard shows the progress; the task
master sees the progress, the coverage histogram, a page of the coverage matrix and the consensus,
and downloads the export. Every page is screenshotted into tests/browser/artifacts/test_web_flow/, and
the screens the guides show into docs/screenshots/.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.browser.helpers import (
    LONG,
    PASSWORD,
    VIEWPORT,
    Shot,
    click_polygon,
    distance_to_outline,
    docs_screenshot,
    drag,
    finish_tour,
    freehand,
    iou,
    model_shapes,
    sign_up,
    stored_submission,
    wait_new_image,
    wait_workbench,
)
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DROP_FILE = """(b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
  const zone = document.querySelector("[data-testid='dropzone']");
  zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
  zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
}"""


def test_task_master_and_annotator_in_the_browser(
    server: EmbeddedServer, browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    url = server.url
    shot = Shot(artifacts)
    images = [synthetic_image(i) for i in range(4)]
    extra = synthetic_image(9)
    by_name = {image.name: image for image in images} | {"dropped.png": extra}
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

    master_ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    annot_ctx = browser.new_context(viewport=VIEWPORT)
    master = master_ctx.new_page()
    annot = annot_ctx.new_page()
    errors: list[str] = []
    for page in (master, annot):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        # -- the task master signs up (first account: admin, so also task master) ---------------
        sign_up(master, url, "Tess Master", "master@example.org")
        shot(master, "master-dashboard", docs=True)
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
        shot(master, "new-task", docs=True)
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
        shot(master, "upload", docs=True)

        # -- and one more image dropped on the drop zone -------------------------------------------
        dropped = base64.b64encode(extra.png).decode()
        with master.expect_response(lambda r: r.url.endswith(uploaded) and r.request.method == "POST") as up:
            master.evaluate(DROP_FILE, dropped)
        assert up.value.status == 202 and len(up.value.json()["accepted"]) == 1, up.value.text()
        master.wait_for_selector("text=1 image(s) accepted")

        # -- tutorial image with its reference, drawn with the same tool ------------------------
        master.click("[data-testid='tab-tutorial']")
        master.set_input_files("[data-testid='tutorial-file']", str(tutorial_file))
        wait_workbench(master)
        click_polygon(master, reference)
        drawn = model_shapes(master)
        assert len(drawn) == 1 and len(drawn[0]["points"]) == len(reference)
        shot(master, "tutorial-reference", docs=True)
        with master.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/tutorial")) as tut:
            master.click("[data-testid='save-tutorial']")
        assert tut.value.status == 201, tut.value.text()
        master.wait_for_selector("[data-testid='tutorial-list'] li:has-text('tutorial.png')")

        # -- the annotator signs up, opens the task, takes the tour -----------------------------
        sign_up(annot, url, "Ann Otator", "annotator@example.org")
        annot.wait_for_selector("[data-testid='task-list']")
        assert annot.locator("a[href='/console']").count() == 0, "an annotator has no console"
        assert annot.locator("a[href='/admin']").count() == 0, "an annotator has no admin page"
        assert annot.locator(f"[data-task-id='{task_id}']").count() == 0, "a private task is for its members only"

        # -- the task master makes the annotator a member of the private task --------------------
        master.click("[data-testid='tab-settings']")
        master.fill("[data-testid='member-input']", "Annotator@example.org")
        with master.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/members")) as member:
            master.click("[data-testid='add-member']")
        assert member.value.ok, member.value.text()
        master.wait_for_selector("[data-testid='members'] li:has-text('annotator@example.org')")
        shot(master, "settings-members", docs=True)

        # -- and edits the task: a new title and one more rater per image ----------------------------
        master.fill("#f-title", "Browser nuclei (edited)")
        master.fill("#f-replicates", "3")
        with master.expect_response(lambda r: r.request.method == "PATCH" and r.url.endswith(task_id)) as edit:
            master.click("[data-testid='save-task']")
        assert edit.value.ok, edit.value.text()
        assert edit.value.json()["replicates"] == 3
        master.wait_for_selector("h1:has-text('Browser nuclei (edited)')")

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
        shot(annot, "qualification-result", docs=True)

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
        truth = by_name[first["name"]]
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
        shot(annot, "annotate-clicked", docs=True)
        with annot.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as saved:
            annot.click("[data-testid='primary']")
        assert saved.value.status == 201, saved.value.text()

        # -- image 2: one freehand drag ----------------------------------------------------------
        wait_new_image(annot, first["id"])
        second = annot.evaluate("() => window.crowdseg.image")
        assert second["id"] != first["id"]
        truth2 = by_name[second["name"]]
        traced = truth2.outline
        freehand(annot, traced)
        shapes2 = model_shapes(annot)
        assert len(shapes2) == 1, shapes2
        assert 4 <= len(shapes2[0]["points"]) < len(traced), "the stroke was simplified with RDP"
        shot(annot, "annotate-freehand", docs=True)
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
        shot(annot, "annotator-dashboard-after", docs=True)

        # -- the task master watches the task live: coverage, consensus ---------------------------
        master.goto(f"{url}/console/tasks/{task_id}?tab=live")
        master.wait_for_selector("[data-testid='coverage'] .cell[data-on='1']")
        master.wait_for_function(
            "() => document.querySelectorAll(\"[data-testid='coverage'] .cell[data-on='1']\").length === 2",
            timeout=LONG,
        )
        assert master.locator("[data-testid='live-submissions']").inner_text().strip() == "2"
        # one page of five images (no pager), each row named in full on hover; none has its 3 raters yet
        assert master.locator("[data-testid='coverage'] tbody th.name").count() == 5
        annotated = master.locator("[data-testid='coverage'] tr:has(.cell[data-on='1']) th.name")
        assert sorted(annotated.nth(k).get_attribute("title") or "" for k in range(2)) == sorted(
            [first["name"], second["name"]]
        )
        assert master.locator("[data-testid='coverage-page-next']").is_hidden()
        assert master.locator("[data-testid='live-complete']").inner_text().strip() == "0 / 5"
        assert master.locator("[data-testid='coverage-histogram']").count() == 1
        master.wait_for_function(
            "() => document.querySelectorAll(\"[data-testid='consensus-thumbs'] .thumb[data-consensus='1']\")"
            ".length === 2",
            timeout=LONG,
        )
        shot(master, "live", docs=True)
        master.locator("[data-testid='consensus-thumbs']").scroll_into_view_if_needed()
        docs_screenshot(master, "live-consensus")

        # -- export with a progress bar, then the download ----------------------------------------
        master.click("[data-testid='tab-export']")
        master.click("[data-testid='start-export']")
        master.wait_for_selector("[data-testid='download-export']", timeout=LONG)
        shot(master, "export", docs=True)
        with master.expect_download() as download:
            master.click("[data-testid='download-export']")
        target = artifacts / "export.zip"
        download.value.save_as(str(target))
        with zipfile.ZipFile(io.BytesIO(target.read_bytes())) as bundle:
            names = bundle.namelist()
            exported = [n for n in names if n.startswith("submissions/") and n.endswith(f"{sent[0]['id']}.json")]
            assert exported, names
            record = json.loads(bundle.read(exported[0]))
        assert record["click_times"] == one["click_times"] and record["duration_ms"] == one["duration_ms"]

        # -- the admin page: the annotator becomes a task master too ---------------------------------
        master.goto(f"{url}/admin")
        annotator_id = annotator.user["id"]
        box = master.locator(f"input[data-role='taskmaster'][data-user='{annotator_id}']")
        box.wait_for()
        with master.expect_response(lambda r: r.url.endswith(f"/users/{annotator_id}/roles")) as roles:
            box.check()
        assert roles.value.ok, roles.value.text()
        assert sorted(annotator.http.get("/me").json()["roles"]) == ["annotator", "taskmaster"]
        shot(master, "admin", docs=True)

        # -- sign out ------------------------------------------------------------------------------------
        master.click("[data-testid='signout']")
        master.wait_for_selector("[data-testid='signin-submit']")
        master.goto(f"{url}/console")
        master.wait_for_selector("[data-testid='signin-submit']")
        master.fill("#f-email", "master@example.org")
        master.fill("#f-password", PASSWORD)
        master.click("[data-testid='signin-submit']")
        master.wait_for_selector("[data-testid='new-task']")  # back where the sign-in was asked for
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
