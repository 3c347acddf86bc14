"""The gateway's proxy as it was before issue 8: one ``httpx.AsyncClient``, kept only as the benchmark's
baseline (bench/gateway/run.py runs it side by side with ``services/gateway/proxy.py``).

Same routing table and forwarded headers as the project's proxy; only the client differs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

import httpx
from crowdseg.composition import ServiceParts
from crowdseg.http import API_PREFIX
from crowdseg.services.gateway.proxy import HOP_BY_HOP, METHODS, RouteTable, Target, _forwarded_headers
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask


def install_httpx_proxy(app: FastAPI, parts: Sequence[ServiceParts], urls: Mapping[str, str]) -> RouteTable:
    table = RouteTable(parts, urls)
    timeout = httpx.Timeout(connect=5.0, read=300.0, write=300.0, pool=10.0)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    client = httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)

    @app.api_route(f"{API_PREFIX}/{{path:path}}", methods=METHODS, include_in_schema=False)
    async def proxy(request: Request, path: str) -> Response:
        target = table.resolve(request.method, "/" + path)
        if target is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return await forward(client, request, target)

    return table


async def forward(client: httpx.AsyncClient, request: Request, target: Target) -> Response:
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    body: AsyncIterator[bytes] | None = request.stream() if has_body else None
    upstream_request = client.build_request(
        request.method,
        target.base_url + request.url.path,
        params=request.url.query.encode() if request.url.query else None,
        headers=_forwarded_headers(request),
        content=body,
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.TransportError:
        return JSONResponse({"detail": "unavailable"}, status_code=503, headers={"Retry-After": "1"})
    response = StreamingResponse(
        upstream.aiter_raw(), status_code=upstream.status_code, background=BackgroundTask(upstream.aclose)
    )
    response.raw_headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in upstream.headers.multi_items()
        if name.lower() not in HOP_BY_HOP
    ]
    return response
