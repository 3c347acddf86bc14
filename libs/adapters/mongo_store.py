"""The cluster profile's document store: MongoDB (or a MongoDB wire-protocol server) via PyMongo's async API.

Each collection holds one document per ``_id``: the pydantic model as JSON text in ``body``, beside
copies of the few fields that queries and indexes need (``task_id``, ``email``, ...), ``_rev`` (the
document's revision) and ``_pending`` (whether its outbox holds events). The body is text, not a
sub-document, because FerretDB v1 rejects nested arrays (every shape's points are one) and because
text round-trips datetimes and floats exactly, as the SQLite adapter's ``doc`` column does.

Invariants rest on single-document operations, never on multi-document transactions:

* inserts against unique indexes (submission ids supplied by the client, user emails, image names
  per task, the first-user marker), which every MongoDB-protocol server enforces atomically;
* revision-checked read-modify-write (:meth:`MongoStore.mutate`) for leases, slots, consensus
  replacement and every other change to an existing document: read revision ``r``, compute the new
  document, write it as ``r + 1`` with ``replace_one({"_id": id, "_rev": r}, ...)``; a write that
  matched nothing lost the race and is retried on a fresh read.

  On MongoDB that conditional write is atomic (one document, filter and write under one lock), so
  it is the whole protocol (``atomic_updates``). FerretDB v1 evaluates the filter and applies the
  update in two steps (a SELECT, then an UPDATE by ``_id``), on SQLite and on PostgreSQL alike, so
  racing compare-and-sets both "win" and even ``$inc`` loses increments (``bench/store/race.py``,
  30 clients, on PostgreSQL: 1–8 of 30 ``find_one_and_update`` and 2–7 of 30 ``update_one`` won
  one race; of 600 increments 86–319 survived).
  There, moving a document from ``r`` to ``r + 1`` also requires inserting the guard
  ``<collection>/<id>/<r>`` into ``_guards`` first; the unique ``_id`` lets exactly one writer win,
  which then writes (the ``_rev`` filter refuses a late writer that won a guard its predecessor had
  already released) and releases the guard. A guard older than ``guard_stale_seconds`` belongs to a
  dead writer and is cleared.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, Generic, TypeVar

import crowdseg
from crowdseg.counters import Tally, TaskCounters, rebuild
from crowdseg.domain import (
    Consensus,
    Export,
    Image,
    Invitation,
    Lease,
    LinkWorker,
    PendingEvent,
    QualificationAttempt,
    RaterScore,
    Review,
    Role,
    Shape,
    StudyLink,
    Submission,
    Task,
    User,
    json_time,
)
from crowdseg.errors import Conflict, InvalidInput, SchemaTooNew, Unavailable
from crowdseg.migrations import CONSENSUS_RECONCILED, SCHEMA_VERSION, UNVERSIONED, Step, announce, plan
from crowdseg.ports import Key, OutboxEntry, Page
from pydantic import BaseModel
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
T = TypeVar("T")
Doc = dict[str, Any]

GUARDS = "_guards"
META = "_meta"
FIRST_USER = "first-user"
SCHEMA = "schema"  # the _meta document of the schema version (crowdseg.migrations)

ALREADY_ANNOTATED = "you have already annotated this image; ask for the next one"
DUPLICATE_KEY = 11000  # the server's error code for a unique index refusing an insert
UPDATES_AT_ONCE = 16  # documents changed concurrently by the batch methods

# Keyset pagination: users and tasks by creation (``created``, epoch seconds), images by name.
BY_CREATION = ([("created", ASCENDING), ("_id", ASCENDING)], False)
TASK_CREATION = ([("task_id", ASCENDING), ("created", ASCENDING), ("_id", ASCENDING)], False)
IMAGE_PAGES = ([("task_id", ASCENDING), ("tutorial", ASCENDING), ("name", ASCENDING), ("_id", ASCENDING)], False)

INDEXES: dict[str, list[tuple[list[tuple[str, int]], bool]]] = {
    "users": [([("email", ASCENDING)], True), BY_CREATION],
    "tasks": [BY_CREATION],
    "task_counters": [([("task_id", ASCENDING)], False)],
    "tallies": [([("task_id", ASCENDING)], False), ([("user_id", ASCENDING)], False)],
    "images": [([("task_id", ASCENDING), ("name", ASCENDING)], True), ([("_pending", ASCENDING)], False), IMAGE_PAGES],
    "submissions": [
        # One submission per user per image, whichever annotate replica accepts it.
        ([("image_id", ASCENDING), ("user_id", ASCENDING)], True),
        ([("task_id", ASCENDING)], False),
        ([("user_id", ASCENDING)], False),
        ([("_pending", ASCENDING)], False),
        ([("created_at", ASCENDING)], False),
    ],
    "consensus": [([("task_id", ASCENDING)], False), ([("_pending", ASCENDING)], False)],
    "attempts": [([("task_id", ASCENDING), ("user_id", ASCENDING)], False)],
    "exports": [([("status", ASCENDING)], False), ([("_pending", ASCENDING)], False)],
    # External crowds and invitations, paged per task by creation.
    "study_links": [TASK_CREATION],
    "link_workers": [TASK_CREATION],
    "invitations": [TASK_CREATION],
}


@contextmanager
def translate() -> Iterator[None]:
    """Turn driver errors into crowdseg's tree; duplicate keys are left to the caller."""
    try:
        yield
    except DuplicateKeyError:
        raise
    except ConnectionFailure as exc:
        raise Unavailable(f"the document store is unreachable: {exc}") from exc
    except PyMongoError as exc:
        raise Unavailable(f"document store error: {exc}") from exc


BUSY_RETRIES = 40


def _busy(exc: PyMongoError) -> bool:
    """FerretDB v1 on SQLite refuses a write with SQLITE_BUSY when another transaction wrote to the
    same file first (its read-then-write transactions cannot wait, whatever its busy timeout); the
    statement was rolled back, so running it again is safe."""
    return isinstance(exc, OperationFailure) and "SQLITE_BUSY" in str(exc)


