"""The embedded profile's document store: one SQLite file in the data directory.

Each collection is a table of JSON documents with the few columns lookups need. Every method
runs its SQL without yielding to the event loop, so each is atomic with respect to the other
coroutines of the process; the embedded profile is one process.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

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
from crowdseg.errors import Conflict, Unavailable
from crowdseg.ports import OutboxEntry
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL, name TEXT NOT NULL, tutorial INTEGER NOT NULL,
  pending INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL, UNIQUE (task_id, name));
CREATE TABLE IF NOT EXISTS submissions (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL, image_id TEXT NOT NULL, user_id TEXT NOT NULL,
  pending INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS submissions_one_per_user ON submissions (image_id, user_id);
CREATE INDEX IF NOT EXISTS submissions_by_task ON submissions (task_id);
CREATE INDEX IF NOT EXISTS submissions_by_user ON submissions (user_id);
CREATE TABLE IF NOT EXISTS consensus (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL, submissions INTEGER NOT NULL,
  pending INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS consensus_by_task ON consensus (task_id);
CREATE TABLE IF NOT EXISTS attempts (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL, user_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_by_user ON attempts (task_id, user_id);
CREATE TABLE IF NOT EXISTS exports (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL, pending INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
"""

OUTBOX_TABLES: dict[str, type[BaseModel]] = {
    "images": Image,
    "submissions": Submission,
    "consensus": Consensus,
    "exports": Export,
}


def _dump(model: BaseModel) -> str:
    return model.model_dump_json()


def _has_outbox(model: BaseModel) -> int:
    return int(bool(getattr(model, "outbox", None)))


class _Table(Generic[M]):
    def __init__(self, store: SqliteStore, table: str, model: type[M]) -> None:
        self._store = store
        self.table = table
        self.model = model

    @property
    def db(self) -> sqlite3.Connection:
        return self._store.connection

    def load(self, row: tuple[str] | None) -> M | None:
        return None if row is None else self.model.model_validate_json(row[0])

    def one(self, where: str, *args: Any) -> M | None:
        with self._store.translate():
            row = self.db.execute(f"SELECT doc FROM {self.table} WHERE {where}", args).fetchone()
        return self.load(row)

    def many(self, where: str = "1", *args: Any, order: str = "rowid") -> list[M]:
        with self._store.translate():
            rows = self.db.execute(f"SELECT doc FROM {self.table} WHERE {where} ORDER BY {order}", args).fetchall()
        return [self.model.model_validate_json(row[0]) for row in rows]

    def write(self, sql: str, *args: Any) -> int:
        with self._store.translate(), self.db:
            return self.db.execute(sql, args).rowcount

    def replace_doc(self, doc_id: str, model: BaseModel) -> None:
        pending = f", pending = {_has_outbox(model)}" if self.table in OUTBOX_TABLES else ""
        self.write(f"UPDATE {self.table} SET doc = ?{pending} WHERE id = ?", _dump(model), doc_id)


