"""The embedded profile's document store: one SQLite file in the data directory.

Each collection is a table of JSON documents with the few columns lookups need. Every method
runs its SQL without yielding to the event loop, so each is atomic with respect to the other
coroutines of the process; the embedded profile is one process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import crowdseg
from crowdseg.adapters.group_sync import GroupSync
from crowdseg.adapters.wal_checkpoint import BACKSTOP_PAGES, WalCheckpointer
from crowdseg.counters import Tally, TaskCounters, rebuild
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
    json_time,
)
from crowdseg.errors import Conflict, InvalidInput, Unavailable
from crowdseg.migrations import CONSENSUS_RECONCILED, SCHEMA_VERSION, UNVERSIONED, Step, announce, plan
from crowdseg.ports import Key, OutboxEntry, Page
from pydantic import BaseModel

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
# Reads wait this long inside SQLite for a lock (rare in WAL mode); writes await theirs (SqliteStore.writing).
BUSY_TIMEOUT_MS = 5000
WRITE_LOCK_SECONDS = 5.0
FIRST_LOCK_PAUSE_SECONDS = 0.0002
LAST_LOCK_PAUSE_SECONDS = 0.005

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
CREATE INDEX IF NOT EXISTS submissions_by_created ON submissions (json_extract(doc, '$.created_at'));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consensus (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL, submissions INTEGER NOT NULL,
  pending INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS consensus_by_task ON consensus (task_id);
CREATE TABLE IF NOT EXISTS attempts (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL, user_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_by_user ON attempts (task_id, user_id);
CREATE TABLE IF NOT EXISTS exports (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL, pending INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
-- Reconcile on start looks up the unfinished exports (SqliteExports.unfinished).
CREATE INDEX IF NOT EXISTS exports_by_status ON exports (json_extract(doc, '$.status'));
-- The outbox relay looks for pending documents after every write: without these it scans each table.
CREATE INDEX IF NOT EXISTS images_pending ON images (pending) WHERE pending = 1;
CREATE INDEX IF NOT EXISTS submissions_pending ON submissions (pending) WHERE pending = 1;
CREATE INDEX IF NOT EXISTS consensus_pending ON consensus (pending) WHERE pending = 1;
CREATE INDEX IF NOT EXISTS exports_pending ON exports (pending) WHERE pending = 1;
"""

# Keyset pagination: users and tasks by creation, images by name (ties by id), along these indexes.
# Pydantic writes UTC times as ``...T12:00:00.123456Z``, or ``...T12:00:00Z`` on a whole second, which
# would sort after the fractions of that second: the key fills the fraction in.
CREATED = (
    "CASE WHEN length(doc ->> '$.created_at') = 20 THEN substr(doc ->> '$.created_at', 1, 19) || '.000000Z' "
    "ELSE doc ->> '$.created_at' END"
)
PAGING_SCHEMA = f"""
CREATE INDEX IF NOT EXISTS users_by_creation ON users ({CREATED}, id);
CREATE INDEX IF NOT EXISTS tasks_by_creation ON tasks ({CREATED}, id);
CREATE INDEX IF NOT EXISTS images_page ON images (task_id, tutorial, name, id);
"""

