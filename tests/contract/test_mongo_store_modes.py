"""MongoStore's two ways of writing a changed document, on the real server the cluster tests use.

``atomic_updates`` (MongoDB) is a plain compare-and-set on ``_rev``; without it (FerretDB v1, whose
filtered updates are not atomic: bench/store/race.py) every write also takes a guard document.
The races here run several stores at once, each with its own connection pool, the way several
assign or annotate replicas share one database; they run in the mode the server calls for, since
the other mode is wrong on it by design. The retry after a lost compare-and-set is exercised in
both modes by a write that lands between a store's read and its write.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from crowdseg.adapters.mongo_store import GUARDS, MongoStore
from crowdseg.domain import Image
from pymongo import MongoClient

from tests.contract.conftest import _drop_database
from tests.contract.test_store_contract import LATER, NOW, image, stored_image, task
from tests.servers import FerretDBServer

pytestmark = [pytest.mark.contract, pytest.mark.cluster]

REPLICAS = 5
RACERS = 50


@pytest.fixture
async def replicas(mongo_server: FerretDBServer) -> AsyncIterator[list[MongoStore]]:
    """Several stores on one database, in the mode the server calls for (asked of the server)."""
    name = f"contract_{uuid.uuid4().hex[:12]}"
    stores = [MongoStore(mongo_server.url, name) for _ in range(REPLICAS)]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()
    await _drop_database(mongo_server.url, name)


async def test_the_mode_follows_the_server(mongo_server: FerretDBServer, replicas: list[MongoStore]) -> None:
    assert {store.atomic_updates for store in replicas} == {mongo_server.atomic_updates}
    forced = MongoStore(mongo_server.url, replicas[0].database_name, atomic_updates=True)
    await forced.open()
    try:
        assert forced.atomic_updates  # an explicit setting wins over the server's answer
    finally:
        await forced.close()


async def stored(store: MongoStore, image_id: str) -> Image:
    image = await store.images.get(image_id)
    assert image is not None
    return image


async def test_racing_replicas_grant_exactly_replicates_leases(replicas: list[MongoStore]) -> None:
    _, img = await stored_image(replicas[0], replicates=3)
    users = [f"u{i}" for i in range(RACERS)]
    granted = await asyncio.gather(
        *(
            replicas[i % REPLICAS].images.try_lease(img.id, user, replicates=3, now=NOW, expires_at=LATER)
            for i, user in enumerate(users)
        )
    )
    winners = sorted(user for user, ok in zip(users, granted, strict=True) if ok)
    assert len(winners) == 3
    assert sorted(lease.user_id for lease in (await stored(replicas[0], img.id)).active_leases(NOW)) == winners

    claimed = await asyncio.gather(
        *(
            replicas[(i + 1) % REPLICAS].images.claim_slot(img.id, user, replicates=3, now=NOW)
            for i, user in enumerate(users)
        )
    )
    assert sorted(user for user, ok in zip(users, claimed, strict=True) if ok) == winners  # the others: no room
    image = await stored(replicas[0], img.id)
    assert sorted(image.submitted_by) == winners and image.active_leases(NOW) == []
    assert await replicas[0].database[GUARDS].count_documents({}) == 0


async def test_racing_replicas_lease_then_claim_fill_exactly_replicates(replicas: list[MongoStore]) -> None:
    """The annotator flow, 50 users at once over five replicas: at most 3 reach the image, never one twice."""
    _, img = await stored_image(replicas[0], replicates=3)

    async def annotate(i: int) -> bool:
        user, assign, annotate = f"u{i}", replicas[i % REPLICAS], replicas[(i + 2) % REPLICAS]
        if not await assign.images.try_lease(img.id, user, replicates=3, now=NOW, expires_at=LATER):
            return False
        return await annotate.images.claim_slot(img.id, user, replicates=3, now=NOW)

    results = await asyncio.gather(*(annotate(i) for i in range(RACERS)))
    image = await stored(replicas[0], img.id)
    assert sum(results) == 3
    assert len(image.submitted_by) == len(set(image.submitted_by)) == 3


@pytest.mark.parametrize("atomic_updates", [False, True], ids=["guards", "compare-and-set"])
async def test_a_write_that_lands_between_read_and_write_is_kept(
    mongo_server: FerretDBServer, atomic_updates: bool
) -> None:
    name = f"contract_{uuid.uuid4().hex[:12]}"
    store = MongoStore(mongo_server.url, name, atomic_updates=atomic_updates)
    await store.open()
    other: MongoClient[dict[str, Any]] = MongoClient(mongo_server.url)
    try:
        _, img = await stored_image(store, replicates=3)
        images = other[name]["images"]

        def another_replica_writes() -> None:
            doc = images.find_one({"_id": img.id})
            assert doc is not None
            image = Image.model_validate_json(doc["body"])
            moved = image.model_copy(update={"submitted_by": [*image.submitted_by, "u-other"]})
            new = {**store.images.encode(moved, img.id), "_rev": doc["_rev"] + 1}
            assert images.replace_one({"_id": img.id, "_rev": doc["_rev"]}, new).matched_count == 1

        seen: list[list[str]] = []

        def change(image: Image) -> tuple[Image | None, None]:
            seen.append(image.submitted_by)
            if len(seen) == 1:  # after this store's read, before its write
                another_replica_writes()
            return image.model_copy(update={"submitted_by": [*image.submitted_by, "u-mine"]}), None

        await store.images.update(img.id, change, None)
        assert seen == [[], ["u-other"]]  # the write from the stale read missed and was retried
        assert (await stored(store, img.id)).submitted_by == ["u-other", "u-mine"]
        assert (images.find_one({"_id": img.id}) or {}).get("_rev") == 2
        assert await store.database[GUARDS].count_documents({}) == 0
    finally:
        other.close()
        await store.close()
        await _drop_database(mongo_server.url, name)


async def test_outbox_marks_in_one_batch_keep_every_racing_lease(replicas: list[MongoStore]) -> None:
    """Issue 8: the ingest relay clears a whole page of outboxes in one batch (constant round trips);
    leases racing it on the same image documents from other replicas are never lost."""
    t = task(replicates=3)
    await replicas[0].tasks.add(t)
    images = [image(t.id, f"{n:02d}.png", events=1) for n in range(20)]
    assert all(await replicas[0].images.add_many(images))
    pending = await replicas[0].outbox.pending(limit=100)
    assert len(pending) == len(images)

    async def lease(i: int) -> bool:
        img = images[i % len(images)]
        user = f"u{i}"
        return await replicas[1 + i % (REPLICAS - 1)].images.try_lease(
            img.id, user, replicates=3, now=NOW, expires_at=LATER
        )

    _, *granted = await asyncio.gather(
        replicas[0].outbox.mark_published_many(pending), *(lease(i) for i in range(2 * len(images)))
    )
    assert all(granted)  # two per image, within replicates
    assert await replicas[0].outbox.pending(limit=100) == []
    for n, img in enumerate(images):
        leased = sorted(lease.user_id for lease in (await stored(replicas[0], img.id)).active_leases(NOW))
        assert leased == sorted([f"u{n}", f"u{n + len(images)}"])
    assert await replicas[0].database[GUARDS].count_documents({}) == 0


@pytest.mark.parametrize("atomic_updates", [False, True], ids=["guards", "compare-and-set"])
async def test_a_batch_write_that_loses_to_another_replica_is_retried(
    mongo_server: FerretDBServer, atomic_updates: bool
) -> None:
    name = f"contract_{uuid.uuid4().hex[:12]}"
    store = MongoStore(mongo_server.url, name, atomic_updates=atomic_updates)
    await store.open()
    other: MongoClient[dict[str, Any]] = MongoClient(mongo_server.url)
    try:
        t = task()
        await store.tasks.add(t)
        images = [image(t.id, f"{n}.png", events=1) for n in range(3)]
        assert all(await store.images.add_many(images))
        raw = other[name]["images"]
        moved = images[1]

        def another_replica_writes() -> None:
            doc = raw.find_one({"_id": moved.id})
            assert doc is not None
            leased = Image.model_validate_json(doc["body"]).model_copy(update={"submitted_by": ["u-other"]})
            new = {**store.images.encode(leased, moved.id), "_rev": doc["_rev"] + 1}
            assert raw.replace_one({"_id": moved.id, "_rev": doc["_rev"]}, new).matched_count == 1

        reads: list[str] = []

        def clear(image_id: str) -> Any:
            def change(img: Image) -> Image:
                reads.append(image_id)
                if reads.count(moved.id) == 1 and image_id == moved.id:  # after the batch's read, before its write
                    another_replica_writes()
                return img.model_copy(update={"outbox": []})

            return change

        await store.images.update_many({img.id: clear(img.id) for img in images})
        assert reads.count(moved.id) == 2 and reads.count(images[0].id) == 1  # only the loser was retried
        for img in images:
            stored_img = await stored(store, img.id)
            assert stored_img.outbox == []
        assert (await stored(store, moved.id)).submitted_by == ["u-other"]
        assert await store.database[GUARDS].count_documents({}) == 0
    finally:
        other.close()
        await store.close()
        await _drop_database(mongo_server.url, name)
