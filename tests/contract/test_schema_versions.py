"""Schema versions on both stores: recorded on a new store, data without one (crowdseg 0.1.0's) are
upgraded on open, newer data are refused before anything is written.

The upgrade of a real 0.1.0 data directory, end to end over HTTP, is tests/integration/test_upgrade_data_dir.py.
"""

from __future__ import annotations

import sqlite3

import pytest
from crowdseg import __version__
from crowdseg.adapters import mongo_store, sqlite_store
from crowdseg.adapters.mongo_store import META, MongoStore
from crowdseg.adapters.sqlite_store import SqliteStore
from crowdseg.errors import SchemaTooNew
from crowdseg.migrations import CONSENSUS_RECONCILED, SCHEMA_VERSION
from crowdseg.ports import Store

from tests.contract.test_store_contract import image, task, user

pytestmark = pytest.mark.contract


async def recorded(store: Store) -> tuple[int, str] | None:
    if isinstance(store, SqliteStore):
        version = await store.meta.get(sqlite_store.SCHEMA_VERSION_KEY)
        written_by = await store.meta.get(sqlite_store.SCHEMA_WRITTEN_BY_KEY)
        return None if version is None or written_by is None else (int(version), written_by)
    assert isinstance(store, MongoStore)
    doc = await store.database[META].find_one({"_id": mongo_store.SCHEMA})
    return None if doc is None else (int(doc["version"]), str(doc["written_by"]))


async def record(store: Store, version: int | None) -> None:
    """What an older (None: 0.1.0, no version) or newer crowdseg would have left."""
    if isinstance(store, SqliteStore):
        db = store.connection
        db.execute("DELETE FROM meta WHERE key LIKE 'schema.%'")
        if version is not None:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (sqlite_store.SCHEMA_VERSION_KEY, str(version)))
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (sqlite_store.SCHEMA_WRITTEN_BY_KEY, "9.9.9"))
        return
    assert isinstance(store, MongoStore)
    await store.database[META].delete_one({"_id": mongo_store.SCHEMA})
    if version is not None:
        await store.database[META].insert_one({"_id": mongo_store.SCHEMA, "version": version, "written_by": "9.9.9"})


def sqlite_objects(store: SqliteStore) -> set[tuple[str, str, str]]:
    rows = store.connection.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    return {(kind, name, sql) for kind, name, sql in rows}


async def test_a_new_store_records_the_current_schema(store: Store) -> None:
    assert await recorded(store) == (SCHEMA_VERSION, __version__)
    await store.close()
    await store.open()
    assert await recorded(store) == (SCHEMA_VERSION, __version__)


async def test_data_without_a_version_are_upgraded_from_the_first_release(store: Store) -> None:
    owner = user("owner")
    await store.users.add(owner)
    t = task(owner.id)
    await store.tasks.add(t)
    await store.images.add(image(t.id))
    before = sqlite_objects(store) if isinstance(store, SqliteStore) else set()
    if isinstance(store, SqliteStore):  # 0.1.0 had no such index, and (we pretend) another trigger body
        store.connection.execute("DROP INDEX exports_by_status")
        store.connection.execute("DROP TRIGGER submissions_counted")
        store.connection.execute("CREATE TRIGGER submissions_counted AFTER INSERT ON submissions BEGIN SELECT 1; END")
    else:
        assert isinstance(store, MongoStore)  # a user from before paging keys
        await store.users.coll.update_one({"_id": owner.id}, {"$unset": {"created": ""}})
    await record(store, None)
    await store.close()
    await store.open()
    assert await recorded(store) == (SCHEMA_VERSION, __version__)
    if isinstance(store, SqliteStore):
        assert sqlite_objects(store) == before
    else:
        assert isinstance(store, MongoStore)
        assert (await store.users.coll.find_one({"_id": owner.id}) or {}).get("created") is not None
    assert [u.id for u in (await store.users.page(limit=10)).items] == [owner.id]
    assert [i.name for i in await store.images.list_for_task(t.id)] == ["a.png"]
    counters = await store.counters.task(t.id)
    assert counters is not None and counters.coverage == {0: 1}


