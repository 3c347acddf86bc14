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
    used: int = field(default=0)

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limits.max_total_bytes:
            raise ArchiveRejected(f"archive expands to more than {_format_size(self.limits.max_total_bytes)}")


def is_zip(data: bytes) -> bool:
    return data[:4] in _ZIP_MAGICS


def read_zip(
    data: bytes, limits: ArchiveLimits = ArchiveLimits()
) -> tuple[list[ArchiveEntry], list[ArchiveRejection]]:
    """Accepted entries and refused ones, in archive order; junk and directories are skipped."""
    with _open_zip(data) as zf:
        infos = zf.infolist()
        _check_archive(infos, limits)
        budget = _Budget(limits)
        seen: set[str] = set()
        results = [_read_one(zf, info, budget, seen) for info in infos]
    entries = [r for r in results if isinstance(r, ArchiveEntry)]
    rejections = [r for r in results if isinstance(r, ArchiveRejection)]
    return entries, rejections


def _open_zip(data: bytes) -> zipfile.ZipFile:
    if not is_zip(data):
        raise ArchiveRejected("not a valid ZIP archive")
    try:
        return zipfile.ZipFile(BytesIO(data))
    except _OPEN_ERRORS as exc:
        raise ArchiveRejected("not a valid ZIP archive") from exc


def _check_archive(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    if len(infos) > limits.max_entries:
        raise ArchiveRejected(f"archive has {len(infos)} entries; the limit is {limits.max_entries}")
    if any(info.flag_bits & 0x1 for info in infos):
        raise ArchiveRejected("encrypted archives are not accepted")


def _read_one(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, seen: set[str]
) -> ArchiveEntry | ArchiveRejection | None:
    name = info.filename.replace("\\", "/")
    if info.is_dir() or name.endswith("/"):
        return None
    try:
        normalised = _safe_name(name)
        if normalised is None:
            return None
        _check_file_type(info)
        if normalised in seen:
            raise _EntryRejected("another entry has the same name")
        data = _extract(zf, info, budget)
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


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    limits = budget.limits
    # zipfile feeds the decompressor at most compress_size bytes, so this ratio is real.
    ratio_cap = max(limits.max_ratio * max(info.compress_size, 1), limits.ratio_floor_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        with zf.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                if not chunks and chunk.startswith(_ARCHIVE_MAGICS):
                    raise _EntryRejected("archives inside archives are not accepted")
                size += len(chunk)
                budget.spend(len(chunk))
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
