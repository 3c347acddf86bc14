"""Hostile bytes for the archive and image readers (issue 9): valid seeds of every format the upload
path sniffs (ZIP, PNG, TIFF, DICOM) and one it does not read (NIfTI), mutated by hypothesis."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
from crowdseg.simulation import synthetic_image
from hypothesis import strategies as st
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def png() -> bytes:
    return synthetic_image(1, 24, 20, seed=5).png


def tiff(compression: str | None = None) -> bytes:
    pixels = (np.arange(16 * 12, dtype=np.uint16).reshape(12, 16) * 300).astype(np.uint16)
    buffer = io.BytesIO()
    frames = [Image.fromarray(pixels), Image.fromarray(pixels[::-1].copy())]
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:], compression=compression)
    return buffer.getvalue()


def dicom() -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.set_pixel_data(np.tile(np.arange(16, dtype=np.uint16) * 250, (10, 1)), "MONOCHROME2", 16)
    ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 1, -100, 1500, 3000
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def nifti() -> bytes:
    """A NIfTI-1 single file (``n+1``) of 8×6 int16 voxels (read since issue 11)."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 2, 8, 6, 1, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 4, 16)  # datatype int16, bitpix
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    header[344:348] = b"n+1\x00"
    return bytes(header) + b"\x00" * 4 + np.arange(48, dtype=np.int16).tobytes()


def zipped(*entries: tuple[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def image_seeds() -> list[bytes]:
    return [png(), tiff(), tiff("tiff_lzw"), tiff("tiff_adobe_deflate"), dicom(), nifti()]


def archive_seeds() -> list[bytes]:
    images = [("a.png", png()), ("scans/b.tif", tiff("tiff_lzw")), ("c.dcm", dicom()), ("d.nii", nifti())]
    return [
        zipped(*images),
        zipped(*images, compression=zipfile.ZIP_STORED),
        zipped(*images, compression=zipfile.ZIP_BZIP2),
        zipped(("zeros.bin", b"\x00" * 300_000), ("e.png", png())),
        zipped(),
    ]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte flips, overwritten runs, insertions, deletions or a truncation; or noise
    behind the seed's first bytes (its magic), so the reader gets past its sniffing."""
    data = bytearray(draw(st.sampled_from(seeds)))
    if draw(st.integers(0, 9)) == 0:
        return bytes(data[: draw(st.integers(0, 16))]) + draw(st.binary(max_size=2048))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        where = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "run", "insert", "delete", "truncate", "number"]))
        if kind == "flip":
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif kind == "run":
            run = draw(st.binary(min_size=1, max_size=16))
            data[where : where + len(run)] = run
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[where : where + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[where:]
        else:  # an extreme little- or big-endian number where sizes, counts and offsets live
            value = draw(st.sampled_from([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            data[where : where + 4] = value.to_bytes(4, draw(st.sampled_from(["little", "big"])))
    return bytes(data)
