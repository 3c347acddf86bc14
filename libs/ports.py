"""Ports: the domain-level repositories and the blob store every adapter implements.

Invariants rest on single-document atomic operations (``try_lease``, ``claim_slot``,
``save_if_newer``), never on multi-document transactions, so the same port fits SQLite and
MongoDB. Adapters raise :class:`crowdseg.errors.Unavailable` when their backend is unreachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from crowdseg.counters import Tally, TaskCounters
from crowdseg.domain import (
    Consensus,
    Export,
    Image,
    Invitation,
    LinkWorker,
    PendingEvent,
    QualificationAttempt,
    Review,
    Role,
    Shape,
    StudyLink,
    Submission,
    Task,
    User,
)


@dataclass(frozen=True)
class OutboxEntry:
    collection: str
    document_id: str
    event: PendingEvent


T = TypeVar("T")
Key = tuple[str | int | float, ...]
"""A row's sort key in its store's own terms: opaque above the adapters, sent back as ``after``."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list: the items, each one's sort key, and whether more follow.

    A page query reads ``limit + 1`` rows along an index, starting after the key ``after``; rows
    added or changed meanwhile never shift the pages that follow (no duplicates, no gaps).
    """

    items: list[T]
    keys: list[Key]
    more: bool

    @property
    def next_after(self) -> Key | None:
        """The key to continue after, or None on the last page."""
        return self.keys[-1] if self.more and self.keys else None


class UserRepository(Protocol):
    async def add(self, user: User) -> User:
        """Store a new user; :class:`Conflict` if the email is taken. The first user becomes admin."""
        ...

    async def get(self, user_id: str) -> User | None: ...
    async def by_email(self, email: str) -> User | None: ...
    async def all(self) -> list[User]: ...
    async def page(self, *, limit: int, after: Key | None = None) -> Page[User]:
        """Users by creation (ties by id)."""
        ...

    async def get_many(self, user_ids: Collection[str]) -> list[User]: ...
    async def set_roles(self, user_id: str, roles: list[Role]) -> User | None: ...
    async def end_sessions(self, user_id: str) -> User | None:
        """Bump the user's ``token_version`` atomically: every token issued so far is refused."""
        ...


class TaskRepository(Protocol):
    async def add(self, task: Task) -> None: ...
    async def get(self, task_id: str) -> Task | None: ...
    async def all(self) -> list[Task]: ...
    async def page(self, *, limit: int, after: Key | None = None) -> Page[Task]:
        """Tasks by creation (ties by id)."""
        ...

    async def replace(self, task: Task) -> None: ...
    async def add_member(self, task_id: str, user_id: str) -> None: ...
    async def remove_member(self, task_id: str, user_id: str) -> bool:
        """Take the user off the task's members; False if they were not one (or there is no such task)."""
        ...


class ImageRepository(Protocol):
    async def add(self, image: Image) -> bool:
        """Store a new image; False if the task already has an image of that name."""
        ...

    async def add_many(self, images: Sequence[Image]) -> list[bool]:
        """Store new images in one call, each as :meth:`add` would: per image, False if its task
        already has an image of that name (also one earlier in ``images``), and that one is not stored."""
        ...

    async def get(self, image_id: str) -> Image | None: ...
    async def list_for_task(self, task_id: str, *, tutorial: bool | None = False) -> list[Image]: ...
    async def page_for_task(
        self, task_id: str, *, tutorial: bool | None = False, limit: int, after: Key | None = None
    ) -> Page[Image]:
        """The task's images by name (ties by id); ``tutorial`` None: tutorial images too."""
        ...

    async def try_lease(
        self, image_id: str, user_id: str, *, replicates: int, now: datetime, expires_at: datetime
    ) -> bool:
        """Atomically lease an image to a user if it still has room and the user has not done it.

        Room: submissions plus other users' unexpired leases stay below ``replicates``, and the image
        is not ``retired``.
        """
        ...

    async def claim_slot(self, image_id: str, user_id: str, *, replicates: int, now: datetime) -> bool:
        """Atomically record that the user submitted the image, if they may.

        True when the user already holds the slot (a retry), holds an unexpired lease, or the image
        still has room (a retired image has none); the user's lease is released.
        """
        ...

    async def set_certainty(self, image_id: str, certainty: float | None, *, retired: bool) -> None:
        """Idempotently record the certainty of the image's latest consensus and whether it retired
        (adaptive replicates); nothing for an unknown image."""
        ...

    async def record_submitter(self, image_id: str, user_id: str) -> None:
        """Idempotently mark the user as a submitter (used by reconciliation)."""
        ...

    async def set_rejected(self, image_id: str, user_id: str, *, rejected: bool) -> None:
        """Idempotently move a submitter into ``rejected_by`` (out of ``submitted_by``, so the image
        needs one more), or back when ``rejected`` is False; nothing for a user who is neither."""
        ...

    async def set_reference(
        self, image_id: str, shapes: list[Shape], *, by: str, at: datetime, event: PendingEvent | None = None
    ) -> Image | None:
        """Replace the image's expert reference and bump its ``reference_version`` in one atomic
        change, with ``event`` (if any) in the image's outbox; None when there is no such image."""
        ...


