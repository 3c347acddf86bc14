"""The embedded profile's blob store: files under the data directory, written atomically."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

from crowdseg.errors import InvalidInput, NotFound, Unavailable


class FileBlobStore:
    """Implements :class:`crowdseg.ports.BlobStore` on a directory."""

    # Writes wait on fsync, not on the CPU: their own threads, so many are in flight at once (the disk
    # journals concurrent fsyncs together) and they never hold up the default executor's CPU work.
    WRITERS = 16

    def __init__(self, root: Path) -> None:
        self.root = root
        self._writers: ThreadPoolExecutor | None = None

    def _run_write(self, function: Callable[..., None], *args: Any) -> asyncio.Future[None]:
        if self._writers is None:
            self._writers = ThreadPoolExecutor(self.WRITERS, thread_name_prefix="file-blobs")
        return asyncio.get_running_loop().run_in_executor(self._writers, function, *args)

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(part in ("..", ".", "") for part in parts):
            raise InvalidInput(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    async def open(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot create the blob directory {self.root}: {exc}") from exc

    async def ping(self) -> None:
        if not self.root.is_dir():
            raise Unavailable(f"blob directory {self.root} is missing")

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._run_write(self._write, self._path(key), data)

    async def put_many(self, objects: Sequence[tuple[str, bytes, str]]) -> None:
        # One thread hop for all of them: a batch of consensus writes its masks and probabilities
        # together, and a hop each was a tenth of the consensus worker's CPU (issue 8).
        paths = [(self._path(key), data) for key, data, _type in objects]
        await self._run_write(self._write_all, paths)

    def _write_all(self, paths: list[tuple[Path, bytes]]) -> None:
        """Write every file, make them durable, then give each its name, so that no name ever shows a
        partial file. One sync of the file system for many small files costs less than half the CPU of
        an fsync each (issue 8: two fsyncs per consensus were a fifth of the worker's)."""
        if len(paths) == 1 or _syncfs is None:
            for target, data in paths:
                self._write(target, data)
            return
        written: list[tuple[Path, Path]] = []
        try:
            for target, data in paths:
                with _partial(target) as (handle, partial):
                    handle.write(data)
                written.append((partial, target))
            _sync_file_system(self.root)
            for partial, target in written:
                os.replace(partial, target)
        except BaseException:
            for partial, _target in written:
                partial.unlink(missing_ok=True)
            raise

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        await self._run_write(self._copy, path, target)

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        with _partial(target) as (handle, partial):
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)

    @staticmethod
    def _copy(source: Path, target: Path) -> None:
        with _partial(target) as (handle, partial), open(source, "rb") as origin:
            shutil.copyfileobj(origin, handle)
        os.replace(partial, target)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise NotFound(f"object {key} not found") from exc

    async def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"object {key} not found")
        with open(path, "rb") as handle:  # noqa: ASYNC230 - local file, chunked
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk

    async def size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def close(self) -> None:
        writers, self._writers = self._writers, None
        if writers is not None:
            writers.shutdown(wait=True)


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(2)``, which Python's ``os`` does not offer; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return cast("Callable[[int], int]", function)


_syncfs = _load_syncfs()


def _sync_file_system(directory: Path) -> None:
    """Flush everything written to the file system that holds ``directory`` to its disk."""
    assert _syncfs is not None
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        if _syncfs(descriptor) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs: {os.strerror(error)}")
    finally:
        os.close(descriptor)


@contextmanager
def _partial(target: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file of its own next to ``target`` (concurrent writes of one key must not share one,
    issue 9), removed if the write fails before it replaces ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    partial = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle, partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
