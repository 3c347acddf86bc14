"""The HTTP contract as documented: every operation's error answers in the OpenAPI document, and
405 with a complete ``Allow`` header for a wrong method on an API path (issue 9).

FastAPI documents only the 2xx answer and its own validation-error shape; crowdseg answers every
error as ``{"detail": "...", ...}`` (:func:`crowdseg.http.install_error_handlers`). The errors an
operation can answer follow from what it takes and what it checks, so they are derived here from the
route itself, once for every service:

========  =====================================================================================
status    declared on
========  =====================================================================================
400       operations with a request body (malformed JSON or multipart)
401       operations that need a signed-in user (``current_user`` among their dependencies)
403       those of them that write (a cookie session's write without the CSRF header), and the
          reads that check a role or the task's management (``FORBIDDEN_READS``)
404       operations with a path parameter (no such thing, or not visible to the caller)
409       ``CONFLICTS``: the operations that can contradict stored state
413       every write (the body is capped before it is read)
422       operations that take any input
429       ``POST /auth/login`` (declared by the route: failed sign-ins are throttled)
503       every ``/api/v1`` operation (a store, blob store or broker is unreachable; retry)
========  =====================================================================================

Descriptions a route declares itself are kept; they get the error schema if they have no content.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from crowdseg.http import API_PREFIX, UNSAFE_METHODS, current_user
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "Every error answer of crowdseg. `errors` (validation failures only) lists each problem.",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "what is wrong, in words"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
        "retry_after": {"type": "integer", "description": "429: seconds to wait before trying again"},
    },
    "additionalProperties": True,
}
FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "title": "FieldError",
    "type": "object",
    "required": ["type", "loc", "msg"],
    "properties": {
        "type": {"type": "string", "description": "the kind of failure, e.g. `missing`, `string_too_short`"},
        "loc": {
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "description": "where: `body`, `query`, `path` and the field names or indices",
        },
        "msg": {"type": "string"},
        "input": {"description": "a short preview of the rejected value (containers only as their size)"},
        "ctx": {"type": "object"},
    },
}
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "from POST /auth/login"},
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "crowdseg_session",
        "description": "set by POST /auth/login; writes also need the X-CSRF-Token header (the crowdseg_csrf cookie)",
    },
}
ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}

DESCRIPTIONS = {
    400: "malformed request body (not JSON, or not multipart/form-data)",
    401: "no credentials, or a token that is invalid, expired or signed out",
    403: "signed in, but not allowed (a role or the task's management is needed; a cookie session's write "
    "needs the X-CSRF-Token header)",
    404: "no such resource, or not visible to the caller",
    409: "the request contradicts stored state",
    413: "the request body is too large",
    422: "invalid input: `detail` says what is wrong, `errors` lists each problem",
    429: "too many requests",
    503: "a store, blob store or the broker is unreachable; nothing was changed, retry",
}

# Reads that check a role or that the caller manages the task (crowdseg.access.managed_*), or the
# qualification (``next``).
FORBIDDEN_READS = {
    f"{API_PREFIX}/users",
    f"{API_PREFIX}/tasks/{{task_id}}/images",
    f"{API_PREFIX}/tasks/{{task_id}}/next",
    f"{API_PREFIX}/tasks/{{task_id}}/stats",
    f"{API_PREFIX}/tasks/{{task_id}}/coverage",
    f"{API_PREFIX}/images/{{image_id}}/consensus",
    f"{API_PREFIX}/images/{{image_id}}/consensus/mask.png",
    f"{API_PREFIX}/images/{{image_id}}/consensus/probability.png",
    f"{API_PREFIX}/exports/{{export_id}}",
    f"{API_PREFIX}/exports/{{export_id}}/download",
}
CONFLICTS: dict[tuple[str, str], str] = {
    ("post", f"{API_PREFIX}/auth/signup"): "an account with this email already exists",
    ("post", f"{API_PREFIX}/tasks/{{task_id}}/submissions"): "the image is done, the task is not open, or the "
    "submission id is used by another submission",
    ("get", f"{API_PREFIX}/tasks/{{task_id}}/next"): "the task is not open",
    ("get", f"{API_PREFIX}/exports/{{export_id}}/download"): "the export is not done yet",
}


def _needs_user(dependant: Dependant | None) -> bool:
    pending = [dependant] if dependant else []
    while pending:
        node = pending.pop()
        if node.call is current_user:
            return True
        pending.extend(node.dependencies)
    return False


def error_codes(method: str, path: str, operation: dict[str, Any], needs_user: bool) -> dict[int, str]:
    """The error statuses the operation ``method path`` can answer, each with its description."""
    codes: dict[int, str] = {}
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    writes = method.upper() in UNSAFE_METHODS
    if has_body:
        codes[400] = DESCRIPTIONS[400]
    if needs_user:
        codes[401] = DESCRIPTIONS[401]
        if writes or path in FORBIDDEN_READS:
            codes[403] = DESCRIPTIONS[403]
    if any(parameter.get("in") == "path" for parameter in parameters):
        codes[404] = DESCRIPTIONS[404]
    if conflict := CONFLICTS.get((method, path)):
        codes[409] = conflict
    if writes:
        codes[413] = DESCRIPTIONS[413]
    if parameters or has_body:
        codes[422] = DESCRIPTIONS[422]
    if path.startswith(API_PREFIX + "/"):
        codes[503] = DESCRIPTIONS[503]
    return codes


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare every operation's error answers with crowdseg's error model."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if getattr(app.state, "documented_openapi", None) is not None:
            documented: dict[str, Any] = app.state.documented_openapi
            return documented
        spec = generate()
        users = {
            (method.lower(), context.path): _needs_user(getattr(context, "dependant", None))
            for context in iter_route_contexts(app.routes)
            if isinstance(context.original_route, APIRoute)
            for method in (context.methods or ())
        }
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                _document(method, path, operation, users.get((method, path), False))
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        spec["components"]["securitySchemes"] = SECURITY_SCHEMES
        schemas["Error"] = ERROR_SCHEMA
        schemas["FieldError"] = FIELD_ERROR_SCHEMA
        metrics = spec.get("paths", {}).get("/metrics", {}).get("get")
        if metrics is not None:
            metrics["responses"]["200"]["content"] = {
                "text/plain": {"schema": {"type": "string", "description": "Prometheus text exposition format"}}
            }
        app.state.documented_openapi = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _document(method: str, path: str, operation: dict[str, Any], needs_user: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for code, description in error_codes(method, path, operation, needs_user).items():
        declared = responses.get(str(code))
        if declared is None or code == 422:  # FastAPI's own 422 promises its own shape: replaced
            responses[str(code)] = {"description": (declared or {}).get("description", description)}
            if code == 422 and responses[str(code)]["description"] == "Validation Error":
                responses[str(code)]["description"] = description
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            response["content"] = ERROR_CONTENT
            if status == "429":
                response.setdefault("headers", {}).update(RETRY_AFTER)
    operation["responses"] = dict(sorted(responses.items()))
    if needs_user:
        operation["security"] = [{"bearer": []}, {"session": []}]


class AllowedMethods:
    """Pure ASGI middleware: a request whose path is an API route's but whose method none of that
    path's routes take answers 405 with every method they take in ``Allow`` (issue 9: such a GET
    fell to the web UI's catch-all, a 404, and another method's ``Allow`` named only one route's)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._table: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def table(self, app: Any) -> list[tuple[re.Pattern[str], frozenset[str]]]:
        if self._table is None:
            self._table = [
                (context.path_regex, frozenset(context.methods or ()))
                for context in iter_route_contexts(app.routes)
                if isinstance(context.original_route, APIRoute) and str(context.path).startswith(API_PREFIX + "/")
            ]
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.startswith(API_PREFIX + "/") or "app" not in scope:
            await self.app(scope, receive, send)
            return
        allowed: set[str] = set()
        for pattern, methods in self.table(scope["app"]):
            if pattern.match(path):
                allowed |= methods
        method = scope.get("method", "")
        if not allowed or method in allowed:
            await self.app(scope, receive, send)
            return
        if method == "HEAD" and "GET" in allowed:
            await self.app({**scope, "method": "GET"}, receive, _without_body(send))
            return
        if "GET" in allowed:
            allowed.add("HEAD")
        response = JSONResponse(
            {"detail": f"{method} is not allowed here; use {', '.join(sorted(allowed))}"},
            status_code=405,
            headers={"Allow": ", ".join(sorted(allowed))},
        )
        await response(scope, receive, send)


def _without_body(send: Send) -> Send:
    """HEAD answered as GET: the same status and headers, no body."""

    async def head_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return head_only
