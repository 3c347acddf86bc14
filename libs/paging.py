"""Cursor pagination of the list routes (API.md v1.1, "Lists at scale").

Every list route takes ``limit`` (default 500, at most 5000) and ``cursor``, answers a JSON list and,
when more items follow, a ``Link: <...>; rel="next"`` header (RFC 8288). The cursor is opaque to
clients: the URL-safe base64 of the list it belongs to and the last item's sort key, so the next
page starts right after that item along the store's index (keyset pagination: no duplicates or gaps
while items are being added, and no offset to skip through).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from crowdseg.errors import InvalidInput
from crowdseg.ports import Key, Page
from fastapi import Depends, Query, Request, Response

T = TypeVar("T")
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
MAX_CURSOR_CHARS = 2048

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page (at most {MAX_LIMIT})")]
Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_CHARS, description='where to continue: from the previous page\'s rel="next" link'),
]

PAGED_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'one page of the list; the `Link` header has the next page (rel="next") when there is one',
        "headers": {"Link": {"description": 'RFC 8288: `<URL>; rel="next"`', "schema": {"type": "string"}}},
    },
    422: {"description": "a limit out of range, or a cursor that is malformed or belongs to another list"},
}

BAD_CURSOR = "cursor: not a cursor of this list; follow the URL of the previous page's Link header"


def encode_cursor(scope: str, key: Key) -> str:
    raw = json.dumps([scope, list(key)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, scope: str) -> Key:
    """The sort key in a cursor made for the list ``scope``; :class:`InvalidInput` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidInput(BAD_CURSOR) from None
    if not (isinstance(decoded, list) and len(decoded) == 2 and decoded[0] == scope):
        raise InvalidInput(BAD_CURSOR)
    key = decoded[1]
    if not (
        isinstance(key, list)
        and len(key) == 2
        and all(isinstance(part, str | int | float) and not isinstance(part, bool) for part in key)
    ):
        raise InvalidInput(BAD_CURSOR)
    return tuple(key)


@dataclass(frozen=True)
class Paging:
    """A list route's ``limit`` and ``cursor``, and the ``Link`` to the next page."""

    limit: int
    cursor: str | None
    request: Request
    response: Response

    def after(self, scope: str) -> Key | None:
        return None if self.cursor is None else decode_cursor(self.cursor, scope)

    def link_next(self, scope: str, key: Key | None) -> None:
        """Announce the page after ``key`` (None: this was the last page).

        The target is a path-absolute reference (RFC 3986 §4.2), resolved against the request's own
        URL: right behind the cluster gateway as on the embedded server.
        """
        if key is None:
            return
        params = [(name, value) for name, value in self.request.query_params.multi_items() if name != "cursor"]
        params.append(("cursor", encode_cursor(scope, key)))
        self.response.headers["Link"] = f'<{self.request.url.path}?{urlencode(params)}>; rel="next"'

    def finish(self, scope: str, page: Page[Any]) -> None:
        self.link_next(scope, page.next_after)


async def paging(request: Request, response: Response, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Paging:
    return Paging(limit=limit, cursor=cursor, request=request, response=response)


PagingDep = Annotated[Paging, Depends(paging)]


async def filtered_page(
    fetch: Callable[[int, Key | None], Awaitable[Page[T]]], keep: Callable[[T], bool], limit: int, after: Key | None
) -> Page[T]:
    """Up to ``limit`` items that ``keep`` accepts, reading pages of ``limit`` from ``fetch`` (for lists
    filtered by who may see them); the keys stay those of the store's order."""
    items: list[T] = []
    keys: list[Key] = []
    more = True
    while more and len(items) <= limit:
        batch = await fetch(limit, after)
        for item, key in zip(batch.items, batch.keys, strict=True):
            if keep(item):
                items.append(item)
                keys.append(key)
        more = batch.more
        after = batch.keys[-1] if batch.keys else after
    return Page(items=items[:limit], keys=keys[:limit], more=more or len(items) > limit)
