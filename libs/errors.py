"""The one exception tree of crowdseg.

Handlers raise these; HTTP entrypoints turn them into 4xx/5xx answers and event consumers
decide from them whether to retry. Adapter errors (sqlite3, pymongo, aiokafka, minio) are
translated into :class:`Unavailable` at the adapter boundary, so nothing above the adapters
ever imports a driver's exceptions.

    CrowdsegError
    ├── InvalidInput        400/422  the caller sent something we will not accept
    │   └── PayloadTooLarge 413
    ├── Unauthenticated     401      no or bad credentials
    ├── Forbidden           403      signed in, but not allowed
    │   └── QualificationRequired
    ├── NotFound            404      no such thing, or not visible to the caller
    ├── Conflict            409      the request contradicts stored state
    ├── Gone                410      it existed, and has been revoked or has expired (links, invitations)
    ├── TooManyRequests     429      throttled (sign-in failures); retry after ``retry_after`` s
    ├── Unavailable         503      a store, blob store or the broker cannot be reached (retry)
    └── SchemaTooNew                 at start: the stored data were written by a newer crowdseg
"""

from __future__ import annotations

from typing import Any


class CrowdsegError(Exception):
    """Base of every error crowdseg raises on purpose."""

    status_code = 500

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(CrowdsegError):
    status_code = 422


class PayloadTooLarge(InvalidInput):
    status_code = 413


class Unauthenticated(CrowdsegError):
    status_code = 401


class Forbidden(CrowdsegError):
    status_code = 403


class QualificationRequired(Forbidden):
    pass


class NotFound(CrowdsegError):
    status_code = 404


class Conflict(CrowdsegError):
    status_code = 409


class Gone(CrowdsegError):
    status_code = 410


class TooManyRequests(CrowdsegError):
    status_code = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class Unavailable(CrowdsegError):
    """A backing service is unreachable; the same call may succeed later."""

    status_code = 503


class SchemaTooNew(CrowdsegError):
    """The data directory (or database) was written by a newer crowdseg; nothing is touched."""
