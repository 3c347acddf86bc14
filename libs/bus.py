"""Bus wiring: broker factory, topic creation, reliable consumers and the outbox relay.

Consumers follow FastStream's ``ack_after_process`` example with manual acknowledgement:
the offset is committed only after the handler succeeded (at least once). A failing handler is
retried with exponential back-off, then its event goes to the consumer's dead-letter topic; an
event that does not parse goes there at once. When every attempt failed only because a store or
the broker was unreachable (:class:`Unavailable`), the event is not dead-lettered but redelivered
after a pause (seek back, nothing committed): the outage stops the partition, not the work.
Handlers are idempotent, so redelivery after a rebalance (``CommitFailedError``) is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from crowdseg import metrics
from crowdseg.errors import CrowdsegError, Unavailable
from crowdseg.events import (
    ALL_TOPICS,
    EVENT_TYPES,
    Event,
    dead_letter_topic,
)
from crowdseg.ports import OutboxEntry, Store
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import AckStatus
from pydantic import ValidationError

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
Handler = Callable[[E], Awaitable[None]]

CONSUMER_GROUPS = ("consensus", "export")
# The documents whose outboxes each service fills. A process relays only the outboxes of the services it
# hosts: with every service its own process, each event is published by its producer, not once by every
# process (still at least once; consumers are idempotent). Selecting them in the store, not after it,
# keeps one service's backlog from hiding another's events behind the page limit.
OUTBOX_SOURCES = {
    "ingest": "images",
    "annotate": "submissions",
    "consensus": "consensus",
    "export": "exports",
}
# Events the relay reads and publishes at once: a 500-image upload is one page, cleared in one store call.
RELAY_PAGE = 500
# How long a handled event's offset waits for others to share its commit: at most this much work is
# redelivered after a crash, and a busy consumer commits a few times a second, not once per event.
COMMIT_LINGER_SECONDS = 0.1
MAX_REDELIVERIES = 20  # redeliveries of one event through an outage before it is dead-lettered after all


def build_broker(bootstrap_servers: str, *, log_events: bool = False) -> KafkaBroker:
    return KafkaBroker(
        bootstrap_servers,
        client_id="crowdseg",
        request_timeout_ms=15_000,
        graceful_timeout=10.0,
        logger=logging.getLogger("crowdseg.bus"),
        # The level of FastStream's line for every message received and processed.
        log_level=logging.INFO if log_events else logging.DEBUG,
        # No FastDepends: it resolves a handler's `KafkaMessage` parameter in a worker thread, for every
        # message (issue 8: a thread hop per event in the request process); handlers take the message
        # from the broker's context instead (`_current_message`).
        apply_types=False,
    )


def _current_message(broker: KafkaBroker) -> KafkaMessage:
    message: KafkaMessage = broker.context.get_local("message")
    return message


async def ensure_topics(bootstrap_servers: str, partitions: int) -> None:
    """Create every topic and dead-letter topic; existing ones are left alone."""
    wanted = [*ALL_TOPICS, *(dead_letter_topic(group) for group in CONSUMER_GROUPS)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15_000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    except KafkaError as exc:
        raise Unavailable(f"Kafka at {bootstrap_servers} is unreachable: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def publish(broker: KafkaBroker, topic: str, key: str, payload: dict[str, Any] | bytes) -> None:
    try:
        await broker.publish(payload, topic, key=key.encode())
    except (TimeoutError, KafkaError, ConnectionError) as exc:
        raise Unavailable(f"cannot publish to {topic}: {exc}") from exc


async def send(broker: KafkaBroker, topic: str, key: str, payload: dict[str, Any] | bytes) -> asyncio.Future[Any]:
    """Hand an event to the producer without waiting for its delivery; await :func:`confirmed` on the result."""
    try:
        return await broker.publish(payload, topic, key=key.encode(), no_confirm=True)
    except (TimeoutError, KafkaError, ConnectionError) as exc:
        raise Unavailable(f"cannot publish to {topic}: {exc}") from exc


async def confirmed(delivery: asyncio.Future[Any], topic: str) -> None:
    try:
        await delivery
    except (TimeoutError, KafkaError, ConnectionError) as exc:
        raise Unavailable(f"cannot publish to {topic}: {exc}") from exc


def reliable_subscriber(
    broker: KafkaBroker,
    *,
    event_type: type[E],
    group: str,
    handle: Handler[E],
    max_attempts: int,
    backoff_seconds: float,
    concurrency: int = 1,
) -> None:
    """Subscribe ``handle`` to the event's topic in consumer group ``group``, with ``concurrency``
    consumers in this process (each owns some partitions and handles them in order)."""
    topic = event_type.topic
    dead_letters = dead_letter_topic(group)
    broker.publisher(dead_letters, title=f"{dead_letters}:publish", description=f"Events {group} could not handle")

    outages: dict[tuple[int | None, int | None], int] = {}  # (partition, offset) → redeliveries

    @broker.subscriber(
        topic,
        group_id=group,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        max_workers=concurrency,
        title=f"{topic}:{group}",
        description=f"{event_type.__name__} consumed by the {group} service",
    )
    async def consume(_: Any) -> None:
        msg = _current_message(broker)
        record: Any = msg.raw_message
        _record_lag(getattr(msg, "consumer", None), record, topic, group)
        try:
            event = event_type.model_validate_json(msg.body)
        except ValidationError as exc:
            await _dead_letter_or_redeliver(broker, msg, dead_letters, topic, group, f"malformed event: {exc}")
            return
        metrics.EVENT_AGE_SECONDS.labels(topic, group).observe(
            max(0.0, (datetime.now(UTC) - event.occurred_at).total_seconds())
        )
        error = await _handle_with_retries(handle, event, topic, group, max_attempts, backoff_seconds)
        position = (getattr(record, "partition", None), getattr(record, "offset", None))
        if isinstance(error, _Transient) and outages.get(position, 0) < MAX_REDELIVERIES:
            # A store or the broker is down: every event would fail alike, and dead-lettering would only
            # set valid work aside. Redeliver this one (seek back, nothing committed) once it may succeed.
            outages[position] = outages.get(position, 0) + 1
            log.warning("%s offset %s waits for a backing service: %s", topic, position[1], error)
            await asyncio.sleep(min(30.0, backoff_seconds * 2**max_attempts))
            try:
                await msg.nack()
            except Exception as exc:  # the partition moved to another worker meanwhile: it starts uncommitted
                log.warning("cannot seek back on %s: %s", topic, exc)
            return
        outages.pop(position, None)
        if error is not None:
            log.error("dead-lettering %s offset %s: %s", topic, getattr(record, "offset", "?"), error)
            await _dead_letter_or_redeliver(broker, msg, dead_letters, topic, group, error)
            return
        metrics.EVENTS_CONSUMED.labels(topic, group).inc()
        await _ack(msg)


BatchHandler = Callable[[list[E]], Awaitable[list[BaseException | None]]]


def reliable_batch_subscriber(
    broker: KafkaBroker,
    *,
    event_type: type[E],
    group: str,
    handle: BatchHandler[E],
    max_attempts: int,
    backoff_seconds: float,
    max_records: int,
) -> None:
    """Subscribe ``handle`` to the event's topic in consumer group ``group`` with whatever has arrived,
    up to ``max_records`` events at once: it returns each event's outcome (None, or what it raised).

    Each event is then treated as :func:`reliable_subscriber` treats it: the failed ones are retried
    together with back-off, a permanent failure is dead-lettered, and while a store or the broker is
    down a partition is rewound to its first event that could not be handled (nothing from there on is
    committed). Issue 8: per event, the consumer's round trips, the commit, the consensus's blob sync
    and the relay of what it produced were most of the worker's CPU; per batch they are shared.
    """
    topic = event_type.topic
    dead_letters = dead_letter_topic(group)
    broker.publisher(dead_letters, title=f"{dead_letters}:publish", description=f"Events {group} could not handle")
    outages: dict[tuple[int, int], int] = {}  # (partition, offset) → redeliveries

    @broker.subscriber(
        topic,
        group_id=group,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        batch=True,
        max_records=max_records,
        batch_timeout_ms=200,
        title=f"{topic}:{group}",
        description=f"{event_type.__name__} consumed by the {group} service, in batches",
    )
    async def consume(_: Any) -> None:
        msg = _current_message(broker)
        records: tuple[Any, ...] = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
        if not records:
            return
        _record_lag(msg.consumer, records[-1], topic, group)
        events: dict[int, E] = {}  # index in records → its event
        failures: dict[int, str] = {}  # index in records → why it is given up
        for index, record in enumerate(records):
            try:
                events[index] = event_type.model_validate_json(record.value or b"")
            except ValidationError as exc:
                failures[index] = f"malformed event: {exc}"
        now = datetime.now(UTC)
        for event in events.values():
            metrics.EVENT_AGE_SECONDS.labels(topic, group).observe(max(0.0, (now - event.occurred_at).total_seconds()))
        reasons = await _handle_batch_with_retries(
            handle, list(events.values()), topic, group, max_attempts, backoff_seconds
        )
        failures |= {index: reason for index, reason in zip(events, reasons, strict=True) if reason is not None}
        waiting: dict[TopicPartition, int] = {}  # partition → its first event to redeliver
        for index, reason in sorted(failures.items()):
            record = records[index]
            partition = TopicPartition(record.topic, record.partition)
            if partition in waiting:
                continue
            position = (record.partition, record.offset)
            if isinstance(reason, _Transient) and outages.get(position, 0) < MAX_REDELIVERIES:
                outages[position] = outages.get(position, 0) + 1
                log.warning("%s offset %s waits for a backing service: %s", topic, record.offset, reason)
                waiting[partition] = record.offset
                continue
            outages.pop(position, None)
            log.error("dead-lettering %s offset %s: %s", topic, record.offset, reason)
            if not await _dead_letter(broker, record.value or b"", record.key, dead_letters, topic, group, reason):
                waiting[partition] = record.offset
        handled = len(records) - len(failures)
        if handled:
            metrics.EVENTS_CONSUMED.labels(topic, group).inc(handled)
        _commit_batch(msg.consumer, records, waiting)
        if waiting:
            await asyncio.sleep(min(30.0, backoff_seconds * 2**max_attempts))
            for partition, offset in waiting.items():
                try:
                    msg.consumer.seek(partition, offset)
                except Exception as exc:  # the partition moved to another worker meanwhile: it starts uncommitted
                    log.warning("cannot seek back on %s: %s", topic, exc)
        msg.committed = AckStatus.ACKED


async def _handle_batch_with_retries(
    handle: BatchHandler[E], events: list[E], topic: str, group: str, max_attempts: int, backoff_seconds: float
) -> list[str | None]:
    """Each event's reason for being given up (None once handled), as :func:`_handle_with_retries`;
    only the failed ones are tried again."""
    reasons: list[str | None] = [None] * len(events)
    transient = [True] * len(events)
    pending = list(range(len(events)))
    for attempt in range(1, max_attempts + 1):
        if not pending:
            break
        try:
            outcomes = await handle([events[i] for i in pending])
        except Exception as exc:  # the batch as a whole failed: every event of it did
            outcomes = [exc] * len(pending)
        retry: list[int] = []
        for index, outcome in zip(pending, outcomes, strict=True):
            if outcome is None:
                reasons[index] = None
                continue
            metrics.EVENTS_FAILED.labels(topic, group).inc()
            if isinstance(outcome, Unavailable):
                reasons[index] = f"{type(outcome).__name__}: {outcome}"
            elif isinstance(outcome, CrowdsegError):  # a permanent refusal: retrying cannot help
                reasons[index] = f"{type(outcome).__name__}: {outcome.detail}"
                transient[index] = False
                continue
            else:
                log.error("handler for %s failed (attempt %d/%d)", topic, attempt, max_attempts, exc_info=outcome)
                reasons[index] = f"{type(outcome).__name__}: {outcome}"
                transient[index] = False
            retry.append(index)
        pending = retry
        if pending and attempt < max_attempts:
            await asyncio.sleep(backoff_seconds * 2 ** (attempt - 1))
    return [
        None if reason is None else _Transient(reason) if transient[i] else reason for i, reason in enumerate(reasons)
    ]


def _commit_batch(consumer: Any, records: tuple[Any, ...], waiting: dict[TopicPartition, int]) -> None:
    """Commit each partition past the batch's events, or up to its first event to redeliver."""
    last: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        stop = waiting.get(partition)
        if stop is None or record.offset < stop:
            last[partition] = max(record.offset, last.get(partition, -1))
    committer = _committer(consumer)
    for partition, offset in last.items():
        committer.handled(partition, offset)


