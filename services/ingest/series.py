"""Gather the DICOM files of one series, among the entries of an archive, into one upload."""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

from crowdseg.services.ingest.imaging import sniff_format
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

# A header that cannot be read leaves its file on its own, to be refused (with its reason) as any image.
_HEADER_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    OSError,
    ValueError,
    EOFError,
    TypeError,
    KeyError,
)


@dataclass(frozen=True)
class Series:
    name: str
    files: tuple[tuple[str, bytes], ...]

    def archive(self) -> bytes:
        """The series' files as one stored ZIP: the image's original."""
        buffer = BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
            for name, data in self.files:
                zf.writestr(name, data)
        return buffer.getvalue()


def gather_series(entries: Sequence[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[Series]]:
    """Entries that stay images of their own, and series of two or more DICOM files."""
    groups: dict[str, list[tuple[str, bytes]]] = {}
    singles: list[tuple[str, bytes]] = []
    for name, data in entries:
        uid = _series_uid(data) if sniff_format(data) == "DICOM" else None
        if uid is None:
            singles.append((name, data))
        else:
            groups.setdefault(uid, []).append((name, data))
    series: list[Series] = []
    for uid, files in groups.items():
        if len(files) == 1:
            singles.append(files[0])
        else:
            series.append(Series(name=_series_name(uid, [name for name, _ in files]), files=tuple(files)))
    return singles, series


def _series_uid(data: bytes) -> str | None:
    try:
        uid = dcmread(BytesIO(data), stop_before_pixels=True).get("SeriesInstanceUID")
    except _HEADER_ERRORS:
        return None
    return str(uid) if uid else None


def _series_name(uid: str, names: list[str]) -> str:
    folder = posixpath.commonpath(names) if len(names) > 1 else posixpath.dirname(names[0])
    folder = folder if folder not in names else posixpath.dirname(folder)
    return f"{folder}/series {uid}" if folder else f"series {uid}"
