"""Real stack inputs for tests: DICOM series (pydicom), multi-frame DICOM, multi-page TIFF, NIfTI."""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel
import numpy as np
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

# A tilted orientation: rows along x turned 20° about z, columns along y tilted 15° towards z.
_A, _B = np.radians(20.0), np.radians(15.0)
_ROW = np.array([np.cos(_A), np.sin(_A), 0.0])
_COLUMN = np.array([-np.sin(_A) * np.cos(_B), np.cos(_A) * np.cos(_B), np.sin(_B)])
TILTED: tuple[float, ...] = (*_ROW.tolist(), *_COLUMN.tolist())
AXIAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True)
class Series:
    zip_bytes: bytes
    truth: np.ndarray
    """The volume ``(z, y, x)`` in slice order along the normal (stored values, before rescale)."""
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    orientation: tuple[float, ...]


def dicom_slice(
    pixels: np.ndarray,
    *,
    series_uid: str,
    position: Sequence[float] | None = None,
    orientation: Sequence[float] = AXIAL,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    **elements: object,
) -> bytes:
    """One CT slice (or a multi-frame file, for a 3-D `pixels`) as a DICOM Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    # What every real instance carries, and a DICOM SEG of it copies (patient, study, frame of reference).
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "PHANTOM-1", "Phantom^Sphere", "", "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.StudyID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "1", "20261202", "120000", ""
    ds.ReferringPhysicianName = ""
    ds.FrameOfReferenceUID = frame_of_reference_uid or generate_uid()
    ds.SeriesNumber = 1
    ds.set_pixel_data(pixels.astype(np.uint16), photometric_interpretation="MONOCHROME2", bits_stored=16)
    ds.PixelSpacing = list(pixel_spacing)
    ds.ImageOrientationPatient = list(orientation)
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def series_zip(
    volume: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.7),
    orientation: Sequence[float] = TILTED,
    origin: tuple[float, float, float] = (-120.0, -80.0, 40.0),
    shuffle_seed: int | None = 7,
    extra: Sequence[tuple[str, bytes]] = (),
    **elements: object,
) -> Series:
    """`volume` ``(z, y, x)`` as one DICOM file per slice in a ZIP, shuffled unless `shuffle_seed` is None."""
    uid, study, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, column)
    files = [
        (
            f"ct/slice-{k:03d}.dcm",
            dicom_slice(
                volume[k],
                series_uid=uid,
                position=np.asarray(origin) + normal * spacing[0] * k,
                orientation=orientation,
                pixel_spacing=(spacing[1], spacing[2]),
                study_uid=study,
                frame_of_reference_uid=frame_of_reference,
                InstanceNumber=k + 1,
                **elements,
            ),
        )
        for k in range(volume.shape[0])
    ]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(files)
    return Series(zip_of([*files, *extra]), volume, spacing, origin, tuple(orientation))


def sphere_volume(
    shape: tuple[int, int, int] = (24, 64, 64),
    radius_mm: float = 20.0,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.7),
) -> np.ndarray:
    """True inside a sphere at the volume's centre, in mm so that anisotropic voxels still give a sphere."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return np.asarray(z**2 + y**2 + x**2 <= radius_mm**2)


def sphere_series(
    shape: tuple[int, int, int] = (24, 64, 64),
    radius_mm: float = 20.0,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.7),
    orientation: Sequence[float] = TILTED,
    shuffle_seed: int | None = 7,
) -> tuple[bytes, np.ndarray]:
    """A DICOM series in a ZIP showing a bright sphere (1000 HU inside, 0 outside, soft-tissue window),
    and the truth mask ``(z, y, x)`` in the order the platform shows the frames."""
    truth = sphere_volume(shape, radius_mm, spacing)
    pixels = np.where(truth, 2024, 1024).astype(np.uint16)
    series = series_zip(
        pixels,
        spacing=spacing,
        orientation=orientation,
        shuffle_seed=shuffle_seed,
        RescaleSlope=1,
        RescaleIntercept=-1024,
        WindowCenter=500,
        WindowWidth=1000,
    )
    return series.zip_bytes, truth


def multiframe_dicom(frames: np.ndarray, **elements: object) -> bytes:
    return dicom_slice(frames, series_uid=generate_uid(), NumberOfFrames=frames.shape[0], **elements)


def tiff_stack(pages: Sequence[np.ndarray]) -> bytes:
    images = [Image.fromarray(page) for page in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, "TIFF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def nifti(volume_xyz: np.ndarray, affine: np.ndarray, *, compressed: bool = False) -> bytes:
    """`volume_xyz` in nibabel's ``(x, y, z)`` order, with `affine` (voxel to RAS mm); `.nii.gz` if compressed."""
    raw: bytes = nibabel.Nifti1Image(volume_xyz, affine).to_bytes()
    return gzip.compress(raw) if compressed else raw


def zip_of(entries: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


def tiff16_stack(pages: np.ndarray) -> bytes:
    """A multi-page 16-bit greyscale TIFF (tifffile), ``pages`` ``(frames, height, width)`` uint16."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.asarray(pages, dtype=np.uint16), photometric="minisblack")
    return buffer.getvalue()


def colour_dicom(rgb: np.ndarray, photometric: str = "RGB") -> bytes:
    """A colour (secondary capture-like) DICOM of ``rgb`` ``([frames,] height, width, 3)`` uint8, stored
    as RGB or converted to YBR_FULL."""
    from pydicom.pixels.processing import convert_color_space

    pixels = np.asarray(rgb, dtype=np.uint8)
    stored = pixels if photometric == "RGB" else convert_color_space(pixels, "RGB", photometric)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = generate_uid(), generate_uid(), "OT"
    ds.set_pixel_data(stored, photometric_interpretation=photometric, bits_stored=8)
    if pixels.ndim == 4:
        ds.NumberOfFrames = pixels.shape[0]
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def voi_lut_dicom(
    pixels: np.ndarray, lut: Sequence[int], *, first: int = 0, bits: int = 8, **elements: object
) -> bytes:
    """A CT slice whose display is given by a VOI LUT Sequence (``lut[v - first]`` for stored value v)."""
    item = Dataset()
    item.LUTDescriptor = [len(lut), first, bits]
    item.LUTData = [int(v) for v in lut]
    item["LUTData"].VR = "US"
    from pydicom.sequence import Sequence as DicomSequence

    return dicom_slice(pixels, series_uid=generate_uid(), VOILUTSequence=DicomSequence([item]), **elements)