class SubmissionRepository(Protocol):
    async def add(self, submission: Submission) -> tuple[Submission, bool]:
        """Store a submission unless one with its id exists; returns (stored, created)."""
        ...

    async def get(self, submission_id: str) -> Submission | None: ...
    async def review(self, submission_id: str, review: Review, event: PendingEvent) -> tuple[Submission | None, bool]:
        """Atomically give the submission this verdict (its revision one past the stored one's) with
        ``event`` in its outbox, unless it already has the same decision and reason; returns (stored,
        changed). Of concurrent identical reviews exactly one changes it."""
        ...

    async def list_for_image(self, image_id: str) -> list[Submission]: ...
    async def list_for_task(self, task_id: str) -> list[Submission]: ...
    async def list_for_user(self, user_id: str) -> list[Submission]: ...
    async def count_by_image(self, task_id: str) -> dict[str, int]: ...
    async def created_since(self, since: datetime) -> list[Submission]:
        """Submissions created at or after ``since``, along an index (for reconciling from a watermark)."""
        ...


class MetaRepository(Protocol):
    """Small values a service keeps about its own progress (reconciliation watermarks)."""

    async def get(self, key: str) -> str | None: ...
    async def put(self, key: str, value: str) -> None: ...


class ConsensusRepository(Protocol):
    async def get(self, image_id: str) -> Consensus | None: ...
    async def save_if_newer(self, consensus: Consensus) -> bool:
        """Store unless the stored consensus already includes as many submissions."""
        ...

    async def list_for_task(self, task_id: str) -> list[Consensus]: ...


class CounterRepository(Protocol):
    """Counters the stores keep current in the operations that change the documents (see
    :mod:`crowdseg.counters`): adding an image, a slot or a submitter, a submission, a consensus."""

    async def task(self, task_id: str) -> TaskCounters | None:
        """The task's counters; None when it has none yet (data written before counters existed)."""
        ...

    async def tasks(self, task_ids: Collection[str]) -> dict[str, TaskCounters]:
        """The counters of several tasks at once; tasks without counters are left out."""
        ...

    async def tallies_for_task(self, task_id: str) -> list[Tally]: ...
    async def tallies_for_user(self, user_id: str) -> list[Tally]: ...
    async def rebuild(self, task_id: str) -> TaskCounters:
        """Recompute the task's counters and tallies from its documents and store them."""
        ...


class AttemptRepository(Protocol):
    async def add(self, attempt: QualificationAttempt) -> None: ...
    async def list_for(self, task_id: str, user_id: str) -> list[QualificationAttempt]: ...


class ExportRepository(Protocol):
    async def add(self, export: Export) -> None: ...
    async def get(self, export_id: str) -> Export | None: ...
    async def replace(self, export: Export) -> None: ...
    async def unfinished(self) -> list[Export]:
        """Exports still queued or running (to resume after a restart)."""
        ...