def broadcast_subscriber(broker: KafkaBroker, *, event_type: type[E], name: str, handle: Handler[E]) -> None:
    """Give this process every event of the topic, from the newest on, outside any consumer group.

    For structures in memory that events keep current while the store stays the state of record
    (the assign service's selection): every replica needs every event, nothing is committed, and a
    failing handler is only logged, since the store corrects the structure when it disagrees.
    """
    topic = event_type.topic

    @broker.subscriber(
        topic,
        group_id=None,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="latest",
        title=f"{topic}:{name}",
        description=f"{event_type.__name__} seen by every {name} process",
    )
    async def consume(_: Any) -> None:
        msg = _current_message(broker)
        try:
            event = event_type.model_validate_json(msg.body)
            await handle(event)
        except Exception:
            log.exception("%s could not follow an event of %s", name, topic)
        else:
            metrics.EVENTS_CONSUMED.labels(topic, name).inc()


class _Transient(str):
    """The reason a handler failed when only a backing service being unreachable stopped it."""


async def _handle_with_retries(
    handle: Handler[E], event: E, topic: str, group: str, max_attempts: int, backoff_seconds: float
) -> str | None:
    """Run the handler; None on success, else the reason it was given up (a :class:`_Transient` one
    when every attempt failed only because a store or the broker was unavailable)."""
    transient = True
    for attempt in range(1, max_attempts + 1):
        try:
            await handle(event)
            return None
        except Unavailable as exc:
            reason = f"{type(exc).__name__}: {exc}"
        except CrowdsegError as exc:  # a permanent refusal: retrying cannot help
            metrics.EVENTS_FAILED.labels(topic, group).inc()
            return f"{type(exc).__name__}: {exc.detail}"
        except Exception as exc:
            log.exception("handler for %s failed (attempt %d/%d)", topic, attempt, max_attempts)
            reason = f"{type(exc).__name__}: {exc}"
            transient = False
        metrics.EVENTS_FAILED.labels(topic, group).inc()
        if attempt < max_attempts:
            await asyncio.sleep(backoff_seconds * 2 ** (attempt - 1))
    return _Transient(reason) if transient else reason


