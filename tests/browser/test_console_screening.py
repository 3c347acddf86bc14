"""The task master sets screening and excludes or re-admits an annotator from the console (issue 10,
screening: "the task master can also exclude or re-admit one rater by hand").

The crowd of tests/integration/test_quality_control.py (careful annotators and one spammer) on a
platform of the module's own that reconciles every second. In Settings the task master switches
screening on at 0.5: the Live tab's Annotators table marks the spammer "excluded by screening" and
every consensus leaves them out. Excluding a careful annotator by hand marks them "excluded by hand"
and takes them out of the consensus too; re-admitting the spammer puts them back in, whatever the
screening says. Screenshots: docs/screenshots/console-screening.png and console-exclusion.png, and
tests/browser/artifacts/test_console_screening/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import LONG, PASSWORD, Shot, httpx_get, sign_up
from tests.embedded import Api, EmbeddedServer, wait_for
from tests.integration.test_quality_control import crowd_task
from tests.integration.test_screening import excluded_raters

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A platform of the module's own that reconciles every second (rescoring is reconciliation's work)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CROWDSEG_RECONCILE_SECONDS", "1")
        instance = EmbeddedServer(tmp_path_factory.mktemp("screening-console") / "data").start()
    if "/assets/" not in httpx_get(f"{instance.url}/"):
        instance.stop()
        pytest.fail("web/dist is not built: run make install", pytrace=False)
    try:
        yield instance
    finally:
        instance.stop()


def wait_standing(page: Any, user_id: str, standing: str) -> None:
    page.wait_for_function(
        "([u, s]) => document.querySelector(`[data-testid='annotator-row'][data-user='${u}'] td[data-standing]`)"
        "?.dataset.standing === s",
        arg=[user_id, standing],
        timeout=LONG,
    )


def row(page: Any, user_id: str) -> Any:
    return page.locator(f"[data-testid='annotator-row'][data-user='{user_id}']")


def test_screening_and_exclusion_by_hand_from_the_console(
    server: EmbeddedServer, browser: Any, artifacts: Path
) -> None:
    url = server.url
    shot = Shot(artifacts)
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_up(page, url, "Screening Master", "screening@example.org")  # the first account: admin
        master = Api.login(url, "screening@example.org", PASSWORD)
        crowd = crowd_task(master, lambda: Api.sign_up(url, f"an-{uuid.uuid4().hex[:8]}@example.org", "Annotator"))
        task_id, spammer, drawn = crowd["task_id"], crowd["spammer"], list(crowd["drawn"])
        careful = next(u for u in crowd["drawn"][drawn[0]] if u != spammer)

        page.goto(f"{url}/console/tasks/{task_id}?tab=settings")
        page.wait_for_selector("[data-testid='screening-card']")
        assert "Off" in page.inner_text("[data-testid='screening-state']")
        page.check("[data-testid='screening-on']")
        page.fill("[data-testid='screening-min']", "1.5")
        page.click("[data-testid='save-screening']")
        page.wait_for_selector("[data-testid='screening-card'] .form-error:has-text('0 to 1')")
        assert master.http.get(f"/tasks/{task_id}").json()["screening"] is None  # refused in the page
        page.fill("[data-testid='screening-min']", "0.5")
        with page.expect_response(lambda r: r.request.method == "PATCH" and r.ok):
            page.click("[data-testid='save-screening']")
        page.wait_for_selector("[data-testid='screening-state']:has-text('On')")
        assert master.http.get(f"/tasks/{task_id}").json()["screening"] == {"min_quality": 0.5}
        page.wait_for_selector(".toast", state="detached", timeout=LONG)
        page.locator("[data-testid='screening-card']").scroll_into_view_if_needed()
        shot(page, "console-screening", docs=True)

        page.goto(f"{url}/console/tasks/{task_id}?tab=live")
        wait_standing(page, spammer, "screened_out")
        assert "excluded by screening" in row(page, spammer).inner_text()
        assert row(page, spammer).get_attribute("data-flagged") == "true"
        wait_for(lambda: all(excluded_raters(master, i).get(spammer) for i in drawn), 120, "the spammer screened out")

        row(page, careful).locator("[data-testid='annotator-exclude']").click()
        wait_standing(page, careful, "excluded_by_hand")
        assert master.http.get(f"/tasks/{task_id}").json()["excluded_users"] == [careful]
        wait_for(lambda: all(excluded_raters(master, i).get(careful) for i in drawn), 120, "the careful rater out")

        row(page, spammer).locator("[data-testid='annotator-readmit']").click()
        wait_standing(page, spammer, "admitted")
        assert master.http.get(f"/tasks/{task_id}").json()["admitted_users"] == [spammer]
        wait_for(lambda: not any(excluded_raters(master, i).get(spammer) for i in drawn), 120, "the spammer back")
        assert page.locator("[data-testid='annotators-legend']").inner_text().count("excluded") >= 1
        page.wait_for_selector(".toast", state="detached", timeout=LONG)
        page.locator("[data-testid='annotators']").scroll_into_view_if_needed()
        shot(page, "console-exclusion", docs=True)

        row(page, careful).locator("[data-testid='annotator-readmit']").click()
        wait_standing(page, careful, "admitted")
        assert master.http.get(f"/tasks/{task_id}").json()["excluded_users"] == []
        assert errors == []
    finally:
        ctx.close()
