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
import random
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Generic, TypeVar

from crowdseg.domain import (
    Consensus,
    Export,
    Image,
    Lease,
    QualificationAttempt,
    Role,
    Submission,
    Task,
    User,
)
from crowdseg.errors import Conflict, Unavailable
from crowdseg.ports import OutboxEntry
from pydantic import BaseModel
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
Doc = dict[str, Any]

GUARDS = "_guards"
META = "_meta"
FIRST_USER = "first-user"

ALREADY_ANNOTATED = "you have already annotated this image; ask for the next one"

INDEXES: dict[str, list[tuple[list[tuple[str, int]], bool]]] = {
    "users": [([("email", ASCENDING)], True)],
    "tasks": [],
    "images": [([("task_id", ASCENDING), ("name", ASCENDING)], True), ([("_pending", ASCENDING)], False)],
    "submissions": [
        # One submission per user per image, whichever annotate replica accepts it.
        ([("image_id", ASCENDING), ("user_id", ASCENDING)], True),
        ([("task_id", ASCENDING)], False),
        ([("user_id", ASCENDING)], False),
        ([("_pending", ASCENDING)], False),
    ],
    "consensus": [([("task_id", ASCENDING)], False), ([("_pending", ASCENDING)], False)],
    "attempts": [([("task_id", ASCENDING), ("user_id", ASCENDING)], False)],
    "exports": [([("status", ASCENDING)], False), ([("_pending", ASCENDING)], False)],
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

    async def replace_doc(self, doc_id: str, model: M) -> None:
        await self.update(doc_id, lambda _: (model, None), None)


class MongoUsers(_Collection[User]):
    fields = frozenset({"email"})

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


class MongoTasks(_Collection[Task]):
    async def add(self, task: Task) -> None:
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


class MongoImages(_Collection[Image]):
    fields = frozenset({"task_id", "name", "tutorial"})

    async def add(self, image: Image) -> bool:
        try:
            await self.insert(image.id, image)
        except DuplicateKeyError:
            return False
        return True

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
            if user_id in image.submitted_by:
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


class MongoSubmissions(_Collection[Submission]):
    fields = frozenset({"task_id", "image_id", "user_id"})

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


class MongoConsensus(_Collection[Consensus]):
    fields = frozenset({"task_id", "submissions"})

    async def get(self, image_id: str) -> Consensus | None:
        return await self.one({"_id": image_id})

    async def save_if_newer(self, consensus: Consensus) -> bool:
        try:
            await self.insert(consensus.image_id, consensus)
            return True
        except DuplicateKeyError:
            pass

        def change(stored: Consensus) -> tuple[Consensus | None, bool]:
            if consensus.submissions > stored.submissions:
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
                await self._create_indexes()
        except Unavailable as exc:
            await self.close()
            raise Unavailable(f"cannot open the document store: {exc.detail}") from exc

    async def _create_indexes(self) -> None:
        for name, indexes in INDEXES.items():
            for keys, unique in indexes:
                await self.database[name].create_index(keys, unique=unique)

    async def ping(self) -> None:
        with translate():
            await self.database.command("ping")

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
            token = await self._acquire(guard, check_stale=check_stale)
            if token is None:
                return False
            try:
                # Nobody else moves the document from ``rev`` while we hold its guard, so the filter
                # cannot race here; it only refuses a guard won after its previous holder had written.
                return (await coll.replace_one({"_id": doc_id, "_rev": rev}, replacement)).matched_count == 1
            finally:
                await self.database[GUARDS].delete_one({"_id": guard, "token": token})

    async def _acquire(self, guard: str, *, check_stale: bool) -> str | None:
        token = uuid.uuid4().hex
        guards = self.database[GUARDS]
        try:
            await guards.insert_one({"_id": guard, "token": token, "at": time.time()})
        except DuplicateKeyError:
            if not check_stale:  # usually another writer is at work; look for a dead one now and then
                return None
            held = await guards.find_one({"_id": guard})
            if held is not None and time.time() - float(held.get("at", 0)) > self.guard_stale_seconds:
                # its writer died between taking the guard and writing: free it for the next attempt
                await guards.delete_one({"_id": guard, "token": held.get("token")})
            return None
        return token