async def _busy_retried(write: Callable[[], Awaitable[T]]) -> T:
    """Run one write, again after a short pause each time the server answered it was busy."""
    for attempt in range(BUSY_RETRIES):
        try:
            return await write()
        except PyMongoError as exc:
            if not _busy(exc) or attempt == BUSY_RETRIES - 1:
                raise
        await asyncio.sleep(random.uniform(0, min(0.1, 0.005 * (attempt + 1))))
    raise AssertionError("unreachable")


class _Collection(Generic[M]):
    fields: frozenset[str] = frozenset()
    """The model's fields copied beside the body, for queries and indexes."""

    def __init__(self, store: MongoStore, name: str, model: type[M]) -> None:
        self._store = store
        self.name = name
        self.model = model

    def encode(self, model: M, doc_id: str) -> Doc:
        doc: Doc = model.model_dump(mode="json", include=set(self.fields)) if self.fields else {}
        doc.update(_id=doc_id, _rev=0, _pending=bool(getattr(model, "outbox", None)), body=model.model_dump_json())
        return doc

    @property
    def coll(self) -> AsyncCollection[Doc]:
        return self._store.database[self.name]

    def decode(self, doc: Mapping[str, Any] | None) -> M | None:
        return None if doc is None else self.model.model_validate_json(doc["body"])

    async def one(self, query: Doc) -> M | None:
        with translate():
            return self.decode(await self.coll.find_one(query))

    async def many(self, query: Doc, sort: list[tuple[str, int]] | None = None, limit: int = 0) -> list[M]:
        with translate():
            cursor = self.coll.find(query, sort=sort, limit=limit)
            return [self.model.model_validate_json(doc["body"]) async for doc in cursor]

    async def keyed_page(self, query: Doc, keys: tuple[str, str], limit: int, after: Key | None) -> Page[M]:
        """``limit`` documents after the key ``after`` in the order of the fields ``keys`` (an index
        covers them after the fields ``query`` fixes); reads ``limit + 1`` documents."""
        first, second = keys
        if after is not None:
            if len(after) != 2:
                raise InvalidInput("cursor: not a cursor of this list")
            query = {
                **query,
                first: {"$gte": after[0]},
                "$or": [{first: {"$gt": after[0]}}, {second: {"$gt": after[1]}}],
            }
        with translate():
            cursor = self.coll.find(query, sort=[(first, ASCENDING), (second, ASCENDING)], limit=limit + 1)
            docs = [doc async for doc in cursor]
        more = len(docs) > limit
        docs = docs[:limit]
        return Page(
            items=[self.model.model_validate_json(doc["body"]) for doc in docs],
            keys=[(doc[first], doc[second]) for doc in docs],
            more=more,
        )

    async def insert(self, doc_id: str, model: M) -> None:
        """Insert a new document; :class:`DuplicateKeyError` passes through for the caller."""
        with translate():
            await self.coll.insert_one(self.encode(model, doc_id))

    async def update(self, doc_id: str, change: Callable[[M], tuple[M | None, R]], missing: R) -> R:
        """Apply ``change`` atomically; it returns (new document or None to keep it, result)."""
        outcome: list[R] = [missing]

        def on_doc(doc: Doc) -> Doc | None:
            new, outcome[0] = change(self.model.model_validate_json(doc["body"]))
            return None if new is None else self.encode(new, doc_id)

        await self._store.mutate(self.coll, doc_id, on_doc)
        return outcome[0]

    async def update_many(self, changes: Mapping[str, Callable[[M], M | None]]) -> None:
        """Apply each ``{doc_id: change}`` atomically, in a constant number of round trips for the batch.

        Bypasses the subclasses' bookkeeping in :meth:`update`: only for changes that counters do not
        follow (clearing outboxes)."""

        def on_doc(doc_id: str, change: Callable[[M], M | None]) -> Callable[[Doc], Doc | None]:
            def apply(doc: Doc) -> Doc | None:
                new = change(self.model.model_validate_json(doc["body"]))
                return None if new is None else self.encode(new, doc_id)

            return apply

        await self._store.mutate_many(self.coll, {doc_id: on_doc(doc_id, c) for doc_id, c in changes.items()})

    async def replace_doc(self, doc_id: str, model: M) -> None:
        await self.update(doc_id, lambda _: (model, None), None)


class MongoUsers(_Collection[User]):
    fields = frozenset({"email"})

    def encode(self, model: User, doc_id: str) -> Doc:
        return {**super().encode(model, doc_id), "created": model.created_at.timestamp()}

    async def page(self, *, limit: int, after: Key | None = None) -> Page[User]:
        return await self.keyed_page({}, ("created", "_id"), limit, after)

    async def get_many(self, user_ids: Collection[str]) -> list[User]:
        return await self.many({"_id": {"$in": sorted(set(user_ids))}})

    async def add(self, user: User) -> User:
        first = await self._store.claim_marker(FIRST_USER, user.id)
        if first:
            user = user.model_copy(update={"roles": [Role.ADMIN, Role.TASKMASTER, Role.ANNOTATOR]})
        try:
            await self.insert(user.id, user)
        except DuplicateKeyError as exc:
            if first:
                await self._store.release_marker(FIRST_USER, user.id)
            raise Conflict("an account with this email already exists") from exc
        return user

    async def get(self, user_id: str) -> User | None:
        return await self.one({"_id": user_id})

    async def by_email(self, email: str) -> User | None:
        return await self.one({"email": email})

    async def all(self) -> list[User]:
        return await self.many({})

    async def set_roles(self, user_id: str, roles: list[Role]) -> User | None:
        def change(user: User) -> tuple[User | None, User | None]:
            updated = user.model_copy(update={"roles": roles})
            return updated, updated

        return await self.update(user_id, change, None)

    async def end_sessions(self, user_id: str) -> User | None:
        def change(user: User) -> tuple[User | None, User | None]:
            updated = user.model_copy(update={"token_version": user.token_version + 1})
            return updated, updated

        return await self.update(user_id, change, None)