async def _dead_letter_or_redeliver(
    broker: KafkaBroker, msg: KafkaMessage, dead_letters: str, topic: str, group: str, reason: str
) -> None:
    record: Any = msg.raw_message
    if await _dead_letter(broker, msg.body, getattr(record, "key", None), dead_letters, topic, group, reason):
        await _ack(msg)
    else:
        await msg.nack()


async def _dead_letter(
    broker: KafkaBroker, body: bytes, key: bytes | None, dead_letters: str, topic: str, group: str, reason: str
) -> bool:
    """Set one event aside on the dead-letter topic; False if that topic is unreachable (the event must
    then be redelivered, never committed past)."""
    headers = {"x-error": reason[:1000], "x-original-topic": topic, "x-consumer-group": group}
    try:
        await broker.publish(body, dead_letters, key=key, headers=headers)
    except Exception:
        log.exception("cannot dead-letter an event of %s; it will be redelivered", topic)
        return False
    metrics.EVENTS_DEAD_LETTERED.labels(topic, group).inc()
    return True


async def _ack(msg: KafkaMessage) -> None:
    consumer = getattr(msg, "consumer", None)
    record: Any = msg.raw_message
    if consumer is None or not hasattr(record, "offset"):
        try:
            await msg.ack()
        except KafkaError as exc:  # CommitFailedError after a rebalance: the event comes back, handlers are idempotent
            log.warning("commit failed (%s); the event will be redelivered", exc)
        return
    _committer(consumer).handled(TopicPartition(record.topic, record.partition), record.offset)
    msg.committed = AckStatus.ACKED


