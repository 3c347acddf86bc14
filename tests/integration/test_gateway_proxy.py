"""The cluster gateway's proxy between a real client and a real upstream, both over loopback HTTP.

Each test serves a small upstream app and a gateway app with the proxy installed for it (both under
uvicorn, in the test's event loop), and talks to the gateway: bodies stream both ways (the upstream
sees the first bytes of an upload before the client has sent the rest, and the client the first
bytes of an answer before the upstream has made the rest), repeated headers are kept, hop-by-hop
headers are not forwarded, the query string goes through verbatim, redirects are not followed, no
cookie is kept between requests, and a service that is down answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from crowdseg.composition import ServiceParts
from crowdseg.http import API_PREFIX
from crowdseg.services.gateway.proxy import Timeouts, UpstreamClient, install_proxy
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

pytestmark = pytest.mark.integration

MIB = 1 << 20


class Seen:
    """What the upstream saw, and the handshakes of the streaming tests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.upload_started = asyncio.Event()
        self.download_started = asyncio.Event()
        self.unstall = asyncio.Event()


SEEN = Seen()


def upstream_router() -> APIRouter:
    api = APIRouter()

    @api.get("/echo/{item}")
    async def echo(item: str, request: Request) -> Response:
        SEEN.requests.append(
            {
                "raw_path": request.scope["raw_path"],
                "query": request.scope["query_string"],
                "headers": request.headers.raw,
            }
        )
        response = JSONResponse({"item": item})
        response.set_cookie("session", "for-one-user")
        response.set_cookie("csrf", "also-for-one-user")
        response.headers.append("link", '</next?after=a>; rel="next"')
        response.headers.append("link", '</first>; rel="first"')
        response.headers["keep-alive"] = "timeout=5"
        return response

    @api.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            if chunk and not SEEN.upload_started.is_set():
                SEEN.upload_started.set()
            digest.update(chunk)
            size += len(chunk)
        return {"bytes": size, "sha256": digest.hexdigest()}

    @api.get("/download")
    async def download() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a" * MIB
            # the rest is made only once the client has the first MiB
            await asyncio.wait_for(SEEN.download_started.wait(), 30)
            yield b"b" * MIB

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @api.post("/stalled")
    async def stalled() -> dict[str, str]:
        # reads nothing of the body until told to: the proxy's writes to it block
        await asyncio.wait_for(SEEN.unstall.wait(), 60)
        return {"status": "late"}

    @api.get("/moved")
    async def moved() -> RedirectResponse:
        return RedirectResponse("/api/v1/echo/elsewhere", status_code=307)

    return api


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # proxy_headers off: uvicorn would otherwise take the test's own X-Forwarded-For (from loopback,
    # which it trusts) as the client's address, and the test checks what the proxy itself appends.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", proxy_headers=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def gateway_for(upstream_url: str, timeouts: Timeouts = Timeouts()) -> FastAPI:
    app = FastAPI()
    parts = [ServiceParts(name="upstream", routers=[upstream_router])]
    install_proxy(app, parts, {"upstream": upstream_url}, timeouts)
    return app


@asynccontextmanager
async def through_gateway(timeouts: Timeouts = Timeouts()) -> AsyncIterator[httpx.AsyncClient]:
    global SEEN
    SEEN = Seen()
    upstream = FastAPI()
    upstream.include_router(upstream_router(), prefix=API_PREFIX)
    async with (
        serving(upstream) as upstream_url,
        serving(gateway_for(upstream_url, timeouts)) as gateway_url,
        httpx.AsyncClient(base_url=gateway_url, timeout=60) as client,
    ):
        try:
            yield client
        finally:
            SEEN.unstall.set()


@pytest.fixture
async def gateway() -> AsyncIterator[httpx.AsyncClient]:
    async with through_gateway() as client:
        yield client


