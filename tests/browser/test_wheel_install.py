"""The wheel, built from a clean checkout, is all a user needs: installed into a fresh virtual
environment it starts in an empty directory and serves the web UI it carries.

The checkout is ``git archive HEAD`` (committed files only; web/dist is not in git, so the UI is
built from the archived sources with the repository's node_modules linked in: offline and fast).
``python -m build`` makes the sdist and, from the sdist, the wheel, without build isolation.

The fresh environment gets crowdseg only from the wheel (``pip install --no-deps --no-index``); its
third-party dependencies come from this test run's environment, added after its own site-packages
by a ``.pth`` line, because resolving them from PyPI takes minutes. So the test proves that the
wheel holds the code and the UI and needs nothing from the repository, not that PyPI serves every
dependency; ``pip check`` confirms that the declared dependencies are all present.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.helpers import Shot, sign_up
from tests.embedded import ROOT, Api, _die_with_parent, free_port, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def run(command: list[str], cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """crowdseg-<version>-py3-none-any.whl, built from the committed sources via the sdist."""
    source = tmp_path_factory.mktemp("checkout")
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "x"], cwd=source, input=archive, check=True)
    assert not (source / "web" / "dist").exists()
    modules = ROOT / "web" / "node_modules"
    if modules.exists():
        (source / "web" / "node_modules").symlink_to(modules.resolve(), target_is_directory=True)
    else:
        run(["npm", "ci", "--no-audit", "--no-fund"], source / "web")
    run(["npm", "run", "build"], source / "web")
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)], source)
    [built] = out.glob("crowdseg-*.whl")
    [sdist] = out.glob("crowdseg-*.tar.gz")
    assert sdist.stat().st_size > 0
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its bin directory."""
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(venv)], venv)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], venv).strip()
    (Path(purelib) / "crowdseg-test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], venv)
    run([str(python), "-m", "pip", "check"], venv)
    return venv / "bin"


@pytest.fixture(scope="module")
def running(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``crowdseg up`` of the fresh environment in an empty directory; yields its URL."""
    empty = tmp_path_factory.mktemp("empty")
    port = free_port()
    log = open(empty.parent / "wheel-server.log", "wb")  # noqa: SIM115 - closed after the process
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    process = subprocess.Popen(
        [str(installed / "crowdseg"), "up", "--port", str(port)],
        cwd=empty, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (empty.parent / "wheel-server.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 90, "crowdseg up of the installed wheel")
        assert (empty / "crowdseg-data" / "crowdseg.sqlite3").is_file()  # its default data directory, here
        yield url
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def test_the_wheel_carries_the_built_ui(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "crowdseg/web/index.html" in names
    assert any(name.startswith("crowdseg/web/assets/") and name.endswith(".js") for name in names)


def test_the_installed_command_answers_its_version(installed: Path, wheel: Path) -> None:
    version = wheel.name.split("-")[1]
    assert run([str(installed / "crowdseg"), "--version"], installed).strip() == f"crowdseg {version}"
    where = run([str(installed / "python"), "-c", "import crowdseg; print(crowdseg.__file__)"], installed)
    assert Path(where.strip()).is_relative_to(installed.parent)  # the wheel's copy, not the repository's


def unexpected(message: Any) -> bool:
    """A console error, except the signed-out page's ``GET /api/v1/me`` → 401 that Chromium logs."""
    if message.type != "error":
        return False
    signed_out = message.text.endswith("status of 401 (Unauthorized)") and str(
        message.location.get("url", "")
    ).endswith("/api/v1/me")
    return not signed_out


def test_the_installed_wheel_serves_its_ui_and_a_user_signs_up(
    running: str, installed: Path, browser: Any, artifacts: Path
) -> None:
    packaged = run(
        [str(installed / "python"), "-c", "import crowdseg, pathlib; print(pathlib.Path(crowdseg.__file__).parent)"],
        installed,
    ).strip()
    index = httpx.get(f"{running}/", timeout=30).text
    assert index == (Path(packaged) / "web" / "index.html").read_text()
    assert "/assets/" in index
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: errors.append(message.text) if unexpected(message) else None)
    try:
        page.goto(running)
        page.wait_for_load_state("networkidle")
        sign_up(page, running, "Wheel User", "wheel@example.org")
        Shot(artifacts)(page, "signed-up-on-the-installed-wheel")
        assert "admin" in Api.login(running, "wheel@example.org").user["roles"]  # type: ignore[operator]
    finally:
        context.close()
    assert errors == []


def test_nothing_of_the_repository_is_used(installed: Path) -> None:
    site_packages = next(installed.parent.glob("lib/python*/site-packages"))
    assert not (site_packages / "web").exists()  # no repository web/dist beside the package
    assert shutil.which("crowdseg", path=str(installed)) == str(installed / "crowdseg")