def _committer(consumer: Any) -> _Committer:
    committer = _COMMITTERS.get(consumer)
    if committer is None:
        committer = _COMMITTERS[consumer] = _Committer(consumer)
    return committer


class _Committer:
    """Commits one consumer's offsets in the background, coalesced: while a commit is in flight, the
    events handled meanwhile only move the offsets, and the next commit takes them all.

    Issue 8: awaiting a commit round trip after every event held each partition's next event back and
    was a tenth of the consensus worker's CPU. Each offset is the one after an event whose handler has
    finished (a partition's events are handled in order), so nothing unhandled is ever committed; what
    was handled but not yet committed when a process dies or a partition moves is redelivered, as after
    a rebalance, and handlers are idempotent.
    """

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._offsets: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    def handled(self, partition: TopicPartition, offset: int) -> None:
        self._offsets[partition] = max(offset + 1, self._offsets.get(partition, 0))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_all())

    async def _commit_all(self) -> None:
        while self._offsets:
            await asyncio.sleep(COMMIT_LINGER_SECONDS)  # the events handled meanwhile join this commit
            offsets, self._offsets = self._offsets, {}
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:  # after a rebalance: those events come back, handlers are idempotent
                log.warning("commit failed (%s); its events will be redelivered", exc)
            except Exception:
                log.exception("commit failed; its events will be redelivered")


