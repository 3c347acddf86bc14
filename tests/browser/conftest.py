"""Fixtures of the browser tests: a platform of the module's own and headless system Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import ARTIFACTS, CHROMIUM_ARGS, chromium_path, httpx_get
from tests.embedded import EmbeddedServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A platform of our own: the first account to sign up becomes the admin."""
    instance = EmbeddedServer(tmp_path_factory.mktemp("browser") / "data").start()
    index = httpx_get(f"{instance.url}/")
    if "crowdseg" not in index or "/assets/" not in index:
        instance.stop()
        pytest.fail("web/dist is not built: run make install", pytrace=False)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright import sync_api

    executable = chromium_path()
    if executable is None:
        pytest.fail("no system Chromium: run make servers (it installs Debian's chromium)", pytrace=False)
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest) -> Path:
    """tests/browser/artifacts/<module>/ (CROWDSEG_BROWSER_ARTIFACTS moves it), emptied of old screenshots."""
    directory = ARTIFACTS / request.module.__name__.rsplit(".", 1)[-1]
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.png"):
        stale.unlink()
    return directory
