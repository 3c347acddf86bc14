"""Lists at scale, against every store adapter (see conftest.py): keyset pages that stay stable while
documents are added, and the counters the stores keep as work arrives, which must always equal a
rebuild from the documents."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from crowdseg.adapters.mongo_store import MongoStore
from crowdseg.adapters.sqlite_store import SqliteStore
from crowdseg.counters import Tally, TaskCounters, rebuild
from crowdseg.domain import Consensus, Image, RaterScore, Task, User, new_id
from crowdseg.errors import Conflict
from crowdseg.ports import Key, Page, Store

from tests.contract.test_store_contract import LATER, NOW, consensus, image, submission, task, user

pytestmark = pytest.mark.contract


async def walk(fetch: Any, limit: int, between: Any = None) -> list[Any]:
    """Every item, page by page; ``between`` runs after each page (to change the list meanwhile)."""
    seen: list[Any] = []
    after: Key | None = None
    while True:
        page: Page[Any] = await fetch(limit=limit, after=after)
        assert len(page.items) == len(page.keys) <= limit
        seen.extend(page.items)
        if page.next_after is None:
            assert not page.more
            return seen
        assert len(page.items) == limit
        after = page.next_after
        if between is not None:
            await between()


# ------------------------------------------------------------------------------------- pages
async def test_image_pages_have_no_duplicates_or_gaps_while_images_are_added(store: Store) -> None:
    t = task()
    await store.tasks.add(t)
    rng = random.Random(8)
    names = rng.sample(range(10_000), 80)
    initial = [image(t.id, f"{n:05d}.png") for n in names[:30]]
    for img in initial:
        assert await store.images.add(img)
    assert await store.images.add(image(t.id, "00000-tutorial.png", tutorial=True))
    added: list[Image] = []

    async def add_more() -> None:
        for n in names[30 + len(added) : 30 + len(added) + 5]:
            img = image(t.id, f"{n:05d}.png")
            assert await store.images.add(img)
            added.append(img)

    seen = await walk(lambda **page: store.images.page_for_task(t.id, **page), 7, add_more)
    ids = [img.id for img in seen]
    assert len(ids) == len(set(ids))  # no duplicates
    keys = [(img.name, img.id) for img in seen]
    assert keys == sorted(keys)  # stable order, by name
    assert {img.id for img in initial} <= set(ids)  # no gaps: everything there from the start is listed
    assert set(ids) <= {img.id for img in initial + added}
    assert not any(img.tutorial for img in seen)
    # Names added behind the cursor are on the next walk, names ahead of it were already listed.
    everything = await walk(lambda **page: store.images.page_for_task(t.id, **page), 11)
    assert [img.id for img in everything] == [img.id for img in sorted(initial + added, key=lambda i: i.name)]
    with_tutorials = await walk(lambda **page: store.images.page_for_task(t.id, tutorial=None, **page), 4)
    assert with_tutorials[0].name == "00000-tutorial.png"
    assert len(with_tutorials) == len(everything) + 1
    tutorials = await store.images.page_for_task(t.id, tutorial=True, limit=5)
    assert [img.name for img in tutorials.items] == ["00000-tutorial.png"] and not tutorials.more


async def test_image_pages_of_one_task_only(store: Store) -> None:
    first, second = task(), task()
    for t in (first, second):
        await store.tasks.add(t)
        for n in range(3):
            await store.images.add(image(t.id, f"{n}.png"))
    page = await store.images.page_for_task(first.id, limit=2)
    assert page.more and [img.task_id for img in page.items] == [first.id] * 2
    rest = await store.images.page_for_task(first.id, limit=2, after=page.next_after)
    assert [img.name for img in rest.items] == ["2.png"] and not rest.more and rest.next_after is None
    empty = await store.images.page_for_task("missing", limit=5)
    assert empty.items == [] and not empty.more


async def test_tasks_and_users_page_by_creation_with_ties_by_id(store: Store) -> None:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    # Some creation times tie (ordered by id then); the others are a millisecond or more apart.
    moments = [base + timedelta(milliseconds=m) for m in (5, 1, 1, 3, 1000, 5, 0, 2, 2, 7)]
    tasks = [task().model_copy(update={"created_at": moment}) for moment in moments]
    for t in tasks:
        await store.tasks.add(t)
    expected = sorted(tasks, key=lambda t: (t.created_at, t.id))
    for limit in (1, 3, 10, 20):
        assert [t.id for t in await walk(store.tasks.page, limit)] == [t.id for t in expected]
    users: list[User] = []
    for moment in moments:
        users.append(await store.users.add(user().model_copy(update={"created_at": moment})))
    for limit in (2, 4):
        paged = await walk(store.users.page, limit)
        assert [u.id for u in paged] == [u.id for u in sorted(users, key=lambda u: (u.created_at, u.id))]
    assert {u.id for u in await store.users.get_many([users[0].id, users[3].id, "nobody"])} == {
        users[0].id,
        users[3].id,
    }
    assert await store.users.get_many([]) == []


async def test_task_pages_while_tasks_are_added(store: Store) -> None:
    start = [task() for _ in range(9)]
    for t in start:
        await store.tasks.add(t)
    late: list[Task] = []

    async def add_one() -> None:
        late.append(task())
        await store.tasks.add(late[-1])

    seen = await walk(store.tasks.page, 2, add_one)
    ids = [t.id for t in seen]
    assert len(ids) == len(set(ids)) and {t.id for t in start} <= set(ids)
    assert ids == [t.id for t in sorted(seen, key=lambda t: (t.created_at, t.id))]


async def test_sqlite_page_queries_use_an_index(tmp_path: Path) -> None:
    """Query plans are SQLite's own: this one runs on the embedded store alone."""
    from crowdseg.adapters.sqlite_store import CREATED

    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    db = store.connection
    queries = [
        f"SELECT doc FROM tasks WHERE {CREATED} >= ? AND ({CREATED}, id) > (?, ?) ORDER BY {CREATED}, id LIMIT ?",
        f"SELECT doc FROM users WHERE 1 ORDER BY {CREATED}, id LIMIT ?",
        "SELECT doc FROM images WHERE task_id = ? AND tutorial = ? AND name >= ? AND (name, id) > (?, ?) "
        "ORDER BY name, id LIMIT ?",
    ]
    try:
        for sql in queries:
            plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", [0] * sql.count("?")))
            assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        await store.close()


