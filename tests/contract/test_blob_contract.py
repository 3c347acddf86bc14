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


async def test_put_many(blobs: BlobStore) -> None:
    await blobs.put_many(
        [("consensus/t/i/v1/mask.png", b"mask", "image/png"), ("consensus/t/i/v1/p.png", b"p", "image/png")]
    )
    assert await blobs.get("consensus/t/i/v1/mask.png") == b"mask"
    assert await blobs.get("consensus/t/i/v1/p.png") == b"p"
    with pytest.raises(InvalidInput):
        await blobs.put_many([("fine", b"x", "text/plain"), ("../escape", b"x", "text/plain")])
    await blobs.put_many([])


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


async def test_concurrent_puts_of_one_key_all_succeed(blobs: BlobStore, tmp_path: Path) -> None:
    """issue 9 item 1: concurrent writes of one key raced through one fixed `.partial` temp file, so
    `os.replace` failed and the request answered 500; each write now has a temporary file of its own."""
    payloads = [bytes([n]) * (50_000 + n) for n in range(24)]
    source = tmp_path / "copy.bin"
    source.write_bytes(b"from a file" * 1000)
    writes = [blobs.put("same/key.png", data, "image/png") for data in payloads]
    writes += [blobs.put_file("same/key.png", source, "image/png") for _ in range(8)]
    await asyncio.gather(*writes)
    assert await blobs.get("same/key.png") in [*payloads, source.read_bytes()]
    if isinstance(getattr(blobs, "root", None), Path):
        assert [p.name for p in (blobs.root / "same").iterdir()] == ["key.png"]  # type: ignore[attr-defined]


async def test_delete_removes_an_object_and_ignores_a_missing_one(blobs: BlobStore) -> None:
    """issue 9 item 1: a request that loses the race for a submission removes the mask it wrote
    (no orphaned blobs), so the port can delete."""
    await blobs.put("doomed/one.png", b"x", "image/png")
    await blobs.delete("doomed/one.png")
    assert await blobs.size("doomed/one.png") is None
    await blobs.delete("doomed/one.png")
    await blobs.delete("never/was.png")
    with pytest.raises(InvalidInput):
        await blobs.delete("../escape")