# External crowds and invitations (study links, their workers, invitations to a task), paged per task
# by creation.
CROWDS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS study_links (id TEXT PRIMARY KEY, task_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS study_links_page ON study_links (task_id, {CREATED}, id);
CREATE TABLE IF NOT EXISTS link_workers (
  id TEXT PRIMARY KEY, link_id TEXT NOT NULL, task_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS link_workers_page ON link_workers (task_id, {CREATED}, id);
CREATE TABLE IF NOT EXISTS invitations (id TEXT PRIMARY KEY, task_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS invitations_page ON invitations (task_id, {CREATED}, id);
"""

TALLY_COLUMNS = (
    "submissions", "seconds", "timed", "scored", "tp", "fp", "fn", "tn", "quality_sum", "quality_n",
    "sensitivity_sum", "sensitivity_n", "specificity_sum", "specificity_n",
)  # fmt: skip
SUBMITTERS = "coalesce(json_array_length({row}.doc, '$.submitted_by'), 0)"
RETIRED = "coalesce({row}.doc ->> 'retired', 0)"
_S_OLD, _S_NEW = SUBMITTERS.format(row="OLD"), SUBMITTERS.format(row="NEW")
_R_OLD, _R_NEW = RETIRED.format(row="OLD"), RETIRED.format(row="NEW")


def _scores(*sources: tuple[int, str]) -> str:
    """Per user, the tally changes of the rater scores of consensus documents ``(sign, row)``."""
    rows = " UNION ALL ".join(
        f"SELECT {sign} AS s, value AS v, (value ->> 'tp' IS NOT NULL AND value ->> 'fp' IS NOT NULL "
        f"AND value ->> 'fn' IS NOT NULL) AS c FROM json_each({row}.doc, '$.raters')"
        for sign, row in sources
    )
    return f"""SELECT v ->> 'user_id' AS user_id, SUM(s * c) AS scored,
      SUM(CASE WHEN c THEN s * (v ->> 'tp') ELSE 0 END) AS tp, SUM(CASE WHEN c THEN s * (v ->> 'fp') ELSE 0 END) AS fp,
      SUM(CASE WHEN c THEN s * (v ->> 'fn') ELSE 0 END) AS fn,
      SUM(CASE WHEN c THEN s * coalesce(v ->> 'tn', 0) ELSE 0 END) AS tn,
      SUM(s * coalesce(v ->> 'quality', 0)) AS quality_sum, SUM(s * (v ->> 'quality' IS NOT NULL)) AS quality_n,
      SUM(CASE WHEN c THEN 0 ELSE s * coalesce(v ->> 'sensitivity', 0) END) AS sensitivity_sum,
      SUM(CASE WHEN c THEN 0 ELSE s * (v ->> 'sensitivity' IS NOT NULL) END) AS sensitivity_n,
      SUM(CASE WHEN c THEN 0 ELSE s * coalesce(v ->> 'specificity', 0) END) AS specificity_sum,
      SUM(CASE WHEN c THEN 0 ELSE s * (v ->> 'specificity' IS NOT NULL) END) AS specificity_n
    FROM ({rows}) GROUP BY 1"""


_SCORED = TALLY_COLUMNS[TALLY_COLUMNS.index("scored") :]
_ADD_SCORES = ", ".join(f"{column} = tallies.{column} + r.{column}" for column in _SCORED)


def _tally_scores(*sources: tuple[int, str]) -> str:
    return f"""
  INSERT INTO tallies (task_id, user_id)
    SELECT DISTINCT NEW.task_id, value ->> 'user_id' FROM json_each(NEW.doc, '$.raters') WHERE 1
    ON CONFLICT DO NOTHING;
  UPDATE tallies SET {_ADD_SCORES} FROM ({_scores(*sources)}) AS r
    WHERE tallies.task_id = NEW.task_id AND tallies.user_id = r.user_id;"""


# The counters of crowdseg.counters, kept by triggers in the very statement that changes a document
# (so they are as durable and atomic as the change itself, whichever method makes it). A task's
# counters exist from its creation; for tasks older than the counters, `open` rebuilds them.
# How new a consensus is: the review revisions it saw, its submissions, then the reference and the
# scoring its rater scores used (a consensus after a review replaces one with more submissions; one
# rescored against a newer reference, by newer code or a newer screening, replaces one with as many).
NEWNESS = (
    "(coalesce({row}.doc ->> 'reviews', 0), {row}.submissions, "
    "coalesce({row}.doc ->> 'reference_version', 0), coalesce({row}.doc ->> 'scoring', 0), "
    "coalesce({row}.doc ->> 'screening_revision', 0))"
)
RESCORED = f"{NEWNESS.format(row='NEW')} != {NEWNESS.format(row='OLD')}"
COUNTED = "EXISTS (SELECT 1 FROM task_counters WHERE task_id = NEW.task_id)"
COUNTERS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS task_counters (task_id TEXT PRIMARY KEY, consensus_images INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS task_coverage (
  task_id TEXT NOT NULL, level INTEGER NOT NULL, images INTEGER NOT NULL, PRIMARY KEY (task_id, level)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS task_retired (
  task_id TEXT NOT NULL, level INTEGER NOT NULL, images INTEGER NOT NULL, PRIMARY KEY (task_id, level)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tallies (
  task_id TEXT NOT NULL, user_id TEXT NOT NULL,
  {", ".join(f"{column} NUMERIC NOT NULL DEFAULT 0" for column in TALLY_COLUMNS)},
  PRIMARY KEY (task_id, user_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tallies_by_user ON tallies (user_id);
CREATE TABLE IF NOT EXISTS tally_days (
  task_id TEXT NOT NULL, user_id TEXT NOT NULL, day TEXT NOT NULL, submissions INTEGER NOT NULL,
  PRIMARY KEY (task_id, user_id, day)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tally_days_by_user ON tally_days (user_id);

CREATE TRIGGER IF NOT EXISTS tasks_counted AFTER INSERT ON tasks BEGIN
  INSERT INTO task_counters (task_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER IF NOT EXISTS images_counted_add AFTER INSERT ON images WHEN NOT NEW.tutorial AND {COUNTED} BEGIN
  INSERT INTO task_coverage (task_id, level, images) VALUES (NEW.task_id, {SUBMITTERS.format(row="NEW")}, 1)
    ON CONFLICT (task_id, level) DO UPDATE SET images = images + 1;
END;
CREATE TRIGGER IF NOT EXISTS images_counted_move AFTER UPDATE OF doc ON images
WHEN NOT NEW.tutorial AND {SUBMITTERS.format(row="OLD")} != {SUBMITTERS.format(row="NEW")} AND {COUNTED} BEGIN
  UPDATE task_coverage SET images = images - 1 WHERE task_id = NEW.task_id AND level = {SUBMITTERS.format(row="OLD")};
  INSERT INTO task_coverage (task_id, level, images) VALUES (NEW.task_id, {SUBMITTERS.format(row="NEW")}, 1)
    ON CONFLICT (task_id, level) DO UPDATE SET images = images + 1;
  DELETE FROM task_coverage WHERE task_id = NEW.task_id AND images = 0;
END;
CREATE TRIGGER IF NOT EXISTS images_retired_move AFTER UPDATE OF doc ON images
WHEN NOT NEW.tutorial AND ({_R_OLD} OR {_R_NEW})
  AND ({_R_OLD}, {_S_OLD}) != ({_R_NEW}, {_S_NEW}) AND {COUNTED} BEGIN
  UPDATE task_retired SET images = images - 1 WHERE task_id = NEW.task_id AND level = {_S_OLD} AND {_R_OLD};
  INSERT INTO task_retired (task_id, level, images) SELECT NEW.task_id, {_S_NEW}, 1 WHERE {_R_NEW}
    ON CONFLICT (task_id, level) DO UPDATE SET images = images + 1;
  DELETE FROM task_retired WHERE task_id = NEW.task_id AND images = 0;
END;
CREATE TRIGGER IF NOT EXISTS images_retired_remove AFTER DELETE ON images WHEN NOT OLD.tutorial AND {_R_OLD} BEGIN
  UPDATE task_retired SET images = images - 1 WHERE task_id = OLD.task_id AND level = {_S_OLD};
  DELETE FROM task_retired WHERE task_id = OLD.task_id AND images = 0;
END;
CREATE TRIGGER IF NOT EXISTS images_counted_remove AFTER DELETE ON images WHEN NOT OLD.tutorial BEGIN
  UPDATE task_coverage SET images = images - 1 WHERE task_id = OLD.task_id AND level = {SUBMITTERS.format(row="OLD")};
  DELETE FROM task_coverage WHERE task_id = OLD.task_id AND images = 0;
END;
CREATE TRIGGER IF NOT EXISTS submissions_counted AFTER INSERT ON submissions WHEN {COUNTED} BEGIN
  INSERT INTO tallies (task_id, user_id, submissions, seconds, timed, quality_sum, quality_n)
    VALUES (NEW.task_id, NEW.user_id, 1, coalesce(NEW.doc ->> 'duration_ms', 0) / 1000.0,
            NEW.doc ->> 'duration_ms' IS NOT NULL, coalesce(NEW.doc ->> '$.gold.quality', 0),
            NEW.doc ->> '$.gold.quality' IS NOT NULL)
    ON CONFLICT (task_id, user_id) DO UPDATE SET submissions = submissions + 1,
      seconds = seconds + excluded.seconds, timed = timed + excluded.timed,
      quality_sum = quality_sum + excluded.quality_sum, quality_n = quality_n + excluded.quality_n;
  INSERT INTO tally_days (task_id, user_id, day, submissions)
    VALUES (NEW.task_id, NEW.user_id, substr(NEW.doc ->> 'created_at', 1, 10), 1)
    ON CONFLICT (task_id, user_id, day) DO UPDATE SET submissions = submissions + 1;
END;
CREATE TRIGGER IF NOT EXISTS consensus_counted_add AFTER INSERT ON consensus WHEN {COUNTED} BEGIN
  UPDATE task_counters SET consensus_images = consensus_images + 1
    WHERE task_id = NEW.task_id;{_tally_scores((1, "NEW"))}
END;
CREATE TRIGGER IF NOT EXISTS consensus_counted_replace AFTER UPDATE OF doc ON consensus
WHEN {RESCORED} AND {COUNTED} BEGIN{_tally_scores((1, "NEW"), (-1, "OLD"))}
END;
"""

SCHEMA_VERSION_KEY = "schema.version"
SCHEMA_WRITTEN_BY_KEY = "schema.written_by"
# A digest of the schema script: triggers are created IF NOT EXISTS, so a release that changes one
# (NEWNESS, say) without a schema step replaces them when the digest differs.
SCHEMA_DIGEST_KEY = "schema.digest"


def _index_exports_by_status(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX IF NOT EXISTS exports_by_status ON exports (json_extract(doc, '$.status'))")


def _drop_crowd_only_scores(db: sqlite3.Connection) -> None:
    """Rater ``quality`` was the crowd-only score ``1 − (fp + fn)/(2·tp)`` of points, lines and polygons
    (not within 0–1); it is now the agreement of crowdseg.consensus.quality, which carries a
    ``quality_basis``. Scores without one lose their quality, and the tallies' quality sums are
    recounted from the documents. The next reconciliation recomputes every image (its scores)."""
    rows = db.execute("SELECT id, doc FROM consensus WHERE doc LIKE '%\"quality\":%'").fetchall()
    for doc_id, text in rows:
        doc = json.loads(text)
        changed = False
        for rater in doc.get("raters", []):
            if rater.get("quality") is not None and rater.get("quality_basis") is None:
                rater["quality"] = None
                changed = True
        if changed:
            db.execute("UPDATE consensus SET doc = ? WHERE id = ?", (json.dumps(doc), doc_id))
    scores = (
        "FROM consensus AS c, json_each(c.doc, '$.raters') AS r WHERE c.task_id = tallies.task_id "
        "AND r.value ->> 'user_id' = tallies.user_id AND r.value ->> 'quality' IS NOT NULL"
    )
    db.execute(
        f"UPDATE tallies SET quality_sum = coalesce((SELECT SUM(r.value ->> 'quality') {scores}), 0), "
        f"quality_n = (SELECT COUNT(*) {scores})"
    )
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
        db.execute("DELETE FROM meta WHERE key = ?", (CONSENSUS_RECONCILED,))  # rescore every image


STEPS: list[Step[Any]] = [
    Step(2, "index exports by status (reconcile on start scanned them)", _index_exports_by_status),
    Step(3, "rater quality becomes agreement in 0–1: the crowd-only scores are dropped", _drop_crowd_only_scores),
]
"""Each runs inside the upgrade's transaction on the connection; after any of them this code's
triggers are created anew (``CREATE TRIGGER IF NOT EXISTS`` alone would keep an older body)."""


def _statements(script: str) -> Iterator[str]:
    """The statements of a script, for running them inside a transaction (``executescript`` commits)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip() and not all(line.strip().startswith("--") for line in buffer.splitlines() if line.strip()):
        raise ValueError(f"an incomplete SQL statement: {buffer.strip()[:80]}")


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


def _locked(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock (SQLITE_BUSY, SQLITE_LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


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

    def keyed_page(
        self, where: str, args: tuple[Any, ...], keys: tuple[str, str], limit: int, after: Key | None
    ) -> Page[M]:
        """``limit`` rows after the key ``after`` in the order of ``keys`` (two SQL expressions that an
        index covers, after the columns ``where`` fixes); reads ``limit + 1`` rows."""
        first, second = keys
        if after is not None:
            if len(after) != 2:
                raise InvalidInput("cursor: not a cursor of this list")
            where += f" AND {first} >= ? AND ({first}, {second}) > (?, ?)"
            args = (*args, after[0], after[0], after[1])
        sql = f"SELECT doc, {first}, {second} FROM {self.table} WHERE {where} ORDER BY {first}, {second} LIMIT ?"
        with self._store.translate():
            rows = self.db.execute(sql, (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            items=[self.model.model_validate_json(row[0]) for row in rows],
            keys=[(row[1], row[2]) for row in rows],
            more=more,
        )

    async def write(self, sql: str, *args: Any) -> int:
        """One statement in a transaction of its own (:meth:`SqliteStore.writing`); its row count."""
        async with self._store.writing() as db:
            return db.execute(sql, args).rowcount

    def put_doc(self, doc_id: str, model: BaseModel) -> None:
        """Overwrite a document, inside the caller's :meth:`SqliteStore.writing`."""
        pending = f", pending = {_has_outbox(model)}" if self.table in OUTBOX_TABLES else ""
        self.db.execute(f"UPDATE {self.table} SET doc = ?{pending} WHERE id = ?", (_dump(model), doc_id))

    async def replace_doc(self, doc_id: str, model: BaseModel) -> None:
        async with self._store.writing():
            self.put_doc(doc_id, model)

    async def revoke_doc(self, doc_id: str, at: datetime) -> M | None:
        """Set a document's ``revoked_at`` once (a study link, an invitation); the stored one either way."""
        async with self._store.writing():
            found = self.one("id = ?", doc_id)
            if found is None or getattr(found, "revoked_at", None) is not None:
                return found
            revoked = found.model_copy(update={"revoked_at": at})
            self.put_doc(doc_id, revoked)
            return revoked


class SqliteUsers(_Table[User]):
    async def add(self, user: User) -> User:
        async with self._store.writing():
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

    async def page(self, *, limit: int, after: Key | None = None) -> Page[User]:
        return self.keyed_page("1", (), (CREATED, "id"), limit, after)

    async def get_many(self, user_ids: Collection[str]) -> list[User]:
        wanted = sorted(set(user_ids))
        found: list[User] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.extend(self.many(f"id IN ({', '.join('?' * len(chunk))})", *chunk))
        return found

    async def set_roles(self, user_id: str, roles: list[Role]) -> User | None:
        async with self._store.writing():
            user = self.one("id = ?", user_id)
            if user is None:
                return None
            user = user.model_copy(update={"roles": roles})
            self.put_doc(user_id, user)
            return user

    async def end_sessions(self, user_id: str) -> User | None:
        async with self._store.writing():
            user = self.one("id = ?", user_id)
            if user is None:
                return None
            user = user.model_copy(update={"token_version": user.token_version + 1})
            self.put_doc(user_id, user)
            return user


class SqliteTasks(_Table[Task]):
    async def add(self, task: Task) -> None:
        await self.write("INSERT INTO tasks (id, doc) VALUES (?, ?)", task.id, _dump(task))

    async def get(self, task_id: str) -> Task | None:
        return self.one("id = ?", task_id)

    async def all(self) -> list[Task]:
        return self.many()

    async def page(self, *, limit: int, after: Key | None = None) -> Page[Task]:
        return self.keyed_page("1", (), (CREATED, "id"), limit, after)

    async def replace(self, task: Task) -> None:
        await self.replace_doc(task.id, task)

    async def add_member(self, task_id: str, user_id: str) -> None:
        async with self._store.writing():
            task = self.one("id = ?", task_id)
            if task is not None and user_id not in task.members:
                self.put_doc(task_id, task.model_copy(update={"members": [*task.members, user_id]}))

    async def remove_member(self, task_id: str, user_id: str) -> bool:
        async with self._store.writing():
            task = self.one("id = ?", task_id)
            if task is None or user_id not in task.members:
                return False
            members = [member for member in task.members if member != user_id]
            self.put_doc(task_id, task.model_copy(update={"members": members}))
            return True


class SqliteImages(_Table[Image]):
    async def add(self, image: Image) -> bool:
        try:
            await self.write(
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

    async def add_many(self, images: Sequence[Image]) -> list[bool]:
        # One transaction, so one commit (one fsync) for the batch; each row still meets UNIQUE (task_id, name).
        added: list[bool] = []
        async with self._store.writing() as db:
            for image in images:
                cursor = db.execute(
                    "INSERT INTO images (id, task_id, name, tutorial, pending, doc) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (image.id, image.task_id, image.name, int(image.tutorial), _has_outbox(image), _dump(image)),
                )
                added.append(cursor.rowcount > 0)
        return added

    async def get(self, image_id: str) -> Image | None:
        return self.one("id = ?", image_id)

    async def list_for_task(self, task_id: str, *, tutorial: bool | None = False) -> list[Image]:
        if tutorial is None:
            return self.many("task_id = ?", task_id, order="name")
        return self.many("task_id = ? AND tutorial = ?", task_id, int(tutorial), order="name")

    async def page_for_task(
        self, task_id: str, *, tutorial: bool | None = False, limit: int, after: Key | None = None
    ) -> Page[Image]:
        if tutorial is None:
            return self.keyed_page("task_id = ?", (task_id,), ("name", "id"), limit, after)
        return self.keyed_page("task_id = ? AND tutorial = ?", (task_id, int(tutorial)), ("name", "id"), limit, after)

    async def try_lease(
        self, image_id: str, user_id: str, *, replicates: int, now: datetime, expires_at: datetime
    ) -> bool:
        from crowdseg.domain import Lease

        async with self._store.writing():
            image = self.one("id = ?", image_id)
            if image is None or image.retired or user_id in image.submitted_by or user_id in image.rejected_by:
                return False
            others = [lease for lease in image.active_leases(now) if lease.user_id != user_id]
            if len(image.submitted_by) + len(others) >= replicates:
                return False
            leases = [*others, Lease(user_id=user_id, expires_at=expires_at)]
            self._set_fields(image.model_copy(update={"leases": leases}), "leases")
            return True

    async def claim_slot(self, image_id: str, user_id: str, *, replicates: int, now: datetime) -> bool:
        async with self._store.writing():
            image = self.one("id = ?", image_id)
            if image is None:
                return False
            if user_id in image.submitted_by:
                return True
            active = image.active_leases(now)
            holds_lease = any(lease.user_id == user_id for lease in active)
            others = [lease for lease in active if lease.user_id != user_id]
            if not holds_lease and (image.retired or len(image.submitted_by) + len(others) >= replicates):
                return False
            update = {"submitted_by": [*image.submitted_by, user_id], "leases": others}
            self._set_fields(image.model_copy(update=update), "submitted_by", "leases")
            return True

    async def set_certainty(self, image_id: str, certainty: float | None, *, retired: bool) -> None:
        async with self._store.writing():
            image = self.one("id = ?", image_id)
            if image is not None and (image.certainty, image.retired) != (certainty, retired):
                self._set_fields(
                    image.model_copy(update={"certainty": certainty, "retired": retired}), "certainty", "retired"
                )

    async def record_submitter(self, image_id: str, user_id: str) -> None:
        async with self._store.writing():
            image = self.one("id = ?", image_id)
            if image is not None and user_id not in image.submitted_by:
                update = {"submitted_by": [*image.submitted_by, user_id]}
                self._set_fields(image.model_copy(update=update), "submitted_by")

    def _set_fields(self, image: Image, *fields: str) -> None:
        """Write only these fields of the stored document, inside the caller's transaction. Each
        read-modify-write of an image is one transaction now; writing only the fields it changed
        still keeps a field another process wrote since an older reader's snapshot."""
        values = image.model_dump(mode="json", include=set(fields))
        paths = ", ".join(f"'$.{field}', json(?)" for field in fields)
        arguments = [json.dumps(values[field]) for field in fields]
        self.db.execute(f"UPDATE images SET doc = json_set(doc, {paths}) WHERE id = ?", (*arguments, image.id))

    async def set_rejected(self, image_id: str, user_id: str, *, rejected: bool) -> None:
        async with self._store.writing() as db:
            image = self.load(db.execute("SELECT doc FROM images WHERE id = ?", (image_id,)).fetchone())
            changed = None if image is None else image.with_rater_moved(user_id, rejected=rejected)
            if changed is not None:
                db.execute("UPDATE images SET doc = ? WHERE id = ?", (_dump(changed), image_id))

    async def set_reference(
        self, image_id: str, shapes: list[Shape], *, by: str, at: datetime, event: PendingEvent | None = None
    ) -> Image | None:
        async with self._store.writing() as db:
            image = self.load(db.execute("SELECT doc FROM images WHERE id = ?", (image_id,)).fetchone())
            if image is None:
                return None
            update = {
                "reference_shapes": shapes,
                "reference_version": image.reference_version + 1,
                "reference_by": by,
                "reference_at": at,
            }
            if event is not None:
                update["outbox"] = [*image.outbox, event]
            changed = image.model_copy(update=update)
            db.execute(
                "UPDATE images SET doc = ?, pending = ? WHERE id = ?", (_dump(changed), _has_outbox(changed), image_id)
            )
            return changed


class SqliteSubmissions(_Table[Submission]):
    async def add(self, submission: Submission) -> tuple[Submission, bool]:
        try:
            await self.write(
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

    async def review(self, submission_id: str, review: Review, event: PendingEvent) -> tuple[Submission | None, bool]:
        async with self._store.writing() as db:
            stored = self.load(db.execute("SELECT doc FROM submissions WHERE id = ?", (submission_id,)).fetchone())
            changed = None if stored is None else stored.with_review(review, event)
            if changed is None:
                return stored, False
            db.execute("UPDATE submissions SET doc = ?, pending = 1 WHERE id = ?", (_dump(changed), submission_id))
            return changed, True

    async def list_for_image(self, image_id: str) -> list[Submission]:
        return self.many("image_id = ?", image_id)

    async def list_for_task(self, task_id: str) -> list[Submission]:
        return self.many("task_id = ?", task_id)

    async def list_for_user(self, user_id: str) -> list[Submission]:
        return self.many("user_id = ?", user_id)

    async def created_since(self, since: datetime) -> list[Submission]:
        return self.many("json_extract(doc, '$.created_at') >= ?", json_time(since))

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
        async with self._store.writing():
            cursor = self.db.execute(
                "INSERT INTO consensus (id, task_id, submissions, pending, doc) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET submissions = excluded.submissions, pending = excluded.pending, "
                "doc = excluded.doc "
                f"WHERE {NEWNESS.format(row='excluded')} > {NEWNESS.format(row='consensus')}",
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
        await self.write(
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
        await self.write(
            "INSERT INTO exports (id, task_id, pending, doc) VALUES (?, ?, ?, ?)",
            export.id,
            export.task_id,
            _has_outbox(export),
            _dump(export),
        )

    async def get(self, export_id: str) -> Export | None:
        return self.one("id = ?", export_id)

    async def replace(self, export: Export) -> None:
        await self.replace_doc(export.id, export)

    async def unfinished(self) -> list[Export]:
        return self.many("json_extract(doc, '$.status') IN ('queued', 'running')")


class SqliteStudyLinks(_Table[StudyLink]):
    async def add(self, link: StudyLink) -> None:
        await self.write(
            "INSERT INTO study_links (id, task_id, doc) VALUES (?, ?, ?)", link.id, link.task_id, _dump(link)
        )

    async def get(self, link_id: str) -> StudyLink | None:
        return self.one("id = ?", link_id)

    async def page_for_task(self, task_id: str, *, limit: int, after: Key | None = None) -> Page[StudyLink]:
        return self.keyed_page("task_id = ?", (task_id,), (CREATED, "id"), limit, after)

    async def revoke(self, link_id: str, at: datetime) -> StudyLink | None:
        return await self.revoke_doc(link_id, at)


class SqliteLinkWorkers(_Table[LinkWorker]):
    async def add(self, worker: LinkWorker) -> tuple[LinkWorker, bool]:
        # The primary key arbitrates: of racing first visits one row is inserted, the rest read it.
        inserted = await self.write(
            "INSERT INTO link_workers (id, link_id, task_id, doc) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            worker.id,
            worker.link_id,
            worker.task_id,
            _dump(worker),
        )
        if inserted:
            return worker, True
        stored = self.one("id = ?", worker.id)
        assert stored is not None  # rows are never deleted
        return stored, False

    async def page_for_task(self, task_id: str, *, limit: int, after: Key | None = None) -> Page[LinkWorker]:
        return self.keyed_page("task_id = ?", (task_id,), (CREATED, "id"), limit, after)


class SqliteInvitations(_Table[Invitation]):
    async def add(self, invitation: Invitation) -> None:
        await self.write(
            "INSERT INTO invitations (id, task_id, doc) VALUES (?, ?, ?)",
            invitation.id,
            invitation.task_id,
            _dump(invitation),
        )

    async def get(self, invitation_id: str) -> Invitation | None:
        return self.one("id = ?", invitation_id)

    async def page_for_task(self, task_id: str, *, limit: int, after: Key | None = None) -> Page[Invitation]:
        return self.keyed_page("task_id = ?", (task_id,), (CREATED, "id"), limit, after)

    async def revoke(self, invitation_id: str, at: datetime) -> Invitation | None:
        return await self.revoke_doc(invitation_id, at)

    async def accepted(self, invitation_id: str, user_id: str) -> None:
        async with self._store.writing():
            invitation = self.one("id = ?", invitation_id)
            if invitation is not None and user_id not in invitation.accepted_by:
                update = {"accepted_by": [*invitation.accepted_by, user_id]}
                self.put_doc(invitation_id, invitation.model_copy(update=update))


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

    async def mark_published_many(self, entries: Sequence[OutboxEntry]) -> None:
        published: dict[tuple[str, str], set[object]] = {}
        for entry in entries:
            published.setdefault((entry.collection, entry.document_id), set()).add(entry.event.payload.get("event_id"))
        async with self._store.writing() as db:
            for (collection, document_id), event_ids in published.items():
                row = db.execute(f"SELECT doc FROM {collection} WHERE id = ?", (document_id,)).fetchone()
                if row is None:
                    continue
                doc = json.loads(row[0])
                kept = [e for e in doc.get("outbox", []) if e["payload"].get("event_id") not in event_ids]
                if len(kept) == len(doc.get("outbox", [])):
                    continue
                doc["outbox"] = kept
                db.execute(
                    f"UPDATE {collection} SET doc = ?, pending = ? WHERE id = ?",
                    (json.dumps(doc), int(bool(kept)), document_id),
                )

    async def mark_published(self, entry: OutboxEntry) -> None:
        async with self._store.writing() as db:
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


class SqliteCounters:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def _rows(self, sql: str, *args: Any) -> list[Any]:
        with self._store.translate():
            return self._store.connection.execute(sql, args).fetchall()

    async def task(self, task_id: str) -> TaskCounters | None:
        return (await self.tasks([task_id])).get(task_id)

    async def tasks(self, task_ids: Collection[str]) -> dict[str, TaskCounters]:
        wanted = sorted(set(task_ids))
        found: dict[str, TaskCounters] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for task_id, consensus_images in self._rows(
                f"SELECT task_id, consensus_images FROM task_counters WHERE task_id IN ({marks})", *chunk
            ):
                found[task_id] = TaskCounters(task_id=task_id, consensus_images=consensus_images)
            for task_id, level, images in self._rows(
                f"SELECT task_id, level, images FROM task_coverage WHERE task_id IN ({marks}) AND images != 0 "
                "ORDER BY task_id, level",
                *chunk,
            ):
                if task_id in found:
                    found[task_id].coverage[level] = images
            for task_id, level, images in self._rows(
                f"SELECT task_id, level, images FROM task_retired WHERE task_id IN ({marks}) AND images != 0 "
                "ORDER BY task_id, level",
                *chunk,
            ):
                if task_id in found:
                    found[task_id].retired[level] = images
        return found

    def _tallies(self, column: str, value: str) -> list[Tally]:
        days: dict[tuple[str, str], dict[str, int]] = {}
        for task_id, user_id, day, count in self._rows(
            f"SELECT task_id, user_id, day, submissions FROM tally_days WHERE {column} = ? ORDER BY day", value
        ):
            days.setdefault((task_id, user_id), {})[day] = count
        rows = self._rows(
            f"SELECT task_id, user_id, {', '.join(TALLY_COLUMNS)} FROM tallies WHERE {column} = ? "
            "ORDER BY task_id, user_id",
            value,
        )
        return [
            Tally(
                task_id=row[0],
                user_id=row[1],
                days=days.get((row[0], row[1]), {}),
                **dict(zip(TALLY_COLUMNS, row[2:], strict=True)),
            )
            for row in rows
        ]

    async def tallies_for_task(self, task_id: str) -> list[Tally]:
        return self._tallies("task_id", task_id)

    async def tallies_for_user(self, user_id: str) -> list[Tally]:
        return self._tallies("user_id", user_id)

    async def rebuild(self, task_id: str) -> TaskCounters:
        async with self._store.writing() as db:
            return self._rebuild_in(db, task_id)

    def rebuild_now(self, task_id: str) -> TaskCounters:
        """:meth:`rebuild` while the store opens, before anything else uses it."""
        with self._store.transaction() as db:
            return self._rebuild_in(db, task_id)

    def _rebuild_in(self, db: sqlite3.Connection, task_id: str) -> TaskCounters:
        """Recompute from the documents, inside the caller's transaction (what it reads is what it counts)."""
        store = self._store
        images = store.images.many("task_id = ? AND tutorial = 0", task_id)
        counters, tallies = rebuild(
            task_id,
            images,
            store.submissions.many("task_id = ?", task_id),
            store.consensus.many("task_id = ?", task_id),
        )
        for table in ("task_counters", "task_coverage", "task_retired", "tallies", "tally_days"):
            db.execute(f"DELETE FROM {table} WHERE task_id = ?", (task_id,))
        db.execute(
            "INSERT INTO task_counters (task_id, consensus_images) VALUES (?, ?)",
            (task_id, counters.consensus_images),
        )
        db.executemany(
            "INSERT INTO task_coverage (task_id, level, images) VALUES (?, ?, ?)",
            [(task_id, level, count) for level, count in counters.coverage.items()],
        )
        db.executemany(
            "INSERT INTO task_retired (task_id, level, images) VALUES (?, ?, ?)",
            [(task_id, level, count) for level, count in counters.retired.items()],
        )
        db.executemany(
            f"INSERT INTO tallies (task_id, user_id, {', '.join(TALLY_COLUMNS)}) "
            f"VALUES (?, ?, {', '.join('?' * len(TALLY_COLUMNS))})",
            [(task_id, t.user_id, *(getattr(t, column) for column in TALLY_COLUMNS)) for t in tallies],
        )
        db.executemany(
            "INSERT INTO tally_days (task_id, user_id, day, submissions) VALUES (?, ?, ?, ?)",
            [(task_id, t.user_id, day, count) for t in tallies for day, count in t.days.items()],
        )
        return counters

    def rebuild_missing(self) -> int:
        """Counters for every task that has none (a data directory from before counters existed)."""
        missing = self._rows("SELECT id FROM tasks WHERE id NOT IN (SELECT task_id FROM task_counters)")
        for (task_id,) in missing:
            self.rebuild_now(task_id)
        return len(missing)


class SqliteMeta:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def get(self, key: str) -> str | None:
        with self._store.translate():
            row = self._store.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    async def put(self, key: str, value: str) -> None:
        async with self._store.writing() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
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
        self.counters = SqliteCounters(self)
        self.meta = SqliteMeta(self)
        self.links = SqliteStudyLinks(self, "study_links", StudyLink)
        self.link_workers = SqliteLinkWorkers(self, "link_workers", LinkWorker)
        self.invitations = SqliteInvitations(self, "invitations", Invitation)
        self._group_sync = GroupSync([Path(f"{path}-wal"), path])
        self._checkpointer = WalCheckpointer(path)

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

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction that waits for the write lock inside SQLite: only while the store opens,
        before it serves (everything else writes through :meth:`writing`)."""
        db = self.connection
        with self.translate():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[sqlite3.Connection]:
        """One write transaction whose lock is awaited, never waited for on the event loop.

        SQLite lets one connection write at a time, and the embedded profile's consensus worker is
        another process writing this file. Waiting for its lock inside SQLite (``busy_timeout``) slept
        on the event loop, every request with it: 3–27 ms stalls, about three a second at 200
        submissions/s (issue 8). So ``BEGIN IMMEDIATE`` is tried without waiting and, while another
        process holds the lock, tried again after an asyncio sleep. The body must not await: the
        connection, and so the open transaction, is every coroutine's.
        """
        db = self.connection
        if db.in_transaction:
            raise RuntimeError("a write transaction is already open on this connection: a body awaited inside one")
        await self._begin(db)
        try:
            with self.translate():
                yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        with self.translate():
            db.execute("COMMIT")

    async def _begin(self, db: sqlite3.Connection) -> None:
        deadline = time.monotonic() + WRITE_LOCK_SECONDS
        pause = FIRST_LOCK_PAUSE_SECONDS
        while True:
            db.execute("PRAGMA busy_timeout = 0")
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _locked(exc) or time.monotonic() > deadline:
                    raise Unavailable(f"document store error: {exc}") from exc
            finally:
                db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await asyncio.sleep(pause)
            pause = min(2 * pause, LAST_LOCK_PAUSE_SECONDS)

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode = WAL")
            # Commits do not wait for the disk; acknowledged requests do, through one shared fsync
            # (crowdseg.adapters.group_sync).
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Checkpoints run in a thread of their own (crowdseg.adapters.wal_checkpoint), not in a commit.
            connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            self._upgrade(connection)
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"cannot open the document store at {self.path}: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self.counters.rebuild_missing()
        self._checkpointer.start()

    def _upgrade(self, db: sqlite3.Connection) -> None:
        """Create the schema, or bring an older one to this code's (crowdseg.migrations), in one
        transaction: the worker processes that open the same file meanwhile wait for it, then find
        the new version recorded."""
        db.execute("PRAGMA busy_timeout = 600000")  # another process may be upgrading the file
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._upgrade_in_transaction(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def _upgrade_in_transaction(self, db: sqlite3.Connection) -> None:
        found, written_by = self._stored_schema(db)
        where = f"the data directory {self.path.parent}"
        steps = [] if found is None else plan(STEPS, found, where=where, written_by=written_by)
        for step in steps:
            announce(step, str(self.path))
            step.run(db)
        script = SCHEMA + PAGING_SCHEMA + COUNTERS_SCHEMA + CROWDS_SCHEMA
        digest = hashlib.sha256(script.encode()).hexdigest()
        if steps or (found is not None and self._stored_digest(db) != digest):
            for trigger in re.findall(r"CREATE TRIGGER IF NOT EXISTS (\w+)", script):
                db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in _statements(script):
            db.execute(statement)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (SCHEMA_DIGEST_KEY, digest))
        if found != SCHEMA_VERSION:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(SCHEMA_VERSION_KEY, str(SCHEMA_VERSION)), (SCHEMA_WRITTEN_BY_KEY, crowdseg.__version__)],
            )
            if found is not None:
                log.info("%s: upgraded from schema %d to %d", self.path, found, SCHEMA_VERSION)

    @staticmethod
    def _stored_digest(db: sqlite3.Connection) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (SCHEMA_DIGEST_KEY,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _stored_schema(db: sqlite3.Connection) -> tuple[int | None, str | None]:
        """The recorded schema version and the release that recorded it; None for an empty file."""
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "users" not in tables:
            return None, None
        if "meta" not in tables:
            return UNVERSIONED, None
        stored = dict(
            db.execute(
                "SELECT key, value FROM meta WHERE key IN (?, ?)", (SCHEMA_VERSION_KEY, SCHEMA_WRITTEN_BY_KEY)
            ).fetchall()
        )
        version = stored.get(SCHEMA_VERSION_KEY)
        return (UNVERSIONED if version is None else int(version)), stored.get(SCHEMA_WRITTEN_BY_KEY)

    async def ping(self) -> None:
        with self.translate():
            self.connection.execute("SELECT 1").fetchone()

    async def durable(self) -> None:
        try:
            await self._group_sync.wait()
        except OSError as exc:
            raise Unavailable(f"cannot flush the document store to disk: {exc}") from exc

    async def close(self) -> None:
        self._checkpointer.stop()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._group_sync.close()
        self._group_sync = GroupSync(self._group_sync.paths)  # for a store opened again
