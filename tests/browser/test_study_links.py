"""A study link in headless Chromium: the task master makes a Prolific link in the console; a worker
opens the study URL as Prolific would (the placeholders filled in), is signed in without an account,
annotates an image, comes back on another device and continues, finishes the quota and sees the
completion code; the ledger in the console shows the row the CSV has; opening the link once more shows
the code again. An MTurk preview shows the task and makes no account; an invitation made in the console
makes its invitee a member, and removing them in the console takes the private task away.
Screenshots: tests/browser/artifacts/test_study_links/."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from crowdseg.simulation import synthetic_image

from tests.browser.helpers import PASSWORD, Shot, click_polygon, finish_tour, wait_new_image, wait_workbench
from tests.embedded import Api, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PID = "60c0ffee5eed000000000042"
VIEWPORT = {"width": 1280, "height": 800}  # the docs screenshots' size
MASTER = "master@study.example.org"


@pytest.fixture(scope="module")
def owner(server: EmbeddedServer) -> Api:
    """The platform's first account: an admin, so a task master too."""
    return Api.sign_up(server.url, MASTER, "Tess Master", PASSWORD)


def sign_in(page: Any, url: str, email: str) -> None:
    """Sign in on the page the browser is on (the sign-in form), or from /signin."""
    if "/signin" not in page.url:
        page.goto(f"{url}/signin")
    page.fill("#f-email", email)
    page.fill("#f-password", PASSWORD)
    page.click("[data-testid='signin-submit']")
    page.wait_for_selector("[data-testid='signout']")


def new_task(owner: Api, title: str, images: int) -> str:
    task = owner.http.post("/tasks", json={"title": title, "tool": "contour", "visibility": "private"}).json()
    files = [("files", (f"img-{n}.png", synthetic_image(n, 160, 160).png, "image/png")) for n in range(images)]
    assert owner.http.post(f"/tasks/{task['id']}/images", files=files).status_code == 202
    return str(task["id"])


def annotate_one(page: Any, task_id: str, expected: str) -> str:
    """Outline the image on show and press next; the pill says which image of the quota this is."""
    wait_workbench(page, "annotate")
    assert page.locator("[data-testid='image-progress']").inner_text() == expected
    image = page.evaluate("() => window.crowdseg.image")
    click_polygon(page, [(40, 40), (120, 40), (120, 120), (40, 120)])
    with page.expect_response(lambda r: r.url.endswith(f"/tasks/{task_id}/submissions")) as saved:
        page.click("[data-testid='primary']")
    assert saved.value.status == 201, saved.value.text()
    return str(image["id"])


def test_a_prolific_worker_in_the_browser(server: EmbeddedServer, owner: Api, browser: Any, artifacts: Path) -> None:
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
        sign_in(master, url, MASTER)
        task_id = new_task(owner, "Study nuclei", 3)

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
        shot(master, "console-study-link", docs=True)
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
        first = annotate_one(worker, task_id, "image 1 of 2")
        wait_new_image(worker, first)
        shot(worker, "worker-second-image")

        # -- back on another device: the same account, one image done ------------------------------
        again = worker_page()
        again.goto(study_url)
        again.wait_for_url(f"**/tasks/{task_id}")
        wait_workbench(again, "annotate")
        finish_tour(again, shot)
        assert again.evaluate("() => window.crowdseg.image.id") != first
        annotate_one(again, task_id, "image 2 of 2")
        again.wait_for_selector("[data-testid='study-complete']")
        assert again.locator("[data-testid='completion-code']").inner_text() == "CSEG2026"
        shot(again, "worker-completion-code", docs=True)

        # -- the ledger: in the console as in the CSV ----------------------------------------------
        (row,) = list(csv.DictReader(io.StringIO(owner.http.get(f"/tasks/{task_id}/ledger").text)))
        assert row["external_id"] == PID and row["kind"] == "prolific" and row["images"] == "2"
        assert row["completed"] == "true" and float(row["seconds"]) > 0
        master.click("[data-testid='reload-ledger']")
        shown = master.locator(f"[data-testid='ledger-row'][data-worker='{PID}']")
        shown.wait_for()
        assert shown.locator("[data-testid='ledger-images']").inner_text() == "2"
        shot(master, "console-ledger", docs=True)

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


def test_mturk_previews_invitations_and_member_removal_in_the_browser(
    server: EmbeddedServer, owner: Api, browser: Any, artifacts: Path
) -> None:
    url = server.url
    shot = Shot(artifacts, "b-")
    errors: list[str] = []
    contexts = [browser.new_context(viewport=VIEWPORT) for _ in range(3)]
    master, previewer, invitee_page = (context.new_page() for context in contexts)
    for page in (master, previewer, invitee_page):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        task_id = new_task(owner, "Invited nuclei", 1)
        # -- an MTurk worker previewing the HIT sees the task; no account is made -------------------
        link = owner.http.post(f"/tasks/{task_id}/links", json={"kind": "mturk", "quota": 1}).json()
        previewer.goto(f"{link['url']}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=3HITPREVIEW")
        previewer.wait_for_selector("[data-testid='study-preview']")
        assert "Invited nuclei" in previewer.locator("[data-testid='study-preview'] h1").inner_text()
        shot(previewer, "mturk-preview")
        assert owner.http.get(f"/tasks/{task_id}/ledger").text.strip().count("\n") == 0  # the header alone

        # -- an invitation made in the console, opened signed out: sign in, then a member ----------
        invitee = Api.sign_up(url, "invitee@study.example.org", "Ivy Invitee", PASSWORD)
        sign_in(master, url, MASTER)
        master.goto(f"{url}/console/tasks/{task_id}?tab=crowds")
        master.fill("[data-testid='invitation-email']", "invitee@study.example.org")
        master.click("[data-testid='create-invitation']")
        master.wait_for_selector("[data-testid='invitation-row']")
        invitation_url = master.input_value("[data-testid='invitation-url']")
        shot(master, "console-invitation")
        invitee_page.goto(invitation_url)
        invitee_page.wait_for_url("**/signin?next=**")
        sign_in(invitee_page, url, "invitee@study.example.org")
        invitee_page.wait_for_url(f"**/tasks/{task_id}/instructions")
        invitee_page.wait_for_selector("h1:has-text('Invited nuclei')")
        shot(invitee_page, "invitee-joined")
        assert invitee.http.get(f"/tasks/{task_id}").status_code == 200

        # -- removed in the console: the private task is gone for them --------------------------------
        master.goto(f"{url}/console/tasks/{task_id}?tab=settings")
        member = master.locator(f"[data-testid='members'] li[data-member='{invitee.user['id']}']")
        member.wait_for()
        with master.expect_response(lambda r: "/members/" in r.url and r.request.method == "DELETE") as removed:
            member.locator("[data-testid='remove-member']").click()
        assert removed.value.status == 200, removed.value.text()
        master.wait_for_selector(f"li[data-member='{invitee.user['id']}']", state="detached")
        shot(master, "console-member-removed")
        assert invitee.http.get(f"/tasks/{task_id}").status_code == 404
        assert errors == [], errors
    finally:
        for context in contexts:
            context.close()
