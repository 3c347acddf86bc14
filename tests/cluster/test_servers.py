"""Smoke tests of the real test servers (tests/servers.py): each starts from the provisioned cache
and answers a real client; Kafka survives a graceful and a hard restart with its data.

The fixtures ``kafka_server``, ``mongo_server`` and ``minio_server`` come from tests/servers.py
(imported by the conftest). If the servers are not provisioned, these tests fail with
"run make servers"; they are never skipped.
"""

from __future__ import annotations

import io
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from minio import Minio
from pymongo import AsyncMongoClient

from tests.servers import (
    HINT,
    FerretDBServer,
    KafkaServer,
    MinioServer,
    ServerNotProvisionedError,
    load_manifest,
)

pytestmark = pytest.mark.cluster


def test_servers_are_provisioned() -> None:
    missing: str | None = None
    try:
        manifest = load_manifest()
    except ServerNotProvisionedError as exc:
        missing = str(exc)
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    assert HINT == "run make servers"
    assert manifest["kafka"]["version"].startswith("4.")


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"image-1")
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int, group: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        while len(got) < count:
            batch = await consumer.getmany(timeout_ms=30_000, max_records=count - len(got))
            if not batch:
                break
            for records in batch.values():
                got.extend(r.value for r in records if r.value is not None)
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def test_kafka_round_trip(kafka_server: KafkaServer) -> None:
    topic = f"crowdseg.test.roundtrip.{uuid.uuid4().hex[:8]}.v1"  # auto-created, 4 partitions
    values = [f"event-{i}".encode() for i in range(10)]
    await _produce(kafka_server.bootstrap, topic, values)
    got = await _consume(kafka_server.bootstrap, topic, len(values), group=f"g-{uuid.uuid4().hex[:8]}")
    assert got == values  # one key, one partition: order is kept


@pytest.mark.parametrize("hard", [False, True], ids=["graceful", "hard-kill"])
async def test_kafka_restart_keeps_data_and_port(kafka_server: KafkaServer, hard: bool) -> None:
    topic = f"crowdseg.test.restart.{uuid.uuid4().hex[:8]}.v1"
    group = f"g-{uuid.uuid4().hex[:8]}"
    port, pid = kafka_server.port, kafka_server.pid
    await _produce(kafka_server.bootstrap, topic, [b"before"])
    assert await _consume(kafka_server.bootstrap, topic, 1, group) == [b"before"]

    kafka_server.restart(hard=hard)

    assert kafka_server.port == port
    assert kafka_server.pid != pid
    await _produce(kafka_server.bootstrap, topic, [b"after"])
    # the committed offset survived: the group sees only the new record
    assert await _consume(kafka_server.bootstrap, topic, 1, group) == [b"after"]
    # and the log did too
    assert await _consume(kafka_server.bootstrap, topic, 2, f"{group}-fresh") == [b"before", b"after"]


async def test_mongo_insert_find(mongo_server: FerretDBServer) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_server.url)
    try:
        coll = client["crowdseg_test"][f"images_{uuid.uuid4().hex[:8]}"]
        await coll.create_index("image_id", unique=True)
        await coll.insert_many([{"image_id": f"img-{i}", "covered": i % 3} for i in range(6)])
        doc = await coll.find_one_and_update({"image_id": "img-4"}, {"$inc": {"covered": 1}}, return_document=True)
        assert doc is not None and doc["covered"] == 2
        found = [d["image_id"] async for d in coll.find({"covered": 2}).sort("image_id", 1)]
        assert found == ["img-2", "img-4", "img-5"]
    finally:
        await client.close()


async def test_mongo_restart_keeps_data(mongo_server: FerretDBServer) -> None:
    name = f"restart_{uuid.uuid4().hex[:8]}"
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_server.url)
    try:
        await client["crowdseg_test"][name].insert_one({"_id": "a", "v": 1})
    finally:
        await client.close()
    mongo_server.restart(hard=True)
    client = AsyncMongoClient(mongo_server.url)
    try:
        assert await client["crowdseg_test"][name].find_one({"_id": "a"}) == {"_id": "a", "v": 1}
    finally:
        await client.close()


def test_minio_put_get(minio_server: MinioServer) -> None:
    client = Minio(
        minio_server.endpoint,
        access_key=minio_server.access_key,
        secret_key=minio_server.secret_key,
        secure=False,
    )
    bucket = f"crowdseg-test-{uuid.uuid4().hex[:8]}"
    client.make_bucket(bucket)
    payload = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
    client.put_object(bucket, "images/a.png", io.BytesIO(payload), len(payload), content_type="image/png")
    response = client.get_object(bucket, "images/a.png")
    try:
        assert response.read() == payload
        assert response.headers["Content-Type"] == "image/png"
    finally:
        response.close()
        response.release_conn()
    assert [o.object_name for o in client.list_objects(bucket, prefix="images/")] == ["images/a.png"]
