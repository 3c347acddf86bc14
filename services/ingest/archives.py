"""Read the files of an uploaded ZIP archive into memory, refusing what could hurt us.

Pure: bytes in, entries out. Bytes are counted as they are decompressed; the sizes an archive
declares are never trusted.
"""

from __future__ import annotations

import lzma
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from io import BytesIO

_CHUNK = 64 * 2**10
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
# Local file header, or end of central directory for an empty archive.
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_ARCHIVE_MAGICS = (*_ZIP_MAGICS, b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07")
_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,  # bz2 reports bad data as OSError
    ValueError,
)
_OPEN_ERRORS: tuple[type[BaseException], ...] = (*_READ_ERRORS, NotImplementedError)


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 10_000
    max_total_bytes: int = 2 * 2**30
    max_entry_bytes: int = 64 * 2**20
    max_ratio: float = 200.0
    # Small entries may compress extremely well (blank masks, text) without being a danger.
    ratio_floor_bytes: int = 2**20


@dataclass(frozen=True)
class ArchiveEntry:
    name: str
    data: bytes


@dataclass(frozen=True)
class ArchiveRejection:
    name: str
    reason: str


class ArchiveRejected(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _EntryRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Budget:
    """Bytes decompressed so far across the archive, rejected entries included."""

    limits: ArchiveLimits
    cap: float = float("inf")  # the archive's own ratio bound, from its real size
    used: int = field(default=0)

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limits.max_total_bytes:
            raise ArchiveRejected(f"archive expands to more than {_format_size(self.limits.max_total_bytes)}")
        if self.used > self.cap:
            raise ArchiveRejected(f"archive expands more than {self.limits.max_ratio:g} times its size")


def is_zip(data: bytes) -> bool:
    return data[:4] in _ZIP_MAGICS


def read_zip(data: bytes, limits: ArchiveLimits = ArchiveLimits()) -> tuple[list[ArchiveEntry], list[ArchiveRejection]]:
    """Accepted entries and refused ones, in archive order; junk and directories are skipped."""
    if not is_zip(data):
        raise ArchiveRejected("not a valid ZIP archive")
    source = _CountingReader(data)
    with _open_zip(source, limits) as zf:
        infos = zf.infolist()
        _check_archive(infos)
        # The whole archive may not expand more than the ratio either: entries whose directory records
        # overlap (point at the same compressed bytes) are each within the ratio of what they read.
        budget = _Budget(limits, cap=max(limits.max_ratio * len(data), limits.ratio_floor_bytes))
        seen: set[str] = set()
        results = [_read_one(zf, info, budget, seen, source) for info in infos]
    entries = [r for r in results if isinstance(r, ArchiveEntry)]
    rejections = [r for r in results if isinstance(r, ArchiveRejection)]
    return entries, rejections


class _CountingReader(BytesIO):
    """The archive's bytes, counting what is actually read: the compressed size an archive declares
    may overstate the bytes its entry really has (issue 9)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


class _EntryList(list[zipfile.ZipInfo]):
    """The list zipfile fills while it parses the central directory: counting as entries arrive stops
    a directory of a million entries after the first entries above the limit, not after parsing them all."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def append(self, info: zipfile.ZipInfo) -> None:
        if len(self) >= self.limit:
            raise ArchiveRejected(f"archive has more than {self.limit} entries; the limit is {self.limit}")
        super().append(info)


class _BoundedZipFile(zipfile.ZipFile):
    max_entries = ArchiveLimits.max_entries

    @property
    def filelist(self) -> list[zipfile.ZipInfo]:
        return self._bounded

    @filelist.setter
    def filelist(self, value: list[zipfile.ZipInfo]) -> None:
        self._bounded = _EntryList(self.max_entries)
        self._bounded.extend(value)


def _open_zip(source: _CountingReader, limits: ArchiveLimits) -> zipfile.ZipFile:
    bounded = type("_Bounded", (_BoundedZipFile,), {"max_entries": limits.max_entries})
    try:
        zf: zipfile.ZipFile = bounded(source)
    except ArchiveRejected:
        raise
    except _OPEN_ERRORS as exc:
        raise ArchiveRejected("not a valid ZIP archive") from exc
    return zf


def _check_archive(infos: list[zipfile.ZipInfo]) -> None:
    if any(info.flag_bits & 0x1 for info in infos):
        raise ArchiveRejected("encrypted archives are not accepted")


def _read_one(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, seen: set[str], source: _CountingReader
) -> ArchiveEntry | ArchiveRejection | None:
    name = info.filename.replace("\\", "/")
    # Not info.is_dir(): it raises IndexError on an entry with an empty name (found by fuzzing).
    if name.endswith("/"):
        return None
    try:
        normalised = _safe_name(name)
        if normalised is None:
            return None
        _check_file_type(info)
        if normalised in seen:
            raise _EntryRejected("another entry has the same name")
        data = _extract(zf, info, budget, source)
    except _EntryRejected as exc:
        return ArchiveRejection(name=name, reason=exc.reason)
    seen.add(normalised)
    return ArchiveEntry(name=normalised, data=data)


def _safe_name(name: str) -> str | None:
    """The normalised path, None for junk to skip; refuses paths that could escape a directory."""
    if name.startswith("/") or _DRIVE.match(name):
        raise _EntryRejected("absolute paths are not accepted")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _EntryRejected("paths containing '..' are not accepted")
    if _CONTROL.search(name):
        raise _EntryRejected("names containing control characters are not accepted")
    if not parts or any(part.startswith(".") or part.lower() in _JUNK_NAMES for part in parts):
        return None
    return "/".join(parts)


def _check_file_type(info: zipfile.ZipInfo) -> None:
    # Unix archivers keep st_mode in the high 16 bits; 0 means "not recorded" (DOS, Windows).
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        raise _EntryRejected("links are not accepted")
    if file_type not in (0, stat.S_IFREG):
        raise _EntryRejected("special files are not accepted")


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, source: _CountingReader) -> bytes:
    """The entry's bytes, inflated chunk by chunk; its ratio is to the compressed bytes actually read so
    far, never to the size the archive declares (issue 9: an overstated size let a bomb inflate)."""
    limits = budget.limits
    chunks: list[bytes] = []
    size = 0
    try:
        with zf.open(info) as stream:
            began = source.consumed
            while chunk := stream.read(_CHUNK):
                if not chunks and chunk.startswith(_ARCHIVE_MAGICS):
                    raise _EntryRejected("archives inside archives are not accepted")
                size += len(chunk)
                budget.spend(len(chunk))
                ratio_cap = max(limits.max_ratio * max(source.consumed - began, 1), limits.ratio_floor_bytes)
                _check_entry_size(size, ratio_cap, limits)
                chunks.append(chunk)
    except ArchiveRejected:
        raise
    except NotImplementedError as exc:
        raise _EntryRejected("entry uses an unsupported compression method") from exc
    except _READ_ERRORS as exc:
        raise _EntryRejected("entry is corrupt") from exc
    return b"".join(chunks)


def _check_entry_size(size: int, ratio_cap: float, limits: ArchiveLimits) -> None:
    if size > limits.max_entry_bytes:
        raise _EntryRejected(f"entry is larger than {_format_size(limits.max_entry_bytes)}")
    if size > ratio_cap:
        raise _EntryRejected(f"entry expands more than {limits.max_ratio:g} times its compressed size")


def _format_size(n: int) -> str:
    if n % 2**30 == 0:
        return f"{n // 2**30} GiB"
    if n % 2**20 == 0:
        return f"{n // 2**20} MiB"
    return f"{n} bytes"
