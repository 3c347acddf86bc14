"""The API reference at /docs in a real browser, under the platform's Content-Security-Policy."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.embedded import EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_swagger_ui_renders_from_this_origin_without_csp_violations(server: EmbeddedServer, browser: Any) -> None:
    """issue 9 item 8: /docs loaded Swagger UI's scripts from a CDN on the API's origin, without a CSP;
    now it renders every operation from crowdseg's own files, with no request to another origin and
    no CSP violation (no inline script, no eval)."""
    context = browser.new_context()
    page = context.new_page()
    origins: set[str] = set()
    problems: list[str] = []
    page.on("request", lambda request: origins.add(urlsplit(request.url).netloc))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    try:
        response = page.goto(f"{server.url}/docs")
        assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/api/v1/auth/login" in path for path in paths), paths
        assert problems == []
        assert origins == {urlsplit(server.url).netloc}
    finally:
        context.close()
