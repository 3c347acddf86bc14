"""The cluster profile's gateway: it routes the public API to the service that owns each route.

The routing table is built from the services' own routers (the same ``ServiceParts`` the embedded
profile mounts in one app), so a route added to a service is routed without touching the gateway.
Requests and responses are streamed through ``httpx``; an unreachable service answers 503 with
``Retry-After`` (the client retries; nothing was accepted).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import httpx
from crowdseg.composition import ServiceParts
from crowdseg.http import API_PREFIX
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.background import BackgroundTask

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy sets itself.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class MissingServiceUrl(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    service: str
    base_url: str


@dataclass(frozen=True)
class Rule:
    service: str
    pattern: re.Pattern[str]
    methods: frozenset[str]


class RouteTable:
    """Which service owns ``(method, path)``; ``path`` is relative to ``/api/v1``."""

    def __init__(self, parts: Sequence[ServiceParts], urls: Mapping[str, str]) -> None:
        missing = sorted(part.name for part in parts if not urls.get(part.name))
        if missing:
            names = ", ".join(missing)
            raise MissingServiceUrl(
                f"the cluster gateway needs the URL of every service; missing: {names} "
                f'(set CROWDSEG_SERVICE_URLS, e.g. {{"{missing[0]}": "http://{missing[0]}:8000"}})'
            )
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}
        self.rules: list[Rule] = []
        for part in parts:
            for make in part.routers:
                for route in make().routes:
                    if isinstance(route, APIRoute):
                        self.rules.append(Rule(part.name, route.path_regex, frozenset(route.methods or ())))

    def resolve(self, method: str, path: str) -> Target | None:
        """The owner of the route; a path owned for other methods still goes there (it answers 405)."""
        fallback: Rule | None = None
        for rule in self.rules:
            if rule.pattern.match(path):
                if method in rule.methods or (method == "HEAD" and "GET" in rule.methods):
                    return Target(rule.service, self.urls[rule.service])
                fallback = fallback or rule
        if fallback is None:
            return None
        return Target(fallback.service, self.urls[fallback.service])


def install_proxy(app: FastAPI, parts: Sequence[ServiceParts], urls: Mapping[str, str]) -> RouteTable:
    """Route every ``/api/v1`` request the gateway does not answer itself to its service."""
    table = RouteTable(parts, urls)
    timeout = httpx.Timeout(connect=5.0, read=300.0, write=300.0, pool=10.0)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    client = httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)
    app.state.proxy_client = client

    @app.api_route(f"{API_PREFIX}/{{path:path}}", methods=METHODS, include_in_schema=False)
    async def proxy(request: Request, path: str) -> Response:
        target = table.resolve(request.method, "/" + path)
        if target is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return await forward(client, request, target)

    return table


def _forwarded_headers(request: Request) -> list[tuple[str, str]]:
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    client = request.client.host if request.client else ""
    prior = request.headers.get("x-forwarded-for")
    headers = [(k, v) for k, v in headers if k.lower() not in {"x-forwarded-for", "x-forwarded-proto"}]
    headers.append(("x-forwarded-for", f"{prior}, {client}" if prior else client))
    headers.append(("x-forwarded-proto", request.url.scheme))
    if host := request.headers.get("host"):
        headers.append(("x-forwarded-host", host))
    return headers


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
    except httpx.TransportError as exc:
        log.warning("the %s service is unreachable: %s", target.service, exc)
        return JSONResponse(
            {"detail": f"the {target.service} service is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    response = StreamingResponse(
        upstream.aiter_raw(), status_code=upstream.status_code, background=BackgroundTask(upstream.aclose)
    )
    response.raw_headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in upstream.headers.multi_items()
        if name.lower() not in HOP_BY_HOP
    ]
    return response