_COMMITTERS: weakref.WeakKeyDictionary[Any, _Committer] = weakref.WeakKeyDictionary()


def _record_lag(consumer: Any, record: Any, topic: str, group: str) -> None:
    """How far the consumer is behind its partition's end, as of ``record``."""
    with contextlib.suppress(Exception):
        highwater = consumer.highwater(TopicPartition(record.topic, record.partition))
        if highwater is not None:
            metrics.CONSUMER_LAG.labels(topic, group).set(max(0, highwater - record.offset - 1))


class OutboxRelay:
    """Publishes the events waiting in documents' outboxes, at least once, then clears them."""

    def __init__(self, store: Store, broker: KafkaBroker, *, poll_seconds: float) -> None:
        self._store = store
        self._broker = broker
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.services: frozenset[str] | None = None  # the services hosted here; None relays every outbox

    def poke(self) -> None:
        """Ask the relay to publish now instead of at its next poll."""
        self._wake.set()

    def declare_publishers(self) -> None:
        """Declare every topic's publisher so the AsyncAPI document describes its payload."""
        for event_type in EVENT_TYPES.values():
            self._broker.publisher(
                event_type.topic,
                schema=event_type,
                title=f"{event_type.topic}:publish",
                description=(event_type.__doc__ or event_type.__name__).strip().splitlines()[0],
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()

    async def flush(self) -> int:
        """Publish one page of pending events; returns how many there were.

        Events of one (topic, key) go out one after the other, in outbox order (Kafka keeps a key's
        order); different keys go out at once, so the producer batches them. The published ones are
        then cleared in one store call; if any failed, the first failure is raised after that.
        """
        sources = None if self.services is None else {OUTBOX_SOURCES[s] for s in self.services if s in OUTBOX_SOURCES}
        entries = await self._store.outbox.pending(RELAY_PAGE, sources=sources)
        metrics.OUTBOX_PENDING.set(len(entries))
        by_key: dict[tuple[str, str], list[OutboxEntry]] = {}
        for entry in entries:
            by_key.setdefault((entry.event.topic, entry.event.key), []).append(entry)
        outcomes = await asyncio.gather(*(self._publish_in_order(group) for group in by_key.values()))
        published = [entry for done, _error in outcomes for entry in done]
        if published:
            await self._store.outbox.mark_published_many(published)
        for entry in published:
            metrics.EVENTS_PUBLISHED.labels(entry.event.topic).inc()
        for _done, error in outcomes:
            if error is not None:
                raise error
        return len(entries)

    async def _publish_in_order(self, entries: list[OutboxEntry]) -> tuple[list[OutboxEntry], Exception | None]:
        """Publish one key's events in order: each is handed to the producer (which appends it to the
        partition's batch in that order) before its delivery is awaited, so they share requests.
        Returns (the entries whose delivery was confirmed, in order, up to the first failure; the failure)."""
        sent: list[tuple[OutboxEntry, asyncio.Future[Any]]] = []
        failure: Exception | None = None
        for entry in entries:
            try:
                sent.append((entry, await send(self._broker, entry.event.topic, entry.event.key, entry.event.payload)))
            except Exception as exc:
                failure = exc
                break
        done: list[OutboxEntry] = []
        for entry, delivery in sent:
            try:
                await confirmed(delivery, entry.event.topic)
            except Exception as exc:
                failure = failure or exc
                break
            done.append(entry)
        for _entry, delivery in sent[len(done) :]:
            delivery.add_done_callback(_consume_outcome)  # not confirmed: published again on the next flush
        return done, failure

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
            self._wake.clear()
            try:
                while await self.flush() >= RELAY_PAGE:
                    pass
            except Unavailable as exc:
                log.warning("outbox relay: %s; retrying", exc)
            except Exception:
                log.exception("outbox relay failed; retrying")


def _consume_outcome(delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled():
        delivery.exception()