# ---------------------------------------------------------------------------------- counters
def assert_counters_match(
    found: TaskCounters | None, tallies: list[Tally], expected: tuple[TaskCounters, list[Tally]]
) -> None:
    want_counters, want_tallies = expected
    assert found is not None
    assert found.coverage == want_counters.coverage
    assert found.consensus_images == want_counters.consensus_images
    assert found.retired == want_counters.retired
    have = {t.user_id: t for t in tallies if not t.empty}
    want = {t.user_id: t for t in want_tallies if not t.empty}
    assert sorted(have) == sorted(want)
    for user_id, tally in want.items():
        got = have[user_id].model_dump()
        for name, value in tally.model_dump().items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (user_id, name)
            else:
                assert got[name] == value, (user_id, name)


async def from_documents(store: Store, task_id: str) -> tuple[TaskCounters, list[Tally]]:
    return rebuild(
        task_id,
        await store.images.list_for_task(task_id),
        await store.submissions.list_for_task(task_id),
        await store.consensus.list_for_task(task_id),
    )


async def check(store: Store, task_id: str) -> None:
    expected = await from_documents(store, task_id)
    assert_counters_match(await store.counters.task(task_id), await store.counters.tallies_for_task(task_id), expected)
    by_user = {t.user_id: t for t in expected[1] if not t.empty}
    for user_id in by_user:
        mine = [t for t in await store.counters.tallies_for_user(user_id) if t.task_id == task_id]
        assert len(mine) == 1 and mine[0].submissions == by_user[user_id].submissions