class SqliteUsers(_Table[User]):
    async def add(self, user: User) -> User:
        with self._store.translate(), self.db:
            if self.db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is None:
                user = user.model_copy(update={"roles": [Role.ADMIN, Role.TASKMASTER, Role.ANNOTATOR]})
            try:
                self.db.execute(
                    "INSERT INTO users (id, email, doc) VALUES (?, ?, ?)", (user.id, user.email, _dump(user))
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict("an account with this email already exists") from exc
        return user

    async def get(self, user_id: str) -> User | None:
        return self.one("id = ?", user_id)

    async def by_email(self, email: str) -> User | None:
        return self.one("email = ?", email)

    async def all(self) -> list[User]:
        return self.many()

    async def set_roles(self, user_id: str, roles: list[Role]) -> User | None:
        user = self.one("id = ?", user_id)
        if user is None:
            return None
        user = user.model_copy(update={"roles": roles})
        self.replace_doc(user_id, user)
        return user


class SqliteTasks(_Table[Task]):
    async def add(self, task: Task) -> None:
        self.write("INSERT INTO tasks (id, doc) VALUES (?, ?)", task.id, _dump(task))

    async def get(self, task_id: str) -> Task | None:
        return self.one("id = ?", task_id)

    async def all(self) -> list[Task]:
        return self.many()

    async def replace(self, task: Task) -> None:
        self.replace_doc(task.id, task)

    async def add_member(self, task_id: str, user_id: str) -> None:
        task = self.one("id = ?", task_id)
        if task is not None and user_id not in task.members:
            self.replace_doc(task_id, task.model_copy(update={"members": [*task.members, user_id]}))


class SqliteImages(_Table[Image]):
    async def add(self, image: Image) -> bool:
        try:
            self.write(
                "INSERT INTO images (id, task_id, name, tutorial, pending, doc) VALUES (?, ?, ?, ?, ?, ?)",
                image.id,
                image.task_id,
                image.name,
                int(image.tutorial),
                _has_outbox(image),
                _dump(image),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    async def get(self, image_id: str) -> Image | None:
        return self.one("id = ?", image_id)

    async def list_for_task(self, task_id: str, *, tutorial: bool | None = False) -> list[Image]:
        if tutorial is None:
            return self.many("task_id = ?", task_id, order="name")
        return self.many("task_id = ? AND tutorial = ?", task_id, int(tutorial), order="name")

    async def try_lease(
        self, image_id: str, user_id: str, *, replicates: int, now: datetime, expires_at: datetime
    ) -> bool:
        from crowdseg.domain import Lease

        image = self.one("id = ?", image_id)
        if image is None or user_id in image.submitted_by:
            return False
        others = [lease for lease in image.active_leases(now) if lease.user_id != user_id]
        if len(image.submitted_by) + len(others) >= replicates:
            return False
        leases = [*others, Lease(user_id=user_id, expires_at=expires_at)]
        self.replace_doc(image_id, image.model_copy(update={"leases": leases}))
        return True

    async def claim_slot(self, image_id: str, user_id: str, *, replicates: int, now: datetime) -> bool:
        image = self.one("id = ?", image_id)
        if image is None:
            return False
        if user_id in image.submitted_by:
            return True
        active = image.active_leases(now)
        holds_lease = any(lease.user_id == user_id for lease in active)
        others = [lease for lease in active if lease.user_id != user_id]
        if not holds_lease and len(image.submitted_by) + len(others) >= replicates:
            return False
        update = {"submitted_by": [*image.submitted_by, user_id], "leases": others}
        self.replace_doc(image_id, image.model_copy(update=update))
        return True

    async def record_submitter(self, image_id: str, user_id: str) -> None:
        image = self.one("id = ?", image_id)
        if image is not None and user_id not in image.submitted_by:
            update = {"submitted_by": [*image.submitted_by, user_id]}
            self.replace_doc(image_id, image.model_copy(update=update))


class SqliteSubmissions(_Table[Submission]):
    async def add(self, submission: Submission) -> tuple[Submission, bool]:
        try:
            self.write(
                "INSERT INTO submissions (id, task_id, image_id, user_id, pending, doc) VALUES (?, ?, ?, ?, ?, ?)",
                submission.id,
                submission.task_id,
                submission.image_id,
                submission.user_id,
                _has_outbox(submission),
                _dump(submission),
            )
        except sqlite3.IntegrityError:
            stored = self.one("id = ?", submission.id)
            if stored is None:  # not a retry: the user already has a submission for this image
                raise Conflict("you have already annotated this image; ask for the next one") from None
            return stored, False
        return submission, True

    async def get(self, submission_id: str) -> Submission | None:
        return self.one("id = ?", submission_id)

    async def list_for_image(self, image_id: str) -> list[Submission]:
        return self.many("image_id = ?", image_id)

    async def list_for_task(self, task_id: str) -> list[Submission]:
        return self.many("task_id = ?", task_id)

    async def list_for_user(self, user_id: str) -> list[Submission]:
        return self.many("user_id = ?", user_id)

    async def count_by_image(self, task_id: str) -> dict[str, int]:
        with self._store.translate():
            rows = self.db.execute(
                "SELECT image_id, COUNT(*) FROM submissions WHERE task_id = ? GROUP BY image_id", (task_id,)
            ).fetchall()
        return {image_id: count for image_id, count in rows}


class SqliteConsensus(_Table[Consensus]):
    async def get(self, image_id: str) -> Consensus | None:
        return self.one("id = ?", image_id)

    async def save_if_newer(self, consensus: Consensus) -> bool:
        with self._store.translate(), self.db:
            cursor = self.db.execute(
                "INSERT INTO consensus (id, task_id, submissions, pending, doc) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET submissions = excluded.submissions, pending = excluded.pending, "
                "doc = excluded.doc WHERE excluded.submissions > consensus.submissions",
                (
                    consensus.image_id,
                    consensus.task_id,
                    consensus.submissions,
                    _has_outbox(consensus),
                    _dump(consensus),
                ),
            )
            return cursor.rowcount > 0

    async def list_for_task(self, task_id: str) -> list[Consensus]:
        return self.many("task_id = ?", task_id)


class SqliteAttempts(_Table[QualificationAttempt]):
    async def add(self, attempt: QualificationAttempt) -> None:
        self.write(
            "INSERT INTO attempts (id, task_id, user_id, doc) VALUES (?, ?, ?, ?)",
            attempt.id,
            attempt.task_id,
            attempt.user_id,
            _dump(attempt),
        )

    async def list_for(self, task_id: str, user_id: str) -> list[QualificationAttempt]:
        return self.many("task_id = ? AND user_id = ?", task_id, user_id)


class SqliteExports(_Table[Export]):
    async def add(self, export: Export) -> None:
        self.write(
            "INSERT INTO exports (id, task_id, pending, doc) VALUES (?, ?, ?, ?)",
            export.id,
            export.task_id,
            _has_outbox(export),
            _dump(export),
        )

    async def get(self, export_id: str) -> Export | None:
        return self.one("id = ?", export_id)

    async def replace(self, export: Export) -> None:
        self.replace_doc(export.id, export)

    async def unfinished(self) -> list[Export]:
        return self.many("json_extract(doc, '$.status') IN ('queued', 'running')")


class SqliteOutbox:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def pending(self, limit: int = 100, *, sources: Collection[str] | None = None) -> list[OutboxEntry]:
        entries: list[OutboxEntry] = []
        with self._store.translate():
            for table in OUTBOX_TABLES:
                if sources is not None and table not in sources:
                    continue
                rows = self._store.connection.execute(
                    f"SELECT id, doc FROM {table} WHERE pending = 1 LIMIT ?", (limit,)
                ).fetchall()
                for doc_id, doc in rows:
                    for event in json.loads(doc).get("outbox", []):
                        entries.append(OutboxEntry(table, doc_id, PendingEvent.model_validate(event)))
        return entries[:limit]

    async def mark_published(self, entry: OutboxEntry) -> None:
        db = self._store.connection
        with self._store.translate(), db:
            row = db.execute(f"SELECT doc FROM {entry.collection} WHERE id = ?", (entry.document_id,)).fetchone()
            if row is None:
                return
            doc = json.loads(row[0])
            event_id = entry.event.payload.get("event_id")
            doc["outbox"] = [e for e in doc.get("outbox", []) if e["payload"].get("event_id") != event_id]
            db.execute(
                f"UPDATE {entry.collection} SET doc = ?, pending = ? WHERE id = ?",
                (json.dumps(doc), int(bool(doc["outbox"])), entry.document_id),
            )


class SqliteStore:
    """Implements :class:`crowdseg.ports.Store` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self.users = SqliteUsers(self, "users", User)
        self.tasks = SqliteTasks(self, "tasks", Task)
        self.images = SqliteImages(self, "images", Image)
        self.submissions = SqliteSubmissions(self, "submissions", Submission)
        self.consensus = SqliteConsensus(self, "consensus", Consensus)
        self.attempts = SqliteAttempts(self, "attempts", QualificationAttempt)
        self.exports = SqliteExports(self, "exports", Export)
        self.outbox = SqliteOutbox(self)

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise Unavailable("the document store is not open")
        return self._connection

    @contextmanager
    def translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise Unavailable(f"document store error: {exc}") from exc

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA busy_timeout = 5000")
            connection.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"cannot open the document store at {self.path}: {exc}") from exc
        self._connection = connection

    async def ping(self) -> None:
        with self.translate():
            self.connection.execute("SELECT 1").fetchone()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