async def test_repeated_headers_come_back_and_hop_by_hop_ones_do_not(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/echo/x")
    assert response.status_code == 200
    assert response.json() == {"item": "x"}
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2 and cookies[0].startswith("session=") and cookies[1].startswith("csrf=")
    assert response.headers.get_list("link") == ['</next?after=a>; rel="next"', '</first>; rel="first"']
    assert "keep-alive" not in response.headers


async def test_the_request_reaches_the_service_as_sent(gateway: httpx.AsyncClient) -> None:
    query = "b=%2F+x&a=1&a=2&empty="
    headers = [("x-trace", "one"), ("x-trace", "two"), ("x-forwarded-for", "10.1.2.3"), ("te", "trailers")]
    request = gateway.build_request("GET", f"/api/v1/echo/a%20b%3Fc?{query}", headers=headers)
    for name in ("accept", "accept-encoding", "user-agent"):  # and the proxy adds none of its own
        del request.headers[name]
    response = await gateway.send(request)
    assert response.status_code == 200, response.text
    assert response.json() == {"item": "a b?c"}
    seen = SEEN.requests[-1]
    assert seen["raw_path"] == b"/api/v1/echo/a%20b%3Fc"
    assert seen["query"] == query.encode()
    sent = [(name.decode(), value.decode()) for name, value in seen["headers"]]
    assert [v for n, v in sent if n == "x-trace"] == ["one", "two"]
    assert [v for n, v in sent if n == "x-forwarded-for"] == ["10.1.2.3, 127.0.0.1"]
    assert [v for n, v in sent if n == "x-forwarded-proto"] == ["http"]
    assert [v for n, v in sent if n == "x-forwarded-host"] == [gateway.base_url.netloc.decode()]
    assert not {n for n, _ in sent} & {"te", "accept", "accept-encoding", "user-agent", "connection"}


async def test_no_cookie_is_kept_between_requests(gateway: httpx.AsyncClient) -> None:
    first = await gateway.get("/api/v1/echo/one")
    assert first.headers.get_list("set-cookie")
    gateway.cookies.clear()
    await gateway.get("/api/v1/echo/two")
    sent = dict((name.decode(), value.decode()) for name, value in SEEN.requests[-1]["headers"])
    assert "cookie" not in sent  # the gateway's session never sends one user's cookie for another


async def test_redirects_are_passed_back_not_followed(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/moved")
    assert response.status_code == 307
    assert response.headers["location"] == "/api/v1/echo/elsewhere"
    assert SEEN.requests == []


async def test_a_large_upload_streams_through(gateway: httpx.AsyncClient) -> None:
    """The service reads the first MiB while the client still holds the rest back: nothing waits for
    the whole body. Then 64 MiB more go through, byte for byte."""
    block = bytes(range(256)) * 4096  # 1 MiB
    expected = hashlib.sha256()
    total = 65

    async def body() -> AsyncIterator[bytes]:
        expected.update(block)
        yield block
        await asyncio.wait_for(SEEN.upload_started.wait(), 30)
        for _ in range(total - 1):
            expected.update(block)
            yield block

    response = await gateway.post("/api/v1/upload", content=body())
    assert response.status_code == 200, response.text
    assert response.json() == {"bytes": total * MIB, "sha256": expected.hexdigest()}


async def test_a_large_upload_with_a_content_length_streams_through(gateway: httpx.AsyncClient) -> None:
    block = b"z" * MIB

    async def body() -> AsyncIterator[bytes]:
        yield block
        await asyncio.wait_for(SEEN.upload_started.wait(), 30)
        yield block

    response = await gateway.post("/api/v1/upload", content=body(), headers={"content-length": str(2 * MIB)})
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == 2 * MIB


async def test_an_answer_streams_back(gateway: httpx.AsyncClient) -> None:
    async with gateway.stream("GET", "/api/v1/download") as response:
        assert response.status_code == 200
        received = b""
        async for chunk in response.aiter_raw():
            received += chunk
            if len(received) >= MIB:
                SEEN.download_started.set()  # the upstream makes its second MiB only now
    assert received == b"a" * MIB + b"b" * MIB


async def test_a_service_that_stops_reading_an_upload_times_out_with_503() -> None:
    async with through_gateway(Timeouts(write=0.5)) as gateway:
        block = b"s" * MIB

        async def body() -> AsyncIterator[bytes]:
            for _ in range(256):  # far more than the sockets' buffers hold
                yield block

        response = await gateway.post("/api/v1/stalled", content=body())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"


async def test_an_unreachable_service_answers_503_with_retry_after() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens there once this socket is closed
    app = gateway_for(f"http://127.0.0.1:{closed_port}")
    proxy_client: UpstreamClient = app.state.proxy_client
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        session = proxy_client.session
        for method in ("GET", "POST"):
            response = await client.request(method, "/api/v1/echo/x", content=b"{}" if method == "POST" else None)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "upstream service is unavailable" in response.json()["detail"]
        unknown = await client.get("/api/v1/nothing/here")
        assert unknown.status_code == 404
    assert session.closed  # with the app