class MongoTasks(_Collection[Task]):
    def encode(self, model: Task, doc_id: str) -> Doc:
        return {**super().encode(model, doc_id), "created": model.created_at.timestamp()}

    async def page(self, *, limit: int, after: Key | None = None) -> Page[Task]:
        return await self.keyed_page({}, ("created", "_id"), limit, after)

    async def add(self, task: Task) -> None:
        await self._store.counters.create(task.id)  # first: a task never exists without its counters
        try:
            await self.insert(task.id, task)
        except DuplicateKeyError as exc:
            raise Conflict(f"task {task.id} already exists") from exc

    async def get(self, task_id: str) -> Task | None:
        return await self.one({"_id": task_id})

    async def all(self) -> list[Task]:
        return await self.many({})

    async def replace(self, task: Task) -> None:
        await self.replace_doc(task.id, task)

    async def add_member(self, task_id: str, user_id: str) -> None:
        def change(task: Task) -> tuple[Task | None, None]:
            if user_id in task.members:
                return None, None
            return task.model_copy(update={"members": [*task.members, user_id]}), None

        await self.update(task_id, change, None)

    async def remove_member(self, task_id: str, user_id: str) -> bool:
        def change(task: Task) -> tuple[Task | None, bool]:
            if user_id not in task.members:
                return None, False
            return task.model_copy(update={"members": [m for m in task.members if m != user_id]}), True

        return await self.update(task_id, change, False)


