"""Ports: the domain-level repositories and the blob store every adapter implements.

Invariants rest on single-document atomic operations (``try_lease``, ``claim_slot``,
``save_if_newer``), never on multi-document transactions, so the same port fits SQLite and
MongoDB. Adapters raise :class:`crowdseg.errors.Unavailable` when their backend is unreachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from crowdseg.domain import (
    Consensus,
    Export,
    Image,
    PendingEvent,
    QualificationAttempt,
    Role,
    Submission,
    Task,
    User,
)


@dataclass(frozen=True)
class OutboxEntry:
    collection: str
    document_id: str
    event: PendingEvent


class UserRepository(Protocol):
    async def add(self, user: User) -> User:
        """Store a new user; :class:`Conflict` if the email is taken. The first user becomes admin."""
        ...

    async def get(self, user_id: str) -> User | None: ...
    async def by_email(self, email: str) -> User | None: ...
    async def list(self) -> list[User]: ...
    async def set_roles(self, user_id: str, roles: list[Role]) -> User | None: ...


class TaskRepository(Protocol):
    async def add(self, task: Task) -> None: ...
    async def get(self, task_id: str) -> Task | None: ...
    async def list(self) -> list[Task]: ...
    async def replace(self, task: Task) -> None: ...
    async def add_member(self, task_id: str, user_id: str) -> None: ...


class ImageRepository(Protocol):
    async def add(self, image: Image) -> bool:
        """Store a new image; False if the task already has an image of that name."""
        ...

    async def get(self, image_id: str) -> Image | None: ...
    async def list_for_task(self, task_id: str, *, tutorial: bool | None = False) -> list[Image]: ...
    async def try_lease(
        self, image_id: str, user_id: str, *, replicates: int, now: datetime, expires_at: datetime
    ) -> bool:
        """Atomically lease an image to a user if it still has room and the user has not done it.

        Room: submissions plus other users' unexpired leases stay below ``replicates``.
        """
        ...

    async def claim_slot(self, image_id: str, user_id: str, *, replicates: int, now: datetime) -> bool:
        """Atomically record that the user submitted the image, if they may.

        True when the user already holds the slot (a retry), holds an unexpired lease, or the image
        still has room; the user's lease is released.
        """
        ...

    async def record_submitter(self, image_id: str, user_id: str) -> None:
        """Idempotently mark the user as a submitter (used by reconciliation)."""
        ...


class SubmissionRepository(Protocol):
    async def add(self, submission: Submission) -> tuple[Submission, bool]:
        """Store a submission unless one with its id exists; returns (stored, created)."""
        ...

    async def get(self, submission_id: str) -> Submission | None: ...
    async def list_for_image(self, image_id: str) -> list[Submission]: ...
    async def list_for_task(self, task_id: str) -> list[Submission]: ...
    async def list_for_user(self, user_id: str) -> list[Submission]: ...
    async def count_by_image(self, task_id: str) -> dict[str, int]: ...


class ConsensusRepository(Protocol):
    async def get(self, image_id: str) -> Consensus | None: ...
    async def save_if_newer(self, consensus: Consensus) -> bool:
        """Store unless the stored consensus already includes as many submissions."""
        ...

    async def list_for_task(self, task_id: str) -> list[Consensus]: ...


class AttemptRepository(Protocol):
    async def add(self, attempt: QualificationAttempt) -> None: ...
    async def list_for(self, task_id: str, user_id: str) -> list[QualificationAttempt]: ...


class ExportRepository(Protocol):
    async def add(self, export: Export) -> None: ...
    async def get(self, export_id: str) -> Export | None: ...
    async def replace(self, export: Export) -> None: ...


class OutboxRepository(Protocol):
    async def pending(self, limit: int = 100) -> list[OutboxEntry]: ...
    async def mark_published(self, entry: OutboxEntry) -> None: ...


class Store(Protocol):
    users: UserRepository
    tasks: TaskRepository
    images: ImageRepository
    submissions: SubmissionRepository
    consensus: ConsensusRepository
    attempts: AttemptRepository
    exports: ExportRepository
    outbox: OutboxRepository

    async def open(self) -> None:
        """Connect and create tables/indexes; fail fast with :class:`Unavailable`."""
        ...

    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class BlobStore(Protocol):
    async def open(self) -> None: ...
    async def ping(self) -> None: ...
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...
    async def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`NotFound` if absent."""
        ...

    def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]: ...
    async def size(self, key: str) -> int | None: ...
    async def close(self) -> None: ...
