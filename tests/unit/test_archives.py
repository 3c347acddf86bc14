"""read_zip: path safety, junk, and bounds counted on the bytes actually decompressed."""

from __future__ import annotations

import gzip
import random
import stat
import struct
import zipfile
from io import BytesIO

import pytest
from crowdseg.services.ingest.archives import (
    ArchiveEntry,
    ArchiveLimits,
    ArchiveRejected,
    ArchiveRejection,
    is_zip,
    read_zip,
)

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def make_zip(*entries: tuple[str | zipfile.ZipInfo, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


def info(name: str, mode: int) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name)
    entry.create_system = 3
    entry.external_attr = mode << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    return entry


def patch_headers(data: bytes, local_offset: int, central_offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of the (single) entry's local and central directory headers."""
    patched = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        position = patched.index(signature) + offset
        patched[position : position + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(patched)


def reasons(rejections: list[ArchiveRejection]) -> dict[str, str]:
    return {r.name: r.reason for r in rejections}


def refused(data: bytes, limits: ArchiveLimits = ArchiveLimits()) -> str:
    with pytest.raises(ArchiveRejected) as raised:
        read_zip(data, limits)
    return raised.value.reason


def test_plain_entries_are_read_with_normalised_names() -> None:
    data = make_zip(("a.png", PNG), ("dir\\sub\\b.png", b"b"), ("./c.png", b"c"), ("d//e.png", b"e"))
    entries, rejections = read_zip(data)
    assert entries == [
        ArchiveEntry("a.png", PNG),
        ArchiveEntry("dir/sub/b.png", b"b"),
        ArchiveEntry("c.png", b"c"),
        ArchiveEntry("d/e.png", b"e"),
    ]
    assert rejections == []


def test_is_zip_sniffs_magic_bytes() -> None:
    assert is_zip(make_zip(("a", b"a")))
    assert is_zip(make_zip())  # an empty archive is only an end-of-central-directory record
    assert not is_zip(PNG)
    assert not is_zip(PNG + make_zip(("a", b"a")))  # a zip appended to an image is not a zip upload


def test_empty_archive_reads_as_nothing() -> None:
    assert read_zip(make_zip()) == ([], [])


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "..\\evil.png", "ok/..\\..\\evil.png"])
def test_parent_components_are_rejected(name: str) -> None:
    """Guards: zip-slip, entries escaping the extraction directory with '..' (either separator)."""
    entries, rejections = read_zip(make_zip((name, PNG), ("fine.png", PNG)))
    assert [e.name for e in entries] == ["fine.png"]
    assert reasons(rejections) == {name.replace("\\", "/"): "paths containing '..' are not accepted"}


@pytest.mark.parametrize(
    "name", ["/abs.png", "/etc/passwd", "C:\\x.png", "c:x.png", "\\\\server\\share\\x.png"]
)
def test_absolute_paths_are_rejected(name: str) -> None:
    """Guards: absolute POSIX, Windows drive and UNC paths overwriting files outside the target."""
    entries, rejections = read_zip(make_zip((name, PNG)))
    assert entries == []
    assert [r.reason for r in rejections] == ["absolute paths are not accepted"]


def test_symlink_entries_are_rejected() -> None:
    """Guards: symlink entries (S_IFLNK in external_attr) pointing outside the archive."""
    link = info("link.png", stat.S_IFLNK | 0o777)
    regular = info("real.png", stat.S_IFREG | 0o644)
    entries, rejections = read_zip(make_zip((link, b"/etc/passwd"), (regular, PNG)))
    assert entries == [ArchiveEntry("real.png", PNG)]
    assert reasons(rejections) == {"link.png": "links are not accepted"}


def test_special_files_are_rejected() -> None:
    """Guards: device or FIFO entries smuggled as data."""
    _, rejections = read_zip(
        make_zip(
            (info("fifo", stat.S_IFIFO | 0o644), b""),
        )
    )
    assert reasons(rejections) == {"fifo": "special files are not accepted"}


def test_control_characters_in_names_are_rejected() -> None:
    """Guards: names that forge lines in logs or listings."""
    _, rejections = read_zip(make_zip(("a\nb.png", PNG)))
    assert [r.reason for r in rejections] == ["names containing control characters are not accepted"]


def test_junk_and_directories_are_skipped_silently() -> None:
    data = make_zip(
        ("__MACOSX/._a.png", b"resource fork"),
        (".DS_Store", b"junk"),
        ("dir/.hidden.png", PNG),
        ("dir/Thumbs.db", b"junk"),
        ("dir/THUMBS.DB", b"junk"),
        ("dir/", b""),
        ("dir/a.png", PNG),
    )
    entries, rejections = read_zip(data)
    assert entries == [ArchiveEntry("dir/a.png", PNG)]
    assert rejections == []


def test_duplicate_names_after_normalisation_are_rejected() -> None:
    """Guards: a later entry silently replacing an earlier one with the same path."""
    entries, rejections = read_zip(make_zip(("a.png", b"first"), ("./a.png", b"second")))
    assert entries == [ArchiveEntry("a.png", b"first")]
    assert reasons(rejections) == {"./a.png": "another entry has the same name"}


def test_high_ratio_entry_is_rejected() -> None:
    """Guards: zip bombs, one small compressed entry expanding hundreds of times."""
    bomb = b"\x00" * (20 * 2**20)  # deflates about 1000:1
    entries, rejections = read_zip(make_zip(("bomb.png", bomb), ("ok.png", PNG)))
    assert [e.name for e in entries] == ["ok.png"]
    assert reasons(rejections) == {"bomb.png": "entry expands more than 200 times its compressed size"}


def test_small_compressible_entries_are_not_refused_for_their_ratio() -> None:
    blank = b"\x00" * (512 * 2**10)
    entries, _ = read_zip(make_zip(("blank-mask.png", blank)))
    assert entries == [ArchiveEntry("blank-mask.png", blank)]


def test_entry_over_size_limit_is_rejected() -> None:
    data = make_zip(("big.bin", bytes(range(256)) * 2**12), compression=zipfile.ZIP_STORED)
    _, rejections = read_zip(data, ArchiveLimits(max_entry_bytes=2**20 - 1))
    assert reasons(rejections) == {"big.bin": "entry is larger than 1048575 bytes"}


def test_declared_sizes_are_not_trusted() -> None:
    """Guards: trusting the uncompressed size an entry declares (here it claims 10 bytes)."""
    data = patch_headers(make_zip(("liar.bin", b"\x00" * (4 * 2**20))), 22, 24, "<I", 10)
    entries, rejections = read_zip(data, ArchiveLimits(max_entry_bytes=2**20))
    assert entries == []
    assert [r.name for r in rejections] == ["liar.bin"]


def test_large_declared_size_is_not_held_against_a_small_entry() -> None:
    """Guards: refusing on declared sizes instead of counting (here 4 GiB declared, 264 bytes real)."""
    data = patch_headers(make_zip(("a.png", PNG)), 22, 24, "<I", 0xFFFFFFF0)
    assert read_zip(data) == ([ArchiveEntry("a.png", PNG)], [])


def test_total_expanded_size_refuses_whole_archive() -> None:
    """Guards: many entries each under the limits adding up to an unbounded total."""
    data = make_zip(*((f"{n}.bin", bytes(600)) for n in range(3)))
    assert refused(data, ArchiveLimits(max_total_bytes=1000)) == "archive expands to more than 1000 bytes"


def test_entry_count_refuses_whole_archive() -> None:
    data = make_zip(*((f"{n}.png", PNG) for n in range(4)))
    assert refused(data, ArchiveLimits(max_entries=3)) == "archive has more than 3 entries; the limit is 3"


def test_encrypted_archive_is_refused() -> None:
    """Guards: encrypted entries read as garbage or raising mid-extraction."""
    data = patch_headers(make_zip(("secret.png", PNG)), 6, 8, "<H", 0x1)
    assert refused(data) == "encrypted archives are not accepted"


@pytest.mark.parametrize(
    "inner",
    [make_zip(("x.png", PNG)), make_zip(), gzip.compress(PNG)],
    ids=["zip", "empty-zip", "gzip"],
)
def test_nested_archives_are_rejected(inner: bytes) -> None:
    """Guards: recursive archives (42.zip style) and extraction of archives we cannot vet."""
    entries, rejections = read_zip(make_zip(("inner.zip", inner), ("ok.png", PNG)))
    assert [e.name for e in entries] == ["ok.png"]
    assert reasons(rejections) == {"inner.zip": "archives inside archives are not accepted"}


@pytest.mark.parametrize(
    "data",
    [b"", b"not a zip at all", PNG, b"PK\x03\x04" + b"\x00" * 100],
    ids=["empty", "text", "png", "garbage-after-magic"],
)
def test_non_zip_is_refused(data: bytes) -> None:
    assert refused(data) == "not a valid ZIP archive"


def test_truncated_zip_is_refused() -> None:
    data = make_zip(("a.png", PNG), ("b.png", PNG))
    assert refused(data[: len(data) - 30]) == "not a valid ZIP archive"


def test_corrupt_entry_is_rejected_and_others_kept() -> None:
    """Guards: one damaged entry (CRC mismatch) failing the upload or being stored damaged."""
    data = bytearray(make_zip(("bad.png", PNG), ("good.png", PNG), compression=zipfile.ZIP_STORED))
    data[data.index(PNG) + 20] ^= 0xFF
    entries, rejections = read_zip(bytes(data))
    assert entries == [ArchiveEntry("good.png", PNG)]
    assert reasons(rejections) == {"bad.png": "entry is corrupt"}


def test_unsupported_compression_is_rejected_per_entry() -> None:
    deflate64 = 9
    data = patch_headers(make_zip(("odd.png", PNG), compression=zipfile.ZIP_STORED), 8, 10, "<H", deflate64)
    _, rejections = read_zip(data)
    assert reasons(rejections) == {"odd.png": "entry uses an unsupported compression method"}


def overstate_compressed_sizes(data: bytes, names: set[str]) -> bytes:
    """The archive with each named entry's compressed size (local and central header) overstated: it
    claims every byte up to the central directory."""
    patched = bytearray(data)
    with zipfile.ZipFile(BytesIO(data)) as zf:
        central = zf.start_dir
        for entry in zf.infolist():
            if entry.filename not in names:
                continue
            start = entry.header_offset + 30 + len(entry.filename.encode()) + len(entry.extra)
            claimed = struct.pack("<I", central - start)
            patched[entry.header_offset + 18 : entry.header_offset + 22] = claimed
            record = patched.index(b"PK\x01\x02", central)
            while struct.unpack_from("<I", patched, record + 42)[0] != entry.header_offset:
                record = patched.index(b"PK\x01\x02", record + 4)
            patched[record + 20 : record + 24] = claimed
    return bytes(patched)


def test_overstated_compressed_sizes_do_not_raise_the_ratio_bound() -> None:
    """issue 9 item 7: the ratio guard used the compressed size the archive declares, so entries that
    overstate it (here: every byte up to the central directory, past a stored padding entry) inflated
    far beyond the ratio; the bound is now the compressed bytes actually read."""
    limits = ArchiveLimits(max_ratio=20, ratio_floor_bytes=2**18)
    bombs = {f"bomb-{n}.png": b"\x00" * (3 * 2**19) for n in range(2)}
    pad = random.Random(9).randbytes(200 * 2**10)  # does not compress
    honest = make_zip(*bombs.items(), ("pad.bin", pad), compression=zipfile.ZIP_DEFLATED)
    data = overstate_compressed_sizes(honest, set(bombs))
    with zipfile.ZipFile(BytesIO(data)) as zf:  # the lie is in place: 20 × the claim exceeds the entry
        assert all(limits.max_ratio * zf.getinfo(name).compress_size > len(bombs[name]) for name in bombs)
    entries, rejections = read_zip(data, limits)
    assert [e.name for e in entries] == ["pad.bin"]
    assert reasons(rejections) == dict.fromkeys(bombs, "entry expands more than 20 times its compressed size")


def test_the_whole_archive_is_bounded_by_its_real_size() -> None:
    """issue 9 item 7: many small entries, each under the per-entry floor, may not add up to more than
    the ratio times the archive's real size."""
    data = make_zip(*((f"{n}.bin", bytes(60 * 2**10)) for n in range(100)))
    limits = ArchiveLimits(ratio_floor_bytes=64 * 2**10)
    assert refused(data, limits) == "archive expands more than 200 times its size"


def test_entries_are_counted_while_the_directory_is_read() -> None:
    """issue 9 item 7: the entry cap applied only after zipfile had parsed the whole central directory
    (a million entries: seconds and ~500 MiB); it now stops at the first entry over the cap, before the
    rest of the directory is read."""
    data = make_zip(*((f"{n}", b"") for n in range(5000)))
    parsed: list[int] = []
    original = zipfile.ZipInfo.__init__

    def counting(self: zipfile.ZipInfo, *args: object, **kwargs: object) -> None:
        parsed.append(1)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    zipfile.ZipInfo.__init__ = counting  # type: ignore[method-assign]
    try:
        assert refused(data, ArchiveLimits(max_entries=10)) == "archive has more than 10 entries; the limit is 10"
    finally:
        zipfile.ZipInfo.__init__ = original  # type: ignore[method-assign]
    assert len(parsed) <= 11


def test_entry_with_an_empty_name_is_skipped() -> None:
    """Regression (found by fuzzing while adding stacks, issue 11): an entry named "" made ZipInfo.is_dir()
    raise IndexError out of read_zip instead of the entry being skipped."""
    entries, rejections = read_zip(make_zip((zipfile.ZipInfo(""), b"x"), ("a.png", PNG)))
    assert entries == [ArchiveEntry("a.png", PNG)]
    assert rejections == []