class MongoImages(_Collection[Image]):
    fields = frozenset({"task_id", "name", "tutorial"})

    # Every write of an image passes here: a change to its submitters moves it in the coverage counters.
    async def insert(self, doc_id: str, model: Image) -> None:
        await super().insert(doc_id, model)
        if not model.tutorial:
            await self._store.counters.cover(model.task_id, doc_id, None, len(model.submitted_by))

    async def update(self, doc_id: str, change: Callable[[Image], tuple[Image | None, R]], missing: R) -> R:
        moves: list[tuple[str, int, int]] = []

        def counting(image: Image) -> tuple[Image | None, R]:
            new, result = change(image)
            moves.clear()  # only the last run of ``change`` is the one written
            if new is not None and not image.tutorial and len(new.submitted_by) != len(image.submitted_by):
                moves.append((image.task_id, len(image.submitted_by), len(new.submitted_by)))
            return new, result

        result = await super().update(doc_id, counting, missing)
        for task_id, before, after in moves:
            await self._store.counters.cover(task_id, doc_id, before, after)
        return result

    async def page_for_task(
        self, task_id: str, *, tutorial: bool | None = False, limit: int, after: Key | None = None
    ) -> Page[Image]:
        query: Doc = {"task_id": task_id}
        if tutorial is not None:
            query["tutorial"] = tutorial
        return await self.keyed_page(query, ("name", "_id"), limit, after)

    async def add(self, image: Image) -> bool:
        try:
            await self.insert(image.id, image)
        except DuplicateKeyError:
            return False
        return True

    async def add_many(self, images: Sequence[Image]) -> list[bool]:
        if not images:
            return []
        refused: set[int] = set()
        with translate():
            try:
                # Unordered: every image is tried; the unique (task_id, name) index refuses duplicates one by one.
                await self.coll.insert_many([self.encode(image, image.id) for image in images], ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                other = [error for error in errors if error.get("code") != DUPLICATE_KEY]
                if other or exc.details.get("writeConcernErrors"):
                    raise Unavailable(f"document store error: {(other or [exc.details])[0]}") from exc
                refused = {int(error["index"]) for error in errors}
        added = [index not in refused for index in range(len(images))]
        for image, stored in zip(images, added, strict=True):
            if stored and not image.tutorial:
                await self._store.counters.cover(image.task_id, image.id, None, len(image.submitted_by))
        return added

    async def get(self, image_id: str) -> Image | None:
        return await self.one({"_id": image_id})

    async def list_for_task(self, task_id: str, *, tutorial: bool | None = False) -> list[Image]:
        query: Doc = {"task_id": task_id}
        if tutorial is not None:
            query["tutorial"] = tutorial
        return await self.many(query, sort=[("name", ASCENDING)])

    async def try_lease(
        self, image_id: str, user_id: str, *, replicates: int, now: datetime, expires_at: datetime
    ) -> bool:
        def change(image: Image) -> tuple[Image | None, bool]:
            if user_id in image.submitted_by or user_id in image.rejected_by:
                return None, False
            others = [lease for lease in image.active_leases(now) if lease.user_id != user_id]
            if len(image.submitted_by) + len(others) >= replicates:
                return None, False
            leases = [*others, Lease(user_id=user_id, expires_at=expires_at)]
            return image.model_copy(update={"leases": leases}), True

        return await self.update(image_id, change, False)

    async def claim_slot(self, image_id: str, user_id: str, *, replicates: int, now: datetime) -> bool:
        def change(image: Image) -> tuple[Image | None, bool]:
            if user_id in image.submitted_by:
                return None, True
            active = image.active_leases(now)
            holds_lease = any(lease.user_id == user_id for lease in active)
            others = [lease for lease in active if lease.user_id != user_id]
            if not holds_lease and len(image.submitted_by) + len(others) >= replicates:
                return None, False
            update = {"submitted_by": [*image.submitted_by, user_id], "leases": others}
            return image.model_copy(update=update), True

        return await self.update(image_id, change, False)

    async def record_submitter(self, image_id: str, user_id: str) -> None:
        def change(image: Image) -> tuple[Image | None, None]:
            if user_id in image.submitted_by:
                return None, None
            return image.model_copy(update={"submitted_by": [*image.submitted_by, user_id]}), None

        await self.update(image_id, change, None)

    async def set_rejected(self, image_id: str, user_id: str, *, rejected: bool) -> None:
        await self.update(image_id, lambda image: (image.with_rater_moved(user_id, rejected=rejected), None), None)

    async def set_reference(
        self, image_id: str, shapes: list[Shape], *, by: str, at: datetime, event: PendingEvent | None = None
    ) -> Image | None:
        def change(image: Image) -> tuple[Image | None, Image]:
            update = {
                "reference_shapes": shapes,
                "reference_version": image.reference_version + 1,
                "reference_by": by,
                "reference_at": at,
            }
            if event is not None:
                update["outbox"] = [*image.outbox, event]
            changed = image.model_copy(update=update)
            return changed, changed

        return await self.update(image_id, change, None)


class MongoSubmissions(_Collection[Submission]):
    fields = frozenset({"task_id", "image_id", "user_id", "created_at"})

    async def created_since(self, since: datetime) -> list[Submission]:
        # Documents written before `created_at` was copied beside the body lack it; the first
        # reconciliation (without a watermark) reads everything and covers them.
        return await self.many({"created_at": {"$gte": json_time(since)}})

    async def insert(self, doc_id: str, model: Submission) -> None:
        await super().insert(doc_id, model)
        await self._store.counters.submitted(model)

    async def add(self, submission: Submission) -> tuple[Submission, bool]:
        try:
            await self.insert(submission.id, submission)
        except DuplicateKeyError:
            stored = await self.get(submission.id)
            if stored is None:  # not a retry: the user already has a submission for this image
                raise Conflict(ALREADY_ANNOTATED) from None
            return stored, False
        return submission, True

    async def get(self, submission_id: str) -> Submission | None:
        return await self.one({"_id": submission_id})

    async def review(self, submission_id: str, review: Review, event: PendingEvent) -> tuple[Submission | None, bool]:
        def change(stored: Submission) -> tuple[Submission | None, tuple[Submission | None, bool]]:
            changed = stored.with_review(review, event)
            return changed, (stored, False) if changed is None else (changed, True)

        return await self.update(submission_id, change, (None, False))

    async def list_for_image(self, image_id: str) -> list[Submission]:
        return await self.many({"image_id": image_id})

    async def list_for_task(self, task_id: str) -> list[Submission]:
        return await self.many({"task_id": task_id})

    async def list_for_user(self, user_id: str) -> list[Submission]:
        return await self.many({"user_id": user_id})

    async def count_by_image(self, task_id: str) -> dict[str, int]:
        pipeline: list[Doc] = [{"$match": {"task_id": task_id}}, {"$group": {"_id": "$image_id", "n": {"$sum": 1}}}]
        with translate():
            cursor = await self.coll.aggregate(pipeline)
            return {str(row["_id"]): int(row["n"]) async for row in cursor}


def _newness(consensus: Consensus) -> tuple[int, int, int, int, int]:
    """The review revisions it saw, its submissions, then the reference and the scoring the rater
    scores used: a consensus after a review replaces one with more submissions; one rescored against a
    newer reference, by newer code or a newer screening, replaces one with as many submissions."""
    return (
        consensus.reviews,
        consensus.submissions,
        consensus.reference_version,
        consensus.scoring,
        consensus.screening_revision,
    )


class MongoConsensus(_Collection[Consensus]):
    fields = frozenset({"task_id", "submissions"})

    # A consensus that is stored, or replaces one with fewer submissions, moves the tallies.
    async def insert(self, doc_id: str, model: Consensus) -> None:
        await super().insert(doc_id, model)
        await self._store.counters.replaced(model, None)

    async def update(self, doc_id: str, change: Callable[[Consensus], tuple[Consensus | None, R]], missing: R) -> R:
        replaced: list[tuple[Consensus, Consensus]] = []

        def counting(stored: Consensus) -> tuple[Consensus | None, R]:
            new, result = change(stored)
            replaced.clear()
            if new is not None and _newness(new) != _newness(stored):
                replaced.append((new, stored))
            return new, result

        result = await super().update(doc_id, counting, missing)
        for new, old in replaced:
            await self._store.counters.replaced(new, old)
        return result

    async def get(self, image_id: str) -> Consensus | None:
        return await self.one({"_id": image_id})

    async def save_if_newer(self, consensus: Consensus) -> bool:
        try:
            await self.insert(consensus.image_id, consensus)
            return True
        except DuplicateKeyError:
            pass

        def change(stored: Consensus) -> tuple[Consensus | None, bool]:
            if _newness(consensus) > _newness(stored):
                return consensus, True
            return None, False

        return await self.update(consensus.image_id, change, False)

    async def list_for_task(self, task_id: str) -> list[Consensus]:
        return await self.many({"task_id": task_id})


class MongoAttempts(_Collection[QualificationAttempt]):
    fields = frozenset({"task_id", "user_id"})

    async def add(self, attempt: QualificationAttempt) -> None:
        try:
            await self.insert(attempt.id, attempt)
        except DuplicateKeyError as exc:
            raise Conflict(f"attempt {attempt.id} already exists") from exc

    async def list_for(self, task_id: str, user_id: str) -> list[QualificationAttempt]:
        return await self.many({"task_id": task_id, "user_id": user_id})


class MongoExports(_Collection[Export]):
    fields = frozenset({"task_id", "status"})

    async def add(self, export: Export) -> None:
        try:
            await self.insert(export.id, export)
        except DuplicateKeyError as exc:
            raise Conflict(f"export {export.id} already exists") from exc

    async def get(self, export_id: str) -> Export | None:
        return await self.one({"_id": export_id})

    async def replace(self, export: Export) -> None:
        await self.replace_doc(export.id, export)

    async def unfinished(self) -> list[Export]:
        return await self.many({"status": {"$in": ["queued", "running"]}})


class _PerTask(_Collection[M]):
    """Documents paged per task by creation (``created``, epoch seconds, beside the body)."""

    fields = frozenset({"task_id"})

    def encode(self, model: M, doc_id: str) -> Doc:
        created_at: datetime = getattr(model, "created_at")  # noqa: B009 - every per-task model has one
        return {**super().encode(model, doc_id), "created": created_at.timestamp()}

    async def get(self, doc_id: str) -> M | None:
        return await self.one({"_id": doc_id})

    async def page_for_task(self, task_id: str, *, limit: int, after: Key | None = None) -> Page[M]:
        return await self.keyed_page({"task_id": task_id}, ("created", "_id"), limit, after)


class MongoStudyLinks(_PerTask[StudyLink]):
    async def add(self, link: StudyLink) -> None:
        try:
            await self.insert(link.id, link)
        except DuplicateKeyError as exc:
            raise Conflict(f"study link {link.id} already exists") from exc

    async def revoke(self, link_id: str, at: datetime) -> StudyLink | None:
        def change(link: StudyLink) -> tuple[StudyLink | None, StudyLink]:
            if link.revoked_at is not None:
                return None, link
            revoked = link.model_copy(update={"revoked_at": at})
            return revoked, revoked

        return await self.update(link_id, change, None)


class MongoLinkWorkers(_PerTask[LinkWorker]):
    async def add(self, worker: LinkWorker) -> tuple[LinkWorker, bool]:
        try:  # the unique _id arbitrates: of racing first visits exactly one insert wins
            await self.insert(worker.id, worker)
        except DuplicateKeyError:
            stored = await self.get(worker.id)
            assert stored is not None  # documents are never deleted
            return stored, False
        return worker, True


class MongoInvitations(_PerTask[Invitation]):
    async def add(self, invitation: Invitation) -> None:
        try:
            await self.insert(invitation.id, invitation)
        except DuplicateKeyError as exc:
            raise Conflict(f"invitation {invitation.id} already exists") from exc

    async def revoke(self, invitation_id: str, at: datetime) -> Invitation | None:
        def change(invitation: Invitation) -> tuple[Invitation | None, Invitation]:
            if invitation.revoked_at is not None:
                return None, invitation
            revoked = invitation.model_copy(update={"revoked_at": at})
            return revoked, revoked

        return await self.update(invitation_id, change, None)

    async def accepted(self, invitation_id: str, user_id: str) -> None:
        def change(invitation: Invitation) -> tuple[Invitation | None, None]:
            if user_id in invitation.accepted_by:
                return None, None
            return invitation.model_copy(update={"accepted_by": [*invitation.accepted_by, user_id]}), None

        await self.update(invitation_id, change, None)


class MongoOutbox:
    def __init__(self, collections: dict[str, _Collection[Any]]) -> None:
        self._collections = collections

    async def pending(self, limit: int = 100, *, sources: Collection[str] | None = None) -> list[OutboxEntry]:
        entries: list[OutboxEntry] = []
        for name, collection in self._collections.items():
            if sources is not None and name not in sources:
                continue
            for model in await collection.many({"_pending": True}, limit=limit):
                doc_id = model.image_id if isinstance(model, Consensus) else model.id
                entries.extend(OutboxEntry(name, doc_id, event) for event in model.outbox)
        return entries[:limit]

    async def mark_published(self, entry: OutboxEntry) -> None:
        event_id = entry.event.payload.get("event_id")

        def change(model: Any) -> tuple[Any, None]:
            kept = [e for e in model.outbox if e.payload.get("event_id") != event_id]
            if len(kept) == len(model.outbox):
                return None, None
            return model.model_copy(update={"outbox": kept}), None

        await self._collections[entry.collection].update(entry.document_id, change, None)

    async def mark_published_many(self, entries: Sequence[OutboxEntry]) -> None:
        # No multi-document transaction: each document's events are cleared in one update, a
        # collection's documents in one batch (its round trips do not grow with the batch).
        published: dict[str, dict[str, set[object]]] = {}
        for entry in entries:
            by_doc = published.setdefault(entry.collection, {})
            by_doc.setdefault(entry.document_id, set()).add(entry.event.payload.get("event_id"))

        def clearing(event_ids: set[object]) -> Callable[[Any], Any]:
            def change(model: Any) -> Any:
                kept = [e for e in model.outbox if e.payload.get("event_id") not in event_ids]
                return None if len(kept) == len(model.outbox) else model.model_copy(update={"outbox": kept})

            return change

        for collection, by_doc in published.items():
            await self._collections[collection].update_many({d: clearing(ids) for d, ids in by_doc.items()})


COUNTER_SHARDS = 8
"""A task's counters are spread over this many documents (by image), so that concurrent changes of
different images rarely contend for one document; readers add them up."""


class MongoCounters:
    """:class:`crowdseg.ports.CounterRepository` for MongoDB, kept by the collections' write methods.

    Each change is one :meth:`MongoStore.mutate` of a counter document right after the document's own
    write: atomic and never lost under concurrency, and skipped with the write on a retry or a
    redelivery (the write changes nothing then). Not covered: a process that dies between the two
    writes, or a store that fails right between them, leaves that one change uncounted until
    :meth:`rebuild` (logged; the document's own write stands).
    """

    def __init__(self, store: MongoStore) -> None:
        self._store = store
        self.shards = _CounterShards(store, "task_counters", TaskCounters)
        self.tallies = _Tallies(store, "tallies", Tally)

    @staticmethod
    def shard(task_id: str, key: str) -> str:
        return f"{task_id}/{zlib.crc32(key.encode()) % COUNTER_SHARDS}"

    async def create(self, task_id: str) -> None:
        for number in range(COUNTER_SHARDS):
            with suppress(DuplicateKeyError):
                await self.shards.insert(f"{task_id}/{number}", TaskCounters(task_id=task_id))

    async def _guarded(self, what: str, task_id: str, change: Awaitable[Any]) -> None:
        try:
            await change
        except Unavailable:
            log.exception("the counters of task %s missed %s; rebuild them (store.counters.rebuild)", task_id, what)

    async def cover(self, task_id: str, image_id: str, before: int | None, after: int | None) -> None:
        """One image went from ``before`` submitters to ``after`` (None: not there)."""

        def change(counters: TaskCounters) -> tuple[TaskCounters, None]:
            counters.move(before, after)
            return counters, None

        # A task from before the counters has no shards: nothing to count until it is rebuilt.
        await self._guarded("an image", task_id, self.shards.update(self.shard(task_id, image_id), change, None))

    async def submitted(self, submission: Submission) -> None:
        await self._guarded(
            "a submission",
            submission.task_id,
            self._tally(submission.task_id, submission.user_id, lambda t: t.add_submission(submission)),
        )

    async def replaced(self, new: Consensus, old: Consensus | None) -> None:
        task_id = new.task_id
        if old is None:

            def change(counters: TaskCounters) -> tuple[TaskCounters, None]:
                counters.consensus_images += 1
                return counters, None

            shard = self.shard(task_id, new.image_id)
            await self._guarded("a consensus", task_id, self.shards.update(shard, change, None))
        scores: dict[str, list[tuple[RaterScore, int]]] = {}
        for consensus, sign in ((old, -1), (new, 1)):
            for score in consensus.raters if consensus is not None else []:
                scores.setdefault(score.user_id, []).append((score, sign))
        for user_id, changes in sorted(scores.items()):

            def apply(tally: Tally, changes: list[tuple[RaterScore, int]] = changes) -> None:
                for score, sign in changes:
                    tally.add_score(score, sign)

            await self._guarded("a consensus", task_id, self._tally(task_id, user_id, apply))

    async def _tally(self, task_id: str, user_id: str, apply: Callable[[Tally], None]) -> None:
        doc_id = f"{task_id}/{user_id}"
        seen = [False]

        def change(tally: Tally) -> tuple[Tally, None]:
            seen[0] = True
            apply(tally)
            return tally, None

        await self.tallies.update(doc_id, change, None)
        if seen[0]:
            return
        fresh = Tally(task_id=task_id, user_id=user_id)
        apply(fresh)
        try:
            await self.tallies.insert(doc_id, fresh)
        except DuplicateKeyError:  # another writer created it meanwhile
            await self.tallies.update(doc_id, change, None)

    async def task(self, task_id: str) -> TaskCounters | None:
        return (await self.tasks([task_id])).get(task_id)

    async def tasks(self, task_ids: Collection[str]) -> dict[str, TaskCounters]:
        found: dict[str, TaskCounters] = {}
        for shard in await self.shards.many({"task_id": {"$in": sorted(set(task_ids))}}):
            known = found.get(shard.task_id)
            found[shard.task_id] = shard if known is None else known.merged(shard)
        return {task_id: counters.merged(TaskCounters(task_id=task_id)) for task_id, counters in found.items()}

    async def tallies_for_task(self, task_id: str) -> list[Tally]:
        return await self.tallies.many({"task_id": task_id}, sort=[("user_id", ASCENDING)])

    async def tallies_for_user(self, user_id: str) -> list[Tally]:
        return await self.tallies.many({"user_id": user_id}, sort=[("task_id", ASCENDING)])

    async def rebuild(self, task_id: str) -> TaskCounters:
        """Recompute from the documents. Changes made while it runs may be missed: run it when the
        task is quiet (it runs on open for tasks without counters)."""
        store = self._store
        counters, tallies = rebuild(
            task_id,
            await store.images.many({"task_id": task_id, "tutorial": False}),
            await store.submissions.list_for_task(task_id),
            await store.consensus.list_for_task(task_id),
        )
        with translate():
            await self.shards.coll.delete_many({"task_id": task_id})
            await self.tallies.coll.delete_many({"task_id": task_id})
        for number in range(COUNTER_SHARDS):
            shard = counters if number == 0 else TaskCounters(task_id=task_id)
            with suppress(DuplicateKeyError):  # a concurrent rebuild: either result is the documents' count
                await self.shards.insert(f"{task_id}/{number}", shard)
        for tally in tallies:
            with suppress(DuplicateKeyError):
                await self.tallies.insert(f"{task_id}/{tally.user_id}", tally)
        return counters

    async def rebuild_missing(self) -> int:
        """Counters for every task that has none (data from before counters existed)."""
        with translate():
            counted = set(await self.shards.coll.distinct("task_id"))
            task_ids = [str(task_id) for task_id in await self._store.tasks.coll.distinct("_id")]
        missing = [task_id for task_id in task_ids if task_id not in counted]
        for task_id in missing:
            await self.rebuild(task_id)
        return len(missing)


class _CounterShards(_Collection[TaskCounters]):
    fields = frozenset({"task_id"})


class _Tallies(_Collection[Tally]):
    fields = frozenset({"task_id", "user_id"})


class MongoMeta:
    def __init__(self, store: MongoStore) -> None:
        self._store = store

    @staticmethod
    def _id(key: str) -> str:
        return f"value:{key}"  # beside the markers (first-user) in the same collection

    async def get(self, key: str) -> str | None:
        with translate():
            doc = await self._store.database[META].find_one({"_id": self._id(key)})
        return None if doc is None else str(doc["value"])

    async def put(self, key: str, value: str) -> None:
        with translate():
            await self._store.database[META].replace_one({"_id": self._id(key)}, {"value": value}, upsert=True)


async def _encode_creation_times(store: MongoStore) -> None:
    """Users and tasks get ``created``, the keyset of their pages (documents from before paging)."""
    for collection in (store.users, store.tasks):
        with translate():
            legacy = [doc["_id"] async for doc in collection.coll.find({"created": {"$exists": False}}, {"_id": 1})]
        for doc_id in legacy:
            await collection.update(str(doc_id), lambda model: (model, None), None)  # re-encoded with it


async def _drop_crowd_only_scores(store: MongoStore) -> None:
    """Rater ``quality`` was the crowd-only score of points, lines and polygons (not within 0–1); it is
    now the agreement of crowdseg.consensus.quality, which carries a ``quality_basis``: scores without
    one lose their quality, and the tallies of the tasks concerned are rebuilt from the documents."""

    def dropped(consensus: Consensus) -> tuple[Consensus | None, None]:
        stale = [r for r in consensus.raters if r.quality is not None and r.quality_basis is None]
        if not stale:
            return None, None
        consensus.raters = [
            r.model_copy(update={"quality": None}) if r.quality_basis is None else r for r in consensus.raters
        ]
        return consensus, None

    tasks: set[str] = set()
    for consensus in await store.consensus.many({}):
        if any(r.quality is not None and r.quality_basis is None for r in consensus.raters):
            await store.consensus.update(consensus.image_id, dropped, None)
            tasks.add(consensus.task_id)
    for task_id in sorted(tasks):
        await store.counters.rebuild(task_id)
    with translate():  # the next reconciliation recomputes every image (its scores)
        await store.database[META].delete_one({"_id": MongoMeta._id(CONSENSUS_RECONCILED)})


STEPS: list[Step[Callable[[MongoStore], Awaitable[None]]]] = [
    Step(2, "users and tasks without their paging key get it (it ran at every start before)", _encode_creation_times),
    Step(3, "rater quality becomes agreement in 0–1: the crowd-only scores are dropped", _drop_crowd_only_scores),
]
"""Each runs after the indexes of this code are created."""


class MongoStore:
    """Implements :class:`crowdseg.ports.Store` on a MongoDB-protocol server."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        timeout_ms: int = 5000,
        guard_stale_seconds: float = 30.0,
        atomic_updates: bool | None = None,
    ) -> None:
        """``atomic_updates``: whether the server applies a filtered single-document update atomically
        (MongoDB does; FerretDB v1 does not, on SQLite or PostgreSQL). True: :meth:`mutate` is a plain
        compare-and-set on ``_rev``; False: it takes a guard document first; None (the default): ask
        the server on :meth:`open` (FerretDB answers ``buildInfo`` with a ``ferretdbVersion``).
        """
        self.url = url
        self.database_name = database
        self.timeout_ms = timeout_ms
        self.guard_stale_seconds = guard_stale_seconds
        self.atomic_updates_setting = atomic_updates
        self.atomic_updates = bool(atomic_updates)
        """The mode :meth:`mutate` uses, known once the store is open."""
        self.busy_seconds = 30.0
        self._client: AsyncMongoClient[Doc] | None = None
        self.users = MongoUsers(self, "users", User)
        self.tasks = MongoTasks(self, "tasks", Task)
        self.images = MongoImages(self, "images", Image)
        self.submissions = MongoSubmissions(self, "submissions", Submission)
        self.consensus = MongoConsensus(self, "consensus", Consensus)
        self.attempts = MongoAttempts(self, "attempts", QualificationAttempt)
        self.exports = MongoExports(self, "exports", Export)
        self.counters = MongoCounters(self)
        self.meta = MongoMeta(self)
        self.links = MongoStudyLinks(self, "study_links", StudyLink)
        self.link_workers = MongoLinkWorkers(self, "link_workers", LinkWorker)
        self.invitations = MongoInvitations(self, "invitations", Invitation)
        self.outbox = MongoOutbox(
            {
                "images": self.images,
                "submissions": self.submissions,
                "consensus": self.consensus,
                "exports": self.exports,
            }
        )

    @property
    def database(self) -> AsyncDatabase[Doc]:
        if self._client is None:
            raise Unavailable("the document store is not open")
        return self._client[self.database_name]

    async def open(self) -> None:
        client: AsyncMongoClient[Doc] = AsyncMongoClient(
            self.url,
            serverSelectionTimeoutMS=self.timeout_ms,
            connectTimeoutMS=self.timeout_ms,
            w="majority",
        )
        self._client = client
        try:
            with translate():
                await client.admin.command("ping")
                if self.atomic_updates_setting is None:
                    info = await client.admin.command("buildInfo")
                    self.atomic_updates = "ferretdbVersion" not in info
                found, written_by = await self._stored_schema()
                steps = [] if found is None else plan(STEPS, found, where=self._where(), written_by=written_by)
                await self._create_indexes()
            for step in steps:
                announce(step, self._where())
                await step.run(self)
            if found != SCHEMA_VERSION:
                await self._record_schema()
                if found is not None:
                    log.info("%s: upgraded from schema %d to %d", self._where(), found, SCHEMA_VERSION)
            await self.counters.rebuild_missing()
        except Unavailable as exc:
            await self.close()
            raise Unavailable(f"cannot open the document store: {exc.detail}") from exc
        except SchemaTooNew:
            await self.close()
            raise

    def _where(self) -> str:
        return f"the database {self.database_name}"

    async def _stored_schema(self) -> tuple[int | None, str | None]:
        """The recorded schema version and the release that recorded it; None for a new database."""
        recorded = await self.database[META].find_one({"_id": SCHEMA})
        if recorded is not None:
            return int(recorded["version"]), recorded.get("written_by")
        names = set(await self.database.list_collection_names())
        return (UNVERSIONED if names & set(INDEXES) else None), None

    async def _record_schema(self) -> None:
        with translate():
            await self.database[META].replace_one(
                {"_id": SCHEMA}, {"version": SCHEMA_VERSION, "written_by": crowdseg.__version__}, upsert=True
            )

    async def _create_indexes(self) -> None:
        for name, indexes in INDEXES.items():
            for keys, unique in indexes:
                await self.database[name].create_index(keys, unique=unique)

    async def ping(self) -> None:
        with translate():
            await self.database.command("ping")

    async def durable(self) -> None:
        """Nothing to wait for: every write was acknowledged by a majority (``w="majority"``)."""

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # ------------------------------------------------------------------ single-document primitives
    async def claim_marker(self, name: str, owner: str) -> bool:
        """True if this call created the marker ``name`` (a unique insert; exactly one caller wins)."""
        try:
            with translate():
                await self.database[META].insert_one({"_id": name, "owner": owner})
        except DuplicateKeyError:
            return False
        return True

    async def release_marker(self, name: str, owner: str) -> None:
        with translate():
            await self.database[META].delete_one({"_id": name, "owner": owner})

    async def mutate(self, coll: AsyncCollection[Doc], doc_id: str, change: Callable[[Doc], Doc | None]) -> None:
        """Read-modify-write one document so that no concurrent change is lost.

        ``change`` gets the stored document and returns the new one (or None to leave it); it may
        run more than once when writers contend. Raises :class:`Unavailable` if the document stays
        busy for ``busy_seconds``.
        """
        deadline = time.monotonic() + self.busy_seconds
        for attempt in range(1_000_000):
            done = await self._mutate_once(coll, doc_id, change, check_stale=attempt % 10 == 9)
            if done:
                return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))
        raise Unavailable(f"{coll.name}/{doc_id} stayed busy; retry")

    async def mutate_many(self, coll: AsyncCollection[Doc], changes: Mapping[str, Callable[[Doc], Doc | None]]) -> None:
        """:meth:`mutate` of several documents in a constant number of round trips.

        One read of them all, then (without atomic updates) one insert of all their guards, a
        compare-and-set per document (all at once) and one delete of the guards: three round trips
        for the batch and one per document, instead of four per document. A document whose guard or
        compare-and-set a concurrent writer won falls back to :meth:`mutate` on its own, so nothing
        is lost under contention.
        """
        if not changes:
            return
        with translate():
            docs = {str(doc["_id"]): doc async for doc in coll.find({"_id": {"$in": list(changes)}})}
        replacements: dict[str, tuple[int, Doc]] = {}
        for doc_id, doc in docs.items():
            new = changes[doc_id](doc)
            if new is not None:
                rev = int(doc.get("_rev", 0))
                replacements[doc_id] = (rev, {**new, "_id": doc_id, "_rev": rev + 1})
        if not replacements:
            return
        written = await self._replace_guarded(coll, replacements)
        left = [doc_id for doc_id in replacements if doc_id not in written]
        slots = asyncio.Semaphore(UPDATES_AT_ONCE)

        async def one(doc_id: str) -> None:
            async with slots:
                await self.mutate(coll, doc_id, changes[doc_id])

        await asyncio.gather(*(one(doc_id) for doc_id in left))

    async def _replace_guarded(
        self, coll: AsyncCollection[Doc], replacements: Mapping[str, tuple[int, Doc]]
    ) -> set[str]:
        """Compare-and-set every ``{doc_id: (rev, replacement)}``, under guards taken in one insert;
        returns the ids written."""
        guards = self.database[GUARDS]
        token = uuid.uuid4().hex
        held = list(replacements)
        names = [f"{coll.name}/{doc_id}/{replacements[doc_id][0]}" for doc_id in held]
        slots = asyncio.Semaphore(UPDATES_AT_ONCE)

        async def replace(doc_id: str) -> bool:
            rev, replacement = replacements[doc_id]
            async with slots:
                replaced = await _busy_retried(lambda: coll.replace_one({"_id": doc_id, "_rev": rev}, replacement))
                return replaced.matched_count == 1

        with translate():
            try:
                if not self.atomic_updates:
                    held = await self._acquire_many(names, held, token)
                # One compare-and-set per document, all at once: only its own answer tells whether it won.
                won = await asyncio.gather(*(replace(doc_id) for doc_id in held))
                return {doc_id for doc_id, ok in zip(held, won, strict=True) if ok}
            finally:
                if not self.atomic_updates:
                    await _busy_retried(lambda: guards.delete_many({"_id": {"$in": names}, "token": token}))

    async def _acquire_many(self, names: list[str], doc_ids: list[str], token: str) -> list[str]:
        """Take the guards ``names`` (of ``doc_ids``) in one insert; returns the documents whose guard was taken."""
        guards = [{"_id": name, "token": token, "at": time.time()} for name in names]
        try:
            await _busy_retried(lambda: self.database[GUARDS].insert_many(guards, ordered=False))
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            # Refused: guards another writer holds, and (FerretDB on SQLite) inserts it found busy.
            lost = [e for e in errors if e.get("code") != DUPLICATE_KEY and "SQLITE_BUSY" not in str(e.get("errmsg"))]
            if lost or exc.details.get("writeConcernErrors"):
                raise Unavailable(f"document store error: {(lost or [exc.details])[0]}") from exc
            refused = {int(error["index"]) for error in errors}
            return [doc_id for index, doc_id in enumerate(doc_ids) if index not in refused]
        return doc_ids

    async def _mutate_once(
        self, coll: AsyncCollection[Doc], doc_id: str, change: Callable[[Doc], Doc | None], *, check_stale: bool
    ) -> bool:
        with translate():
            doc = await coll.find_one({"_id": doc_id})
            if doc is None:
                return True
            rev = int(doc.get("_rev", 0))
            new = change(doc)
            if new is None:
                return True
            replacement = {**new, "_id": doc_id, "_rev": rev + 1}
            if self.atomic_updates:  # the server evaluates the filter and writes in one step
                return (await coll.replace_one({"_id": doc_id, "_rev": rev}, replacement)).matched_count == 1
            guard = f"{coll.name}/{doc_id}/{rev}"
            guards = self.database[GUARDS]
            token = await self._acquire(guard, check_stale=check_stale)
            if token is None:
                return False
            try:
                # Nobody else moves the document from ``rev`` while we hold its guard, so the filter
                # cannot race here; it only refuses a guard won after its previous holder had written.
                replaced = await _busy_retried(lambda: coll.replace_one({"_id": doc_id, "_rev": rev}, replacement))
                return replaced.matched_count == 1
            finally:
                await _busy_retried(lambda: guards.delete_one({"_id": guard, "token": token}))

    async def _acquire(self, guard: str, *, check_stale: bool) -> str | None:
        token = uuid.uuid4().hex
        guards = self.database[GUARDS]
        try:
            await _busy_retried(lambda: guards.insert_one({"_id": guard, "token": token, "at": time.time()}))
        except DuplicateKeyError:
            if not check_stale:  # usually another writer is at work; look for a dead one now and then
                return None
            held = await guards.find_one({"_id": guard})
            if held is not None and time.time() - float(held.get("at", 0)) > self.guard_stale_seconds:
                # its writer died between taking the guard and writing: free it for the next attempt
                await guards.delete_one({"_id": guard, "token": held.get("token")})
            return None
        return token
