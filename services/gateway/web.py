"""Serving the built web UI: static files, and index.html for every other non-API path."""

from __future__ import annotations

from pathlib import Path

import crowdseg
from crowdseg.http import CONTENT_SECURITY_POLICY
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

# A study link's page may be opened in MTurk's frame (an ExternalQuestion) and ends with a form posted to
# MTurk; with `frame-ancestors` in the policy, browsers ignore the X-Frame-Options: DENY sent beside it.
MTURK_ORIGINS = "https://www.mturk.com https://workersandbox.mturk.com"
STUDY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "frame-ancestors 'none'", f"frame-ancestors 'self' {MTURK_ORIGINS}"
).replace("form-action 'self'", f"form-action 'self' {MTURK_ORIGINS}")
RESERVED = ("api/", "docs", "openapi.json", "asyncapi", "healthz", "readyz", "metrics")
PACKAGE = Path(crowdseg.__file__).resolve().parent
PLACEHOLDER = PACKAGE / "static" / "index.html"


def packaged_web_dir() -> Path:
    """The UI inside an installed wheel (setup.py copies web/dist there)."""
    return PACKAGE / "web"


def repository_web_dir() -> Path:
    """web/dist of the repository an editable install runs from (development)."""
    return PACKAGE.parent / "web" / "dist"


def web_dir_candidates(configured: Path | None) -> list[Path]:
    """Where the UI is looked for, first match wins: the configured directory alone, else the
    packaged UI, then the repository's build."""
    if configured is not None:
        return [configured.resolve()]
    return [packaged_web_dir(), repository_web_dir()]


def find_web_dir(configured: Path | None) -> Path | None:
    for candidate in web_dir_candidates(configured):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def mount_web(app: FastAPI, web_dir: Path | None) -> None:
    found: list[Path] = []

    def root() -> Path | None:
        # Looked up until found, so a UI built while crowdseg runs replaces the placeholder.
        if not found and (where := find_web_dir(web_dir)) is not None:
            found.append(where)
        return found[0] if found else None

    @app.get("/{path:path}", include_in_schema=False)
    async def web(path: str) -> Response:
        if path.startswith(RESERVED):
            return JSONResponse({"detail": "not found"}, status_code=404)
        ui = root()
        if ui is None:
            return FileResponse(PLACEHOLDER, headers={"Cache-Control": "no-cache"})
        candidate = (ui / path).resolve()
        if path and candidate.is_file() and candidate.is_relative_to(ui):
            return FileResponse(candidate, headers=_cache_headers(path))
        headers = {"Cache-Control": "no-cache"}
        if path.startswith("study/"):
            headers["Content-Security-Policy"] = STUDY_POLICY
        return FileResponse(ui / "index.html", headers=headers)


def _cache_headers(path: str) -> dict[str, str]:
    immutable = path.startswith("assets/")  # Vite fingerprints these file names
    return {"Cache-Control": "public, max-age=31536000, immutable" if immutable else "no-cache"}
