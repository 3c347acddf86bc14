"""Fail fast before a cluster service starts: every backing service it is configured with must answer.

Each check raises :class:`Unavailable` with one line naming what did not answer (credentials are
never printed), so ``crowdseg serve`` exits non-zero at once instead of crash-looping in a lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar
from urllib.parse import urlsplit

from crowdseg.bus import ensure_topics
from crowdseg.errors import SchemaTooNew, Unavailable
from crowdseg.ports import BlobStore, Store
from crowdseg.runtime import build_blobs, build_store
from crowdseg.settings import CommonSettings, Profile

T = TypeVar("T")


def redact_url(url: str) -> str:
    """``mongodb://user:pw@host:27017/db?x`` → ``mongodb://host:27017``."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    hosts = parts.netloc.rsplit("@", 1)[-1] if "," in parts.netloc else f"{host}{port}"
    return f"{parts.scheme}://{hosts}" if parts.scheme else hosts


async def _within(what: str, seconds: float, step: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(step, seconds)
    except TimeoutError as exc:
        raise Unavailable(f"{what} did not answer within {seconds:.0f} s") from exc
    except SchemaTooNew:
        raise  # it answered: its data are newer than this code, which the error says
    except Unavailable as exc:
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else exc.detail
        raise Unavailable(f"{what} is unreachable: {reason}") from exc
    except Exception as exc:  # a driver's own error type: still one line, still naming the thing
        raise Unavailable(f"{what} is unreachable: {type(exc).__name__}: {exc}") from exc


async def preflight(settings: CommonSettings, *, seconds: float = 20.0) -> None:
    """Kafka (and its topics, created here), the document store and the blob store all answer."""
    # The drivers log every failed connection attempt; the one line we raise says it all.
    for name in ("aiokafka", "pymongo", "urllib3"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        await _check(settings, seconds)
    finally:
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
        logging.getLogger("pymongo").setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.WARNING)


async def _check(settings: CommonSettings, seconds: float) -> None:
    kafka = f"Kafka at {settings.kafka_bootstrap_servers} (CROWDSEG_KAFKA_BOOTSTRAP_SERVERS)"
    await _within(kafka, seconds, ensure_topics(settings.kafka_bootstrap_servers, settings.kafka_partitions))
    if settings.profile is Profile.CLUSTER:
        mongo = f"MongoDB at {redact_url(settings.mongodb_url.get_secret_value())} (CROWDSEG_MONGODB_URL)"
        s3 = f"S3 at {settings.s3_endpoint} (CROWDSEG_S3_ENDPOINT)"
    else:
        mongo, s3 = f"the document store in {settings.data_dir}", f"the object store in {settings.data_dir}"
    store = build_store(settings)
    try:
        await _within(mongo, seconds, _open_and_ping(store))
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    blobs = build_blobs(settings)
    try:
        await _within(s3, seconds, _open_and_ping(blobs))
    finally:
        with contextlib.suppress(Exception):
            await blobs.close()


async def _open_and_ping(resource: Store | BlobStore) -> None:
    await resource.open()
    await resource.ping()
