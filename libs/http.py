"""What every service's FastAPI app shares: errors, security headers, metrics, health, auth deps."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from crowdseg import metrics
from crowdseg.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, read_token
from crowdseg.docs import mount_docs
from crowdseg.domain import Role, User
from crowdseg.errors import CrowdsegError, Forbidden, TooManyRequests, Unauthenticated
from crowdseg.ports import BlobStore, Store
from crowdseg.runtime import Runtime
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/api/v1"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MULTIPART_SLACK_BYTES = 2**20  # part headers and form fields around the files of an upload


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_store(runtime: RuntimeDep) -> Store:
    return runtime.store


async def get_blobs(runtime: RuntimeDep) -> BlobStore:
    return runtime.blobs


StoreDep = Annotated[Store, Depends(get_store)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]


def presented_token(request: Request) -> tuple[str | None, bool]:
    """The bearer token of the request, else its session cookie (None if neither), and whether it
    came from the cookie."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip(), False
    return request.cookies.get(SESSION_COOKIE) or None, True


async def current_user(request: Request, runtime: RuntimeDep) -> User:
    """The signed-in user, from a bearer token or the session cookie (CSRF-checked for writes)."""
    token, from_cookie = presented_token(request)
    if token is None:
        raise Unauthenticated("sign in first")
    if from_cookie and request.method in UNSAFE_METHODS and not _csrf_ok(request):
        raise Forbidden("cross-site request refused: send the X-CSRF-Token header with the crowdseg_csrf cookie")
    return await user_of_token(runtime, token)


async def user_of_token(runtime: Runtime, token: str) -> User:
    """The user a token names, if it is still theirs: a signed-out token (an older ``token_version``)
    is refused like an expired one (issue 9: logout left the token valid for 12 h)."""
    claims = read_token(token, runtime.settings.signing_key())
    user = await runtime.store.users.get(claims.user_id)
    if user is None:
        raise Unauthenticated("this account no longer exists")
    if claims.version != user.token_version:
        raise Unauthenticated("this session has ended; sign in again")
    return user


def _csrf_ok(request: Request) -> bool:
    expected = request.cookies.get(CSRF_COOKIE)
    return bool(expected) and request.headers.get(CSRF_HEADER) == expected


CurrentUser = Annotated[User, Depends(current_user)]


