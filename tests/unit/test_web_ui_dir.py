"""Which web UI the gateway serves: the configured directory, else the one packaged in the wheel,
else the repository's web/dist (editable install); the placeholder only while none is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from crowdseg.services.gateway import web
from fastapi import FastAPI
from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit


def client(web_dir: Path | None) -> TestClient:
    app = FastAPI()
    web.mount_web(app, web_dir)
    return TestClient(app)


def build(directory: Path, marker: str) -> None:
    (directory / "assets").mkdir(parents=True)
    (directory / "index.html").write_text(f"<html>{marker}</html>")
    (directory / "assets" / "app-1234.js").write_text("console.log(1)")


def test_the_packaged_ui_comes_before_the_repository_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packaged, repository = tmp_path / "site-packages" / "crowdseg" / "web", tmp_path / "repo" / "web" / "dist"
    monkeypatch.setattr(web, "packaged_web_dir", lambda: packaged)
    monkeypatch.setattr(web, "repository_web_dir", lambda: repository)
    assert web.find_web_dir(None) is None
    build(repository, "repository")
    assert web.find_web_dir(None) == repository  # an editable install: nothing is packaged
    build(packaged, "packaged")
    assert web.find_web_dir(None) == packaged
    assert web.find_web_dir(tmp_path / "repo" / "web" / "dist") == repository.resolve()  # configured wins


def test_the_placeholder_only_until_a_real_ui_exists(tmp_path: Path) -> None:
    ui = tmp_path / "dist"
    http = client(ui)
    placeholder = http.get("/tasks/1")
    assert placeholder.status_code == 200 and placeholder.text == web.PLACEHOLDER.read_text()
    build(ui, "real")  # built while crowdseg runs
    for path in ("/", "/tasks/1"):
        assert http.get(path).text == "<html>real</html>"
    asset = http.get("/assets/app-1234.js")
    assert asset.text == "console.log(1)" and "immutable" in asset.headers["cache-control"]
    assert http.get("/../secret").text == "<html>real</html>"
    assert http.get("/api/v1/nothing").status_code == 404


def test_this_checkout_serves_its_own_build() -> None:
    """The editable install of the tests: the repository's web/dist, never the placeholder."""
    found = web.find_web_dir(None)
    assert found == web.repository_web_dir(), "web/dist is not built: run make install"
