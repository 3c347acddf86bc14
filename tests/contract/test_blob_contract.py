"""The BlobStore port's contract: one suite, run against every blob adapter (see conftest.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from crowdseg.errors import InvalidInput, NotFound
from crowdseg.ports import BlobStore

pytestmark = pytest.mark.contract


async def collect(blobs: BlobStore, key: str, chunk_size: int = 1 << 20) -> list[bytes]:
    return [chunk async for chunk in blobs.stream(key, chunk_size)]


async def test_put_get_size(blobs: BlobStore) -> None:
    await blobs.put("tasks/t1/images/a.png", b"\x89PNG data", "image/png")
    assert await blobs.get("tasks/t1/images/a.png") == b"\x89PNG data"
    assert await blobs.size("tasks/t1/images/a.png") == 9
    await blobs.put("tasks/t1/images/a.png", b"replaced", "image/png")
    assert await blobs.get("tasks/t1/images/a.png") == b"replaced"
    await blobs.put("empty", b"", "application/octet-stream")
    assert await blobs.get("empty") == b""
    assert await blobs.size("empty") == 0


async def test_put_file(blobs: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    await blobs.put_file("uploads/upload.bin", source, "application/octet-stream")
    assert await blobs.get("uploads/upload.bin") == data
    assert await blobs.size("uploads/upload.bin") == len(data)


async def test_stream_in_chunks(blobs: BlobStore) -> None:
    data = os.urandom(250_000)
    await blobs.put("big.bin", data, "application/octet-stream")
    chunks = await collect(blobs, "big.bin", chunk_size=64 * 1024)
    assert b"".join(chunks) == data
    assert len(chunks) >= 4 and all(len(c) <= 64 * 1024 for c in chunks)
    assert b"".join(await collect(blobs, "big.bin")) == data


async def test_missing_objects(blobs: BlobStore) -> None:
    with pytest.raises(NotFound):
        await blobs.get("no/such/key")
    with pytest.raises(NotFound):
        await collect(blobs, "no/such/key")
    assert await blobs.size("no/such/key") is None


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", ".."])
async def test_invalid_keys(blobs: BlobStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        await blobs.put(key, b"x", "text/plain")


async def test_concurrent_puts_and_gets(blobs: BlobStore) -> None:
    payloads = {f"many/{i}.bin": os.urandom(1000 + i) for i in range(16)}
    await asyncio.gather(*(blobs.put(k, v, "application/octet-stream") for k, v in payloads.items()))
    got = await asyncio.gather(*(blobs.get(k) for k in payloads))
    assert got == list(payloads.values())


async def test_open_is_idempotent_and_ping(blobs: BlobStore) -> None:
    await blobs.open()
    await blobs.ping()


async def test_abandoned_stream_releases_its_connection(blobs: BlobStore) -> None:
    data = os.urandom(200_000)
    await blobs.put("abandoned.bin", data, "application/octet-stream")
    for _ in range(20):  # more than a connection pool holds, if abandoned streams leaked theirs
        stream = blobs.stream("abandoned.bin", chunk_size=1024)
        assert len(await anext(stream)) == 1024
        await stream.aclose()  # type: ignore[attr-defined]
    assert await blobs.get("abandoned.bin") == data


async def test_keys_with_spaces_and_unicode(blobs: BlobStore) -> None:
    key = "tasks/t 1/zellkern ü+ä (1).png"
    await blobs.put(key, b"x", "image/png")
    assert await blobs.get(key) == b"x"
    assert await blobs.size(key) == 1