class OutboxRepository(Protocol):
    async def pending(self, limit: int = 100, *, sources: Collection[str] | None = None) -> list[OutboxEntry]:
        """Up to ``limit`` unpublished events, from the documents of ``sources`` (``images``,
        ``submissions``, ``consensus``, ``exports``) or of all of them."""
        ...

    async def mark_published(self, entry: OutboxEntry) -> None: ...
    async def mark_published_many(self, entries: Sequence[OutboxEntry]) -> None:
        """:meth:`mark_published` for every entry, in one call (one transaction where there are any)."""
        ...


class StudyLinkRepository(Protocol):
    async def add(self, link: StudyLink) -> None: ...
    async def get(self, link_id: str) -> StudyLink | None: ...
    async def page_for_task(self, task_id: str, *, limit: int, after: Key | None = None) -> Page[StudyLink]:
        """The task's links by creation (ties by id)."""
        ...

    async def revoke(self, link_id: str, at: datetime) -> StudyLink | None:
        """Mark the link revoked (an already revoked one keeps its time); None if there is no such link."""
        ...


class LinkWorkerRepository(Protocol):
    async def add(self, worker: LinkWorker) -> tuple[LinkWorker, bool]:
        """Store a new worker unless one with its id (link and external id) exists; returns (stored,
        created). Of concurrent adds of one id exactly one creates it; the others get that one."""
        ...

    async def page_for_task(self, task_id: str, *, limit: int, after: Key | None = None) -> Page[LinkWorker]:
        """The workers of every link of the task, by first visit (ties by id)."""
        ...


class InvitationRepository(Protocol):
    async def add(self, invitation: Invitation) -> None: ...
    async def get(self, invitation_id: str) -> Invitation | None: ...
    async def page_for_task(self, task_id: str, *, limit: int, after: Key | None = None) -> Page[Invitation]:
        """The task's invitations by creation (ties by id)."""
        ...

    async def revoke(self, invitation_id: str, at: datetime) -> Invitation | None:
        """Mark the invitation revoked (an already revoked one keeps its time); None if there is none."""
        ...

    async def accepted(self, invitation_id: str, user_id: str) -> None:
        """Record that the user accepted it (idempotent, never losing a concurrent acceptance)."""
        ...


class Store(Protocol):
    @property
    def users(self) -> UserRepository: ...
    @property
    def tasks(self) -> TaskRepository: ...
    @property
    def images(self) -> ImageRepository: ...
    @property
    def submissions(self) -> SubmissionRepository: ...
    @property
    def consensus(self) -> ConsensusRepository: ...
    @property
    def attempts(self) -> AttemptRepository: ...
    @property
    def exports(self) -> ExportRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def counters(self) -> CounterRepository: ...
    @property
    def meta(self) -> MetaRepository: ...
    @property
    def links(self) -> StudyLinkRepository: ...
    @property
    def link_workers(self) -> LinkWorkerRepository: ...
    @property
    def invitations(self) -> InvitationRepository: ...

    async def open(self) -> None:
        """Connect and create tables/indexes; fail fast with :class:`Unavailable`."""
        ...

    async def ping(self) -> None: ...
    async def durable(self) -> None:
        """Return once every write committed so far survives a power cut (the HTTP layer awaits it
        before acknowledging a write, so one disk sync can serve many requests)."""
        ...

    async def close(self) -> None: ...


class BlobStore(Protocol):
    async def open(self) -> None: ...
    async def ping(self) -> None: ...
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...
    async def put_many(self, objects: Sequence[tuple[str, bytes, str]]) -> None:
        """Several ``(key, data, content_type)`` objects, each written as :meth:`put` writes one."""
        ...

    async def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`NotFound` if absent."""
        ...

    def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]: ...
    async def size(self, key: str) -> int | None: ...
    async def delete(self, key: str) -> None:
        """Remove the object; nothing happens if it is absent."""
        ...

    async def close(self) -> None: ...