def require_role(user: User, role: Role) -> None:
    if not user.has(role):
        raise Forbidden(f"this needs the {role.value} role")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CrowdsegError)
    async def _crowdseg_error(_: Request, exc: CrowdsegError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_error_out(error) for error in exc.errors()[:MAX_ECHOED_ERRORS]]
        malformed = any(error.get("type") == "json_invalid" for error in errors)
        summary = "; ".join(_describe(error) for error in errors[:5])
        detail = f"malformed JSON: {summary}" if malformed else f"invalid request: {summary}"
        return JSONResponse({"detail": detail, "errors": errors}, status_code=400 if malformed else 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


MAX_ECHOED_ERRORS = 20
MAX_ECHOED_CHARS = 100


def _error_out(error: Any) -> dict[str, Any]:
    """One validation error as JSON, without recursion: the rejected input is echoed only as a short
    preview (issue 9: echoing it whole through a recursive function let deeply nested JSON overflow
    the stack, a 500, and a large rejected value came back in full)."""
    out: dict[str, Any] = {
        "type": str(error.get("type", "")),
        "loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
        "msg": str(error.get("msg", "invalid")),
    }
    if "input" in error:
        out["input"] = _preview(error["input"])
    if isinstance(ctx := error.get("ctx"), dict):
        out["ctx"] = {str(key): _preview(value) for key, value in ctx.items()}
    return out


def _preview(value: Any) -> Any:
    """A scalar as itself (NaN and infinities, and long strings, as short strings); a container as a
    short description of its size, never its contents."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _truncate(value)
    if isinstance(value, dict):
        return f"an object of {len(value)} members"
    if isinstance(value, list | tuple):
        return f"an array of {len(value)} items"
    return _truncate(str(value))


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_ECHOED_CHARS else f"{text[:MAX_ECHOED_CHARS]}… ({len(text)} characters)"


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{location or 'body'}: {error.get('msg', 'invalid')}"


class DurableWrites:
    """Pure ASGI middleware: a write is acknowledged (2xx/3xx) only once the store has it on disk.

    The embedded store does not sync each commit; waiting here lets one fsync serve every request
    that was waiting for it (:mod:`crowdseg.adapters.group_sync`). Refusals and reads do not wait.
    """

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return

        async def send_when_durable(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                await self.store.durable()
            await send(message)

        await self.app(scope, receive, send_when_durable)


class SecurityHeaders:
    """Pure ASGI middleware: CSP and friends on every response, and request-latency metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                # Every page, the API docs included (crowdseg.docs serves Swagger UI itself), is ours alone.
                for name, value in SECURITY_HEADERS:
                    if name not in present:
                        headers.append((name, value))
                if scope.get("scheme") == "https" and b"strict-transport-security" not in present:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            metrics.REQUEST_SECONDS.labels(scope.get("method", ""), route_template(scope), str(status)).observe(
                time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    """The matched route with its parameters as ``{names}``: a bounded label, whatever the ids.

    Built from the request path rather than the route object, whose path lacks the prefix of the
    router that included it.
    """
    if scope.get("route") is None:
        return "unmatched"
    path = str(scope.get("path", ""))
    params = sorted(scope.get("path_params", {}).items(), key=lambda item: -len(str(item[1])))
    for name, value in params:
        if value := str(value):
            path = path.replace(value, f"{{{name}}}", 1)
    return path


class BodyLimit:
    """Pure ASGI middleware: request bodies are capped by their declared length up front and by the
    bytes that actually arrive — JSON at ``max_bytes``, multipart uploads (checked file by file by
    ingest) at ``max_multipart_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_multipart_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_multipart_bytes = max_multipart_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit: int | None = self.max_bytes
        if headers.get("content-type", "").lower().startswith("multipart/"):
            # Uploads are checked precisely by ingest; this only stops an endless body being spooled to
            # disk before anyone (even the caller's credentials) is looked at.
            limit = self.max_multipart_bytes
        if limit is None:
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, headers, limit)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, headers: Headers, limit: int) -> None:
        detail = f"the request body is larger than {limit} bytes"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise StarletteHTTPException(413, detail)
            return message

        await self.app(scope, counted, send)


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/readyz")
    async def readyz(runtime: RuntimeDep) -> JSONResponse:
        checks = await runtime.check_ready()
        ready = runtime.started and all(value == "ok" for value in checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/asyncapi.json", tags=["events"])
    async def asyncapi(runtime: RuntimeDep) -> JSONResponse:
        from crowdseg.asyncapi import asyncapi_document

        return JSONResponse(asyncapi_document(runtime.broker))

    return router


Hook = Callable[[Runtime], Awaitable[None]]


def create_app(*, title: str, runtime: Runtime, routers: Sequence[APIRouter], on_start: Sequence[Hook] = ()) -> FastAPI:
    """A service's FastAPI app: its routers under /api/v1, health, metrics, the runtime's lifecycle."""

    from crowdseg.contract import AllowedMethods, document_errors  # it reads this module's current_user

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        for hook in on_start:
            await hook(runtime)
        try:
            yield
        finally:
            await runtime.stop()

    # Swagger UI from this process under the CSP (crowdseg.docs); no ReDoc (it would load from a CDN).
    app = FastAPI(
        title=title, version="1", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json"
    )
    mount_docs(app, title)
    app.state.runtime = runtime
    upload_bytes: int | None = getattr(runtime.settings, "max_upload_bytes", None)
    multipart_bytes = None if upload_bytes is None else upload_bytes + MULTIPART_SLACK_BYTES
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_json_bytes, max_multipart_bytes=multipart_bytes)
    app.add_middleware(DurableWrites, store=runtime.store)
    app.add_middleware(AllowedMethods)  # 405 with the whole Allow of an API path (crowdseg.contract)
    app.add_middleware(SecurityHeaders)  # outermost: its headers are on every answer, 413s included
    install_error_handlers(app)
    document_errors(app)
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(health_router())
    return app
