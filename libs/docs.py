"""The interactive API reference at ``/docs``: Swagger UI served from this process, not from a CDN.

The assets come from the ``swagger-ui-bundle-v2`` package (Swagger UI 5, which renders OpenAPI 3.1)
and are served under ``/docs/assets/``; the page starts them with a script file of its own, so it
runs under the same Content-Security-Policy as the web UI (no inline script, nothing from another
origin). Issue 9: FastAPI's default page loaded its scripts from a CDN on the API's origin without
a CSP.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS = f"{DOCS_PATH}/assets"
INIT_SCRIPT = Path(__file__).resolve().parent / "static" / "docs-init.js"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{title}} API reference</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/swagger-ui-standalone-preset.js"></script>
<script src="{DOCS_PATH}/init.js"></script>
</body>
</html>
"""


def mount_docs(app: FastAPI, title: str) -> None:
    """``/docs``, its start script and Swagger UI's files; call on an app made with ``docs_url=None``."""
    page = PAGE.replace("{title}", title)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get(f"{DOCS_PATH}/init.js", include_in_schema=False)
    async def docs_init() -> FileResponse:
        return FileResponse(INIT_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
