"""The composition root's parts: what a service needs at run time, built from its settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from crowdseg.bus import (
    BatchHandler,
    E,
    Handler,
    OutboxRelay,
    broadcast_subscriber,
    build_broker,
    ensure_topics,
    reliable_batch_subscriber,
    reliable_subscriber,
)
from crowdseg.ports import BlobStore, Store
from crowdseg.settings import CommonSettings, Profile
from faststream.kafka import KafkaBroker

log = logging.getLogger(__name__)


def build_store(settings: CommonSettings) -> Store:
    if settings.profile is Profile.EMBEDDED:
        from crowdseg.adapters.sqlite_store import SqliteStore

        return SqliteStore(settings.data_dir / "crowdseg.sqlite3")
    from crowdseg.adapters.mongo_store import MongoStore

    store: Store = MongoStore(
        settings.mongodb_url.get_secret_value(),
        settings.mongodb_database,
        atomic_updates=settings.mongodb_atomic_updates,
    )
    return store


def build_blobs(settings: CommonSettings) -> BlobStore:
    if settings.profile is Profile.EMBEDDED:
        from crowdseg.adapters.file_blobs import FileBlobStore

        return FileBlobStore(settings.data_dir / "objects")
    from crowdseg.adapters.minio_blobs import MinioBlobStore

    blobs: BlobStore = MinioBlobStore(
        settings.s3_endpoint,
        settings.s3_access_key,
        settings.s3_secret_key.get_secret_value(),
        bucket=settings.s3_bucket,
        secure=settings.s3_secure,
    )
    return blobs


@dataclass
class Runtime:
    """Everything a service's handlers and entrypoints are given; built once per process."""

    settings: Any
    store: Store
    blobs: BlobStore
    broker: KafkaBroker
    relay: OutboxRelay
    started: bool = False
    consumers: asyncio.Task[None] | None = None
    background: list[Any] = field(default_factory=list)
    # What a service keeps for the life of the process (the assign service's selection structures).
    components: dict[str, Any] = field(default_factory=dict)
    # Readiness checks beyond the store, blobs and broker (the embedded profile's worker processes).
    probes: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: CommonSettings) -> Runtime:
        store = build_store(settings)
        broker = build_broker(settings.kafka_bootstrap_servers, log_events=settings.log_events)
        relay = OutboxRelay(store, broker, poll_seconds=settings.outbox_poll_seconds)
        relay.declare_publishers()
        return cls(settings=settings, store=store, blobs=build_blobs(settings), broker=broker, relay=relay)

    def subscribe(self, event_type: type[E], group: str, handle: Handler[E], *, concurrency: int = 1) -> None:
        """Subscribe ``handle`` in consumer group ``group``, retried and dead-lettered as configured;
        ``concurrency`` partitions at once (each partition still in order)."""
        reliable_subscriber(
            self.broker,
            event_type=event_type,
            group=group,
            handle=handle,
            max_attempts=self.settings.consumer_max_attempts,
            backoff_seconds=self.settings.consumer_backoff_seconds,
            concurrency=concurrency,
        )

    def subscribe_batch(self, event_type: type[E], group: str, handle: BatchHandler[E], *, max_records: int) -> None:
        """Subscribe ``handle`` in consumer group ``group`` to whatever has arrived, up to ``max_records``
        events at once; each event retried and dead-lettered as configured."""
        reliable_batch_subscriber(
            self.broker,
            event_type=event_type,
            group=group,
            handle=handle,
            max_attempts=self.settings.consumer_max_attempts,
            backoff_seconds=self.settings.consumer_backoff_seconds,
            max_records=max_records,
        )

    def broadcast(self, event_type: type[E], name: str, handle: Handler[E]) -> None:
        """Give ``handle`` every event of the type, in every process (no consumer group)."""
        broadcast_subscriber(self.broker, event_type=event_type, name=name, handle=handle)

    async def consuming(self) -> None:
        """Wait until the consumers have started."""
        if self.consumers is not None:
            await asyncio.shield(self.consumers)

    async def start(self) -> None:
        await self.store.open()
        await self.blobs.open()
        await ensure_topics(self.settings.kafka_bootstrap_servers, self.settings.kafka_partitions)
        await self.broker.connect()
        self.relay.start()
        # Joining consumer groups takes seconds per group; HTTP serves meanwhile and /readyz waits.
        self.consumers = asyncio.create_task(self._start_consumers(), name="start-consumers")

    async def _start_consumers(self) -> None:
        await self.broker.start()
        self.started = True
        log.info("consumers started")

    async def stop(self) -> None:
        if self.consumers is not None:
            self.consumers.cancel()
            with contextlib.suppress(BaseException):
                await self.consumers
        await self.relay.stop()
        for task in self.background:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        await self.blobs.close()
        await self.store.close()
        self.started = False

    async def check_ready(self) -> dict[str, str]:
        status: dict[str, str] = {}
        probes = {"store": self.store.ping, "blobs": self.blobs.ping, "broker": self._ping_broker, **self.probes}
        for name, probe in probes.items():
            try:
                await probe()
                status[name] = "ok"
            except Exception as exc:
                status[name] = f"unavailable: {exc}"
        return status

    async def _ping_broker(self) -> None:
        if not await self.broker.ping(timeout=2.0):
            raise ConnectionError("broker did not answer")
