"""The cluster profile's blob store: one bucket on MinIO or any S3 service, via the ``minio`` client.

The client is synchronous; every call runs in a worker thread (``asyncio.to_thread``). Objects are
written whole by S3 itself (a reader never sees half an object). Driver and transport errors are
translated here: a missing object is :class:`NotFound`, anything unreachable is :class:`Unavailable`.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import urllib3
from crowdseg.errors import InvalidInput, NotFound, Unavailable
from minio import Minio
from minio.error import MinioException, S3Error

T = TypeVar("T")

MISSING_CODES = {"NoSuchKey", "NoSuchObject"}
OWNED_CODES = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


def check_key(key: str) -> str:
    """The same key rules as the file store, so a key valid on one backend is valid on both."""
    parts = PurePosixPath(key).parts
    if not parts or key.startswith("/") or any(part in ("..", ".", "") for part in parts):
        raise InvalidInput(f"invalid object key {key!r}")
    return key


@contextmanager
def translate(key: str | None = None) -> Iterator[None]:
    try:
        yield
    except S3Error as exc:
        if key is not None and exc.code in MISSING_CODES:
            raise NotFound(f"object {key} not found") from exc
        raise Unavailable(f"blob store error: {exc.code}: {exc.message}") from exc
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unavailable(f"the blob store is unreachable: {exc}") from exc


class MinioBlobStore:
    """Implements :class:`crowdseg.ports.BlobStore` on one S3 bucket."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        bucket: str,
        secure: bool = False,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.endpoint = endpoint.removeprefix("http://").removeprefix("https://").rstrip("/")
        self.bucket = bucket
        self._http = http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_seconds, read=max(timeout_seconds, 60.0)),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            maxsize=16,
        )
        self.client = Minio(
            self.endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure or endpoint.startswith("https://"),
            http_client=http,
        )

    async def _call(self, fn: Callable[..., T], *args: Any, key: str | None = None, **kwargs: Any) -> T:
        with translate(key):
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def open(self) -> None:
        try:
            await self._call(self._ensure_bucket)
        except Unavailable as exc:
            raise Unavailable(f"cannot open the blob store at {self.endpoint}: {exc.detail}") from exc

    def _ensure_bucket(self) -> None:
        if self.client.bucket_exists(self.bucket):
            return
        try:
            self.client.make_bucket(self.bucket)
        except S3Error as exc:  # another process created it meanwhile
            if exc.code not in OWNED_CODES:
                raise

    async def ping(self) -> None:
        if not await self._call(self.client.bucket_exists, self.bucket):
            raise Unavailable(f"bucket {self.bucket} is missing")

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._call(
            self.client.put_object, self.bucket, check_key(key), io.BytesIO(data), len(data), content_type=content_type
        )

    async def put_many(self, objects: Sequence[tuple[str, bytes, str]]) -> None:
        await asyncio.gather(*(self.put(key, data, content_type) for key, data, content_type in objects))

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        await self._call(self.client.fput_object, self.bucket, check_key(key), str(path), content_type=content_type)

    async def get(self, key: str) -> bytes:
        return await self._call(self._read_all, check_key(key), key=key)

    def _read_all(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    async def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        response = await self._call(self.client.get_object, self.bucket, check_key(key), key=key)
        try:
            while chunk := await self._call(response.read, chunk_size):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def size(self, key: str) -> int | None:
        try:
            stat = await self._call(self.client.stat_object, self.bucket, check_key(key), key=key)
        except NotFound:
            return None
        return stat.size

    async def delete(self, key: str) -> None:
        await self._call(self.client.remove_object, self.bucket, check_key(key), key=key)

    async def close(self) -> None:
        await asyncio.to_thread(self._http.clear)
