"""The cluster profile's gateway: it routes the public API to the service that owns each route.

The routing table is built from the services' own routers (the same ``ServiceParts`` the embedded
profile mounts in one app), so a route added to a service is routed without touching the gateway.
Requests and responses are streamed through one ``aiohttp`` session (its pool, unlike httpx's, keeps
up with uvicorn: bench/gateway); an unreachable service answers 503 with ``Retry-After`` (the client
retries; nothing was accepted).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from crowdseg.composition import ServiceParts
from crowdseg.http import API_PREFIX
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from yarl import URL

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
HOP_BY_HOP_RAW = {name.encode() for name in HOP_BY_HOP}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Headers aiohttp would add on its own (and a proxy must not): the client's own are forwarded as sent.
NOT_ADDED = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")

POOL_CONNECTIONS = 1000  # over all services: hundreds of requests in flight at once
# Below the services' own keep-alive (uvicorn closes an idle connection after 5 s): a pooled connection
# the service is closing is never reused, which would answer "connection reset" and so a 503.
KEEPALIVE_SECONDS = 4.0
MAX_HEADER_BYTES = 65536  # one header line of an answer (aiohttp's default is 8 KiB)


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


@dataclass(frozen=True)
class Timeouts:
    """Seconds, as the httpx client had them. A whole request is not timed: a large upload or export
    takes as long as it takes, as long as it moves."""

    connect: float = 5.0  # TCP connect to a service
    pool: float = 10.0  # waiting for a free connection of the pool, on top of the connect
    read: float = 300.0  # between two reads of an answer, and from the request's end to the answer
    write: float = 300.0  # writing one chunk of a request body (the client's pauses are not counted)


class UpstreamClient:
    """The gateway's one ``aiohttp`` session to the services.

    A session belongs to an event loop: it is made on first use, in the server's loop, and closed
    when the app shuts down.
    """

    def __init__(self, timeouts: Timeouts = Timeouts()) -> None:
        self.timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=POOL_CONNECTIONS, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
            )
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self.timeouts.pool + self.timeouts.connect,
                sock_connect=self.timeouts.connect,
                sock_read=self.timeouts.read,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                cookie_jar=aiohttp.DummyCookieJar(),  # one user's Set-Cookie is never sent for another
                auto_decompress=False,  # bodies go through as the service encoded them
                skip_auto_headers=NOT_ADDED,
                max_line_size=MAX_HEADER_BYTES,
                max_field_size=MAX_HEADER_BYTES,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def install_proxy(
    app: FastAPI, parts: Sequence[ServiceParts], urls: Mapping[str, str], timeouts: Timeouts = Timeouts()
) -> RouteTable:
    """Route every ``/api/v1`` request the gateway does not answer itself to its service."""
    table = RouteTable(parts, urls)
    client = UpstreamClient(timeouts)
    app.state.proxy_client = client
    _close_on_shutdown(app, client)

    async def proxy(request: Request) -> Response:
        target = table.resolve(request.method, "/" + request.path_params["path"])
        if target is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return await forward(client.session, request, target, timeouts.write)

    # A plain Starlette route: nothing to validate or inject, the request goes through as it came.
    app.add_route(f"{API_PREFIX}/{{path:path}}", proxy, methods=METHODS, include_in_schema=False)
    return table


def _close_on_shutdown(app: FastAPI, client: UpstreamClient) -> None:
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        try:
            async with inner(app) as state:
                yield state
        finally:
            await client.close()

    app.router.lifespan_context = lifespan


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


def _upstream_url(request: Request, target: Target) -> URL:
    """The service's URL for this request: the path and the query string exactly as the client sent them."""
    raw_path: bytes | None = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else quote(request.url.path)
    query: bytes = request.scope.get("query_string", b"")
    return URL(target.base_url + path + ("?" + query.decode("latin-1") if query else ""), encoded=True)


async def forward(
    session: aiohttp.ClientSession, request: Request, target: Target, write_seconds: float | None = None
) -> Response:
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    url, headers = _upstream_url(request, target), _forwarded_headers(request)
    try:
        if has_body:
            async with asyncio.timeout(None) as deadline:
                writes = _WriteTimeout(deadline, write_seconds)
                try:
                    upstream = await session.request(
                        request.method, url, headers=headers, data=writes.watch(request.stream()), allow_redirects=False
                    )
                finally:
                    writes.deadline = None
        else:
            upstream = await session.request(request.method, url, headers=headers, allow_redirects=False)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("the %s service is unreachable: %s", target.service, exc or type(exc).__name__)
        return JSONResponse(
            {"detail": f"the {target.service} service is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    response = StreamingResponse(_relay(upstream), status_code=upstream.status)
    response.raw_headers = [
        (name.lower(), value) for name, value in upstream.raw_headers if name.lower() not in HOP_BY_HOP_RAW
    ]
    return response


class _WriteTimeout:
    """httpx's write timeout, which aiohttp lacks: the request fails if one chunk of its body takes more
    than ``seconds`` to be written to the service (a service that stopped reading). The time spent
    waiting for the client's next chunk is not counted, nor anything once the answer has begun."""

    def __init__(self, deadline: asyncio.Timeout, seconds: float | None) -> None:
        self.deadline: asyncio.Timeout | None = deadline
        self.seconds = seconds

    def _arm(self, seconds: float | None) -> None:
        if self.deadline is not None and self.seconds is not None and not self.deadline.expired():
            when = None if seconds is None else asyncio.get_running_loop().time() + seconds
            self.deadline.reschedule(when)

    async def watch(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in body:
            self._arm(self.seconds)
            yield chunk  # aiohttp asks for the next chunk once this one is written (and drained)
            self._arm(None)


async def _relay(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The service's body, chunk by chunk as it arrives; the connection goes back to the pool (or is
    closed, if the client went away before the end) however the stream ends."""
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.release()
