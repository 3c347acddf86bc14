"""Backends for the contract suite: every test runs once per adapter pair.

``embedded``: SQLite store and file blobs in a temporary directory. ``cluster``: the MongoDB store on
FerretDB and the MinIO blob store, from the session servers of tests/servers.py, with a fresh
database and bucket per test so tests never see each other's documents.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from crowdseg.adapters.file_blobs import FileBlobStore
from crowdseg.adapters.minio_blobs import MinioBlobStore
from crowdseg.adapters.mongo_store import MongoStore
from crowdseg.adapters.sqlite_store import SqliteStore
from crowdseg.ports import BlobStore, Store
from pymongo import AsyncMongoClient

from tests.servers import FerretDBServer, MinioServer

BACKENDS = [
    pytest.param("embedded", id="sqlite+files"),
    pytest.param("cluster", id="mongo+minio", marks=pytest.mark.cluster),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if backend == "embedded":
        sqlite = SqliteStore(tmp_path / "store.sqlite3")
        await sqlite.open()
        yield sqlite
        await sqlite.close()
        return
    server: FerretDBServer = request.getfixturevalue("mongo_server")
    name = f"contract_{uuid.uuid4().hex[:12]}"
    mongo = MongoStore(server.url, name)
    await mongo.open()
    yield mongo
    await mongo.close()
    await _drop_database(server.url, name)


async def _drop_database(url: str, name: str) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url)
    try:
        await client.drop_database(name)
    finally:
        await client.close()


def minio_blobs(server: MinioServer, bucket: str) -> MinioBlobStore:
    return MinioBlobStore(server.endpoint, server.access_key, server.secret_key, bucket=bucket, secure=False)


@pytest.fixture
async def blobs(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    store: BlobStore
    if backend == "embedded":
        store = FileBlobStore(tmp_path / "objects")
    else:
        server: MinioServer = request.getfixturevalue("minio_server")
        store = minio_blobs(server, f"contract-{uuid.uuid4().hex[:12]}")
    await store.open()
    yield store
    await store.close()