def scores(users: list[str], rng: random.Random, *, counts: bool = True) -> list[RaterScore]:
    rows = []
    for user_id in users:
        extra: dict[str, Any] = {}
        if counts:
            extra = {
                "tp": rng.uniform(0, 90),
                "fp": rng.uniform(0, 9),
                "fn": rng.uniform(0, 9),
                "tn": rng.uniform(0, 900),
            }
        rows.append(
            RaterScore(
                user_id=user_id,
                submission_id=new_id(),
                sensitivity=rng.random(),
                specificity=rng.random(),
                quality=rng.random() if rng.random() < 0.7 else None,
                **extra,
            )
        )
    return rows


def rated(img: Image, users: list[str], rng: random.Random, *, counts: bool = True) -> Consensus:
    found = consensus(img, len(users))
    found.raters = scores(users, rng, counts=counts)
    return found


async def test_a_new_task_has_zero_counters(store: Store) -> None:
    t = task()
    await store.tasks.add(t)
    counters = await store.counters.task(t.id)
    assert counters is not None and counters.images == counters.submissions == counters.consensus_images == 0
    assert counters.histogram(3) == {"0": 0, "1": 0, "2": 0, "3": 0}
    assert await store.counters.tallies_for_task(t.id) == []
    assert await store.counters.tasks([t.id, "missing"]) == {t.id: counters}


async def test_counters_follow_images_slots_submissions_and_consensus(store: Store) -> None:
    t = task(replicates=2)
    await store.tasks.add(t)
    a, b, c = image(t.id, "a.png"), image(t.id, "b.png"), image(t.id, "c.png")
    for img in (a, b, c, image(t.id, "tut.png", tutorial=True)):
        await store.images.add(img)
    assert not await store.images.add(image(t.id, "a.png"))  # refused: counted once
    assert await store.images.try_lease(a.id, "u1", replicates=2, now=NOW, expires_at=LATER)
    assert await store.images.claim_slot(a.id, "u1", replicates=2, now=NOW)
    assert await store.images.claim_slot(a.id, "u1", replicates=2, now=NOW)  # a retry: counted once
    assert await store.images.claim_slot(a.id, "u2", replicates=2, now=NOW)
    assert not await store.images.claim_slot(a.id, "u3", replicates=2, now=NOW)
    await store.images.record_submitter(b.id, "u1")
    await store.images.record_submitter(b.id, "u1")  # idempotent
    first = submission(a, "u1").model_copy(update={"duration_ms": 2500})
    await store.submissions.add(first)
    await store.submissions.add(first)  # the same client id again: stored once, counted once
    with pytest.raises(Conflict):
        await store.submissions.add(submission(a, "u1"))
    await store.submissions.add(submission(a, "u2"))
    await store.submissions.add(submission(b, "u1").model_copy(update={"duration_ms": 500}))
    counters = await store.counters.task(t.id)
    assert counters is not None
    assert counters.coverage == {0: 1, 1: 1, 2: 1}
    assert (counters.images, counters.submissions, counters.complete(2), counters.complete(1)) == (3, 3, 1, 2)
    assert counters.histogram(2) == {"0": 1, "1": 1, "2": 1}
    rng = random.Random(3)
    older, newer = rated(a, ["u1"], rng), rated(a, ["u1", "u2"], rng)
    assert await store.consensus.save_if_newer(older)
    assert await store.consensus.save_if_newer(newer)
    assert not await store.consensus.save_if_newer(older)  # a redelivered, older result changes nothing
    assert not await store.consensus.save_if_newer(newer)
    tallies = {tally.user_id: tally for tally in await store.counters.tallies_for_task(t.id)}
    assert tallies["u1"].submissions == 2 and tallies["u1"].seconds == pytest.approx(3.0) and tallies["u1"].timed == 2
    assert tallies["u1"].mean_seconds == pytest.approx(1.5)
    assert tallies["u1"].scored == 1  # the replaced consensus's counts were taken away
    u1 = newer.raters[0]
    assert tallies["u1"].tp == pytest.approx(u1.tp) and tallies["u1"].tn == pytest.approx(u1.tn)
    assert tallies["u1"].sensitivity == pytest.approx(u1.tp / (u1.tp + u1.fn))  # type: ignore[operator]
    assert sum(tallies["u1"].days.values()) == 2
    stored = await store.counters.task(t.id)
    assert stored is not None and stored.consensus_images == 1
    await check(store, t.id)


