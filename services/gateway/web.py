"""Serving the built web UI: static files, and index.html for every other non-API path."""

from __future__ import annotations

from pathlib import Path

import crowdseg
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

RESERVED = ("api/", "docs", "openapi.json", "asyncapi", "healthz", "readyz", "metrics")


def default_web_dir() -> Path:
    """web/dist of the repository this package was installed from, if it was built."""
    return Path(crowdseg.__file__).resolve().parent.parent / "web" / "dist"


def mount_web(app: FastAPI, web_dir: Path | None) -> None:
    root = (web_dir or default_web_dir()).resolve()
    fallback = Path(crowdseg.__file__).resolve().parent / "static" / "index.html"

    @app.get("/{path:path}", include_in_schema=False)
    async def web(path: str) -> Response:
        if path.startswith(RESERVED):
            return JSONResponse({"detail": "not found"}, status_code=404)
        candidate = (root / path).resolve()
        if path and candidate.is_file() and candidate.is_relative_to(root):
            return FileResponse(candidate, headers=_cache_headers(path))
        index = root / "index.html"
        return FileResponse(index if index.is_file() else fallback, headers={"Cache-Control": "no-cache"})


def _cache_headers(path: str) -> dict[str, str]:
    immutable = path.startswith("assets/")  # Vite fingerprints these file names
    return {"Cache-Control": "public, max-age=31536000, immutable" if immutable else "no-cache"}
