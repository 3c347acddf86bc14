"""Direct Kafka access for the fault tests: publish raw records, read a topic, watch a group's commits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def produce(
    bootstrap: str, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]] | None = None
) -> tuple[int, int]:
    """Publish one record; its (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value, key=key, headers=headers)
        return sent.partition, sent.offset
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, until: Callable[[list[Any]], bool] | None = None, seconds: float = 60.0
) -> list[Any]:
    """Every record of the topic from the beginning (a fresh group), until ``until(records)`` or idle."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"crowdseg-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=2000)
            for partition_records in batch.values():
                records.extend(partition_records)
            if until is not None and until(records):
                break
            if until is None and not batch and records:
                break
    finally:
        await consumer.stop()
    return records


async def committed(bootstrap: str, group: str, topic: str, partition: int) -> int:
    """The group's committed offset on one partition (-1 if none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    found = offsets.get(TopicPartition(topic, partition))
    return found.offset if found is not None else -1


def wait_committed_past(
    bootstrap: str, group: str, topic: str, partition: int, offset: int, timeout: float = 90
) -> None:
    """Block until the group has committed past ``offset``: the record was handled (or dead-lettered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(committed(bootstrap, group, topic, partition)) > offset:
            return
        time.sleep(0.5)
    raise AssertionError(f"group {group} did not commit past {topic}[{partition}]@{offset} in {timeout:.0f} s")