async def test_counters_equal_a_rebuild_after_a_random_concurrent_workload(store: Store) -> None:
    rng = random.Random(20260301)
    t = task(replicates=3)
    await store.tasks.add(t)
    other = task()
    await store.tasks.add(other)
    users = [f"u{n}" for n in range(8)]
    images: list[Image] = []
    for _ in range(6):
        batch = [image(t.id, f"{new_id()[:8]}.png", tutorial=rng.random() < 0.1) for _ in range(rng.randint(1, 4))]
        batch.append(image(other.id, f"{new_id()[:8]}.png"))
        await asyncio.gather(*(store.images.add(img) for img in batch))
        images.extend(img for img in batch if img.task_id == t.id and not img.tutorial)
        work = []
        for _ in range(rng.randint(5, 15)):
            img, user_id = rng.choice(images), rng.choice(users)
            roll = rng.random()
            if roll < 0.3:
                work.append(store.images.try_lease(img.id, user_id, replicates=3, now=NOW, expires_at=LATER))
            elif roll < 0.7:
                work.append(annotate(store, img, user_id, rng.randint(100, 9000)))
            elif roll < 0.8:  # adaptive replicates: the consensus worker retires or reopens it
                work.append(store.images.set_certainty(img.id, rng.random(), retired=rng.random() < 0.6))
            else:
                work.append(store.images.record_submitter(img.id, user_id))
        await asyncio.gather(*work, return_exceptions=True)
        await asyncio.gather(*(recompute(store, img, rng) for img in images if rng.random() < 0.5))
    await check(store, t.id)
    await check(store, other.id)
    rebuilt = await store.counters.rebuild(t.id)
    assert rebuilt == await store.counters.task(t.id)
    await check(store, t.id)


async def annotate(store: Store, img: Image, user_id: str, duration_ms: int) -> None:
    if await store.images.claim_slot(img.id, user_id, replicates=3, now=NOW):
        made = submission(img, user_id).model_copy(update={"duration_ms": duration_ms})
        await store.submissions.add(made)
        await store.submissions.add(made)  # at least once: a retry of the same submission


async def recompute(store: Store, img: Image, rng: random.Random) -> None:
    """What the consensus worker stores, redelivered: the image's raters, once, twice or late."""
    raters = sorted({s.user_id for s in await store.submissions.list_for_image(img.id)})
    if not raters:
        return
    found = rated(img, raters, rng, counts=rng.random() < 0.8)
    await asyncio.gather(store.consensus.save_if_newer(found), store.consensus.save_if_newer(found))


async def test_counters_missing_for_old_data_are_rebuilt_on_open(store: Store) -> None:
    """A data directory (or database) from before the counters: they are rebuilt when the store opens."""
    rng = random.Random(5)
    t = task(replicates=2)
    await store.tasks.add(t)
    img = image(t.id)
    await store.images.add(img)
    await annotate(store, img, "u1", 1200)
    await store.consensus.save_if_newer(rated(img, ["u1"], rng))
    if isinstance(store, SqliteStore):
        for table in ("task_counters", "task_coverage", "tallies", "tally_days"):
            store.connection.execute(f"DELETE FROM {table}")
    else:
        assert isinstance(store, MongoStore)
        await store.counters.shards.coll.delete_many({})
        await store.counters.tallies.coll.delete_many({})
    assert await store.counters.task(t.id) is None
    await store.images.record_submitter(img.id, "u2")  # a change meanwhile is not counted twice
    expected = await from_documents(store, t.id)
    await store.close()
    await store.open()
    assert_counters_match(await store.counters.task(t.id), await store.counters.tallies_for_task(t.id), expected)
