"""What only the cluster adapters have: failing fast, wiring by profile, and guards left by a dead writer."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from crowdseg.adapters.minio_blobs import MinioBlobStore
from crowdseg.adapters.mongo_store import GUARDS, MongoStore
from crowdseg.errors import Unavailable
from crowdseg.runtime import build_blobs, build_store
from crowdseg.settings import CommonSettings, Profile
from pydantic import SecretStr

from tests.contract.conftest import _drop_database, minio_blobs
from tests.contract.test_store_contract import stored_image
from tests.servers import FerretDBServer, MinioServer, free_port

pytestmark = [pytest.mark.contract, pytest.mark.cluster]


@pytest.fixture
async def mongo(mongo_server: FerretDBServer) -> AsyncIterator[MongoStore]:
    name = f"contract_{uuid.uuid4().hex[:12]}"
    store = MongoStore(mongo_server.url, name)
    await store.open()
    yield store
    await store.close()
    await _drop_database(mongo_server.url, name)


async def test_unreachable_mongo_fails_fast() -> None:
    store = MongoStore(f"mongodb://127.0.0.1:{free_port()}/", "crowdseg", timeout_ms=300)
    with pytest.raises(Unavailable):  # after its 300 ms server selection, not the driver's default 30 s
        await store.open()


async def test_unreachable_minio_fails_fast() -> None:
    blobs = MinioBlobStore(f"127.0.0.1:{free_port()}", "key", "secret-secret", bucket="crowdseg", timeout_seconds=1)
    with pytest.raises(Unavailable):
        await blobs.open()
    await blobs.close()


async def test_wrong_minio_credentials_are_unavailable(minio_server: MinioServer) -> None:
    blobs = MinioBlobStore(minio_server.endpoint, minio_server.access_key, "wrong-secret", bucket="crowdseg")
    with pytest.raises(Unavailable):
        await blobs.open()
    await blobs.close()


async def test_cluster_profile_builds_these_adapters(mongo_server: FerretDBServer, minio_server: MinioServer) -> None:
    database, bucket = f"contract_{uuid.uuid4().hex[:12]}", f"contract-{uuid.uuid4().hex[:12]}"
    settings = CommonSettings(
        profile=Profile.CLUSTER,
        secret_key=SecretStr(uuid.uuid4().hex * 2),
        kafka_bootstrap_servers="127.0.0.1:9",
        mongodb_url=SecretStr(mongo_server.url),
        mongodb_database=database,
        s3_endpoint=minio_server.endpoint,
        s3_access_key=minio_server.access_key,
        s3_secret_key=SecretStr(minio_server.secret_key),
        s3_bucket=bucket,
    )
    store, blobs = build_store(settings), build_blobs(settings)
    assert isinstance(store, MongoStore) and isinstance(blobs, MinioBlobStore)
    await store.open()
    await blobs.open()
    try:
        await store.ping()
        await blobs.put("k", b"v", "text/plain")
        assert await minio_blobs(minio_server, bucket).get("k") == b"v"
    finally:
        await blobs.close()
        await store.close()
        await _drop_database(mongo_server.url, database)


async def test_a_guard_left_by_a_dead_writer_expires(mongo: MongoStore) -> None:
    _, img = await stored_image(mongo, replicates=3)
    doc = await mongo.database["images"].find_one({"_id": img.id})
    assert doc is not None
    guard = {"_id": f"images/{img.id}/{doc['_rev']}", "token": "dead", "at": time.time()}
    await mongo.database[GUARDS].insert_one(guard)
    mongo.busy_seconds = 0.3
    with pytest.raises(Unavailable):  # a live guard: the document is busy
        await mongo.images.record_submitter(img.id, "u1")
    await mongo.database[GUARDS].update_one({"_id": guard["_id"]}, {"$set": {"at": time.time() - 3600}})
    mongo.busy_seconds = 10
    await mongo.images.record_submitter(img.id, "u1")  # a stale guard is cleared
    stored = await mongo.images.get(img.id)
    assert stored is not None and stored.submitted_by == ["u1"]
    assert await mongo.database[GUARDS].count_documents({}) == 0


async def test_revisions_advance_and_guards_are_released(mongo: MongoStore) -> None:
    _, img = await stored_image(mongo, replicates=3)
    for user_id in ("u1", "u2", "u3"):
        await mongo.images.record_submitter(img.id, user_id)
    doc = await mongo.database["images"].find_one({"_id": img.id})
    assert doc is not None and doc["_rev"] == 3
    assert await mongo.database[GUARDS].count_documents({}) == 0