async def test_newer_data_are_refused_and_left_as_they_are(store: Store) -> None:
    owner = user("owner")
    await store.users.add(owner)
    if isinstance(store, SqliteStore):
        store.connection.execute("DROP INDEX exports_by_status")
        before = sqlite_objects(store)
    await record(store, SCHEMA_VERSION + 1)
    await store.close()
    with pytest.raises(SchemaTooNew, match=rf"schema version {SCHEMA_VERSION + 1} \(written by crowdseg 9\.9\.9\)"):
        await store.open()
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as db:
            assert set(db.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")) == before
            assert dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'schema.%'").fetchall()) == {
                sqlite_store.SCHEMA_VERSION_KEY: str(SCHEMA_VERSION + 1),
                sqlite_store.SCHEMA_WRITTEN_BY_KEY: "9.9.9",
            }
    else:
        assert isinstance(store, MongoStore)
        probe = MongoStore(store.url, store.database_name, atomic_updates=True)
        with pytest.raises(SchemaTooNew):
            await probe.open()
        assert probe._client is None  # closed on the way out
    # an older crowdseg put back in place starts again on the same data
    await _force_version(store, SCHEMA_VERSION)
    await store.open()
    assert await store.users.get(owner.id) is not None


async def _force_version(store: Store, version: int) -> None:
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(version), sqlite_store.SCHEMA_VERSION_KEY))
        return
    assert isinstance(store, MongoStore)
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(store.url)
    try:
        await client[store.database_name][META].update_one({"_id": mongo_store.SCHEMA}, {"$set": {"version": version}})
    finally:
        await client.close()


async def test_every_step_may_run_again(store: Store) -> None:
    """A step interrupted, or raced by another process, runs once more without harm."""
    owner = user("owner")
    await store.users.add(owner)
    if isinstance(store, SqliteStore):
        for step in sqlite_store.STEPS:
            step.run(store.connection)
            step.run(store.connection)
    else:
        assert isinstance(store, MongoStore)
        for mongo_step in mongo_store.STEPS:
            await mongo_step.run(store)
            await mongo_step.run(store)
    assert [u.id for u in (await store.users.page(limit=10)).items] == [owner.id]



async def test_schema_2_crowd_only_scores_leave_the_scores_and_the_tallies(store: Store) -> None:
    """Schema 3: ``quality`` without a ``quality_basis`` was the crowd-only score (not within 0–1)."""
    from crowdseg.domain import RaterScore

    from tests.contract.test_store_contract import consensus, stored_image

    t, img = await stored_image(store)
    old = RaterScore(user_id="ann", submission_id="s0", quality=-0.5, tp=1, fp=2, fn=1)
    new = RaterScore(user_id="bob", submission_id="s1", quality=0.75, quality_basis="crowd", tp=1, fp=0, fn=0)
    assert await store.consensus.save_if_newer(consensus(img, 2).model_copy(update={"raters": [old, new]}))
    tallies = {tally.user_id: tally for tally in await store.counters.tallies_for_task(t.id)}
    assert tallies["ann"].quality == 0.0  # the old score, clipped, before the upgrade
    await store.meta.put(CONSENSUS_RECONCILED, "2026-01-01T00:00:00+00:00")
    await record(store, 2)
    await store.close()
    await store.open()
    assert await recorded(store) == (SCHEMA_VERSION, __version__)
    assert await store.meta.get(CONSENSUS_RECONCILED) is None  # the next reconciliation looks at every image
    found = await store.consensus.get(img.id)
    assert found is not None and [r.quality for r in found.raters] == [None, 0.75]
    tallies = {tally.user_id: tally for tally in await store.counters.tallies_for_task(t.id)}
    assert (tallies["ann"].quality, tallies["ann"].quality_images, tallies["ann"].scored) == (None, 0, 1)
    assert (tallies["bob"].quality, tallies["bob"].quality_images) == (0.75, 1)


async def test_a_changed_trigger_replaces_the_stored_one_without_a_schema_step(store: Store) -> None:
    """issue 10 (screening): a consensus's newness gained its screening revision, but triggers are
    created IF NOT EXISTS and a data directory of the same schema kept the older body, under which a
    rescreened consensus did not move its raters' tallies. The schema digest now replaces them."""
    if not isinstance(store, SqliteStore):
        pytest.skip("triggers are the SQLite store's")
    db = store.connection
    db.execute("DROP TRIGGER consensus_counted_replace")
    db.execute("CREATE TRIGGER consensus_counted_replace AFTER UPDATE OF doc ON consensus BEGIN SELECT 1; END")
    db.execute("UPDATE meta SET value = 'older' WHERE key = ?", (sqlite_store.SCHEMA_DIGEST_KEY,))
    db.commit()
    await store.close()
    await store.open()
    (sql,) = [sql for kind, name, sql in sqlite_objects(store) if name == "consensus_counted_replace"]
    assert "screening_revision" in sql
