"""The consensus of a DICOM image as a DICOM Segmentation (SEG) object, made with highdicom.

The source instances come back from the image's original (a series' ZIP, or the one DICOM file), read
without their pixels. A series' slices are put in frame order again (along the slice normal, as at
ingest), so SEG frame k references the instance the platform shows as frame k, at its own position in
the source's frame of reference. An enhanced multi-frame file (per-frame functional groups) is
referenced frame by frame. A legacy multi-frame file (a single-frame IOD with NumberOfFrames, no
per-frame positions) cannot be, and is refused with that reason.
"""

from __future__ import annotations

import asyncio
import copy
import zipfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from io import BytesIO

import highdicom as hd
import numpy as np
import numpy.typing as npt
from crowdseg import __version__
from crowdseg.domain import Consensus, Image
from crowdseg.ports import BlobStore
from crowdseg.volumes import stored_mask
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

SEG_MEDIA_TYPE = "application/dicom"
SEG_SERIES_NUMBER = 9100  # out of the scanner's range, so viewers list it after the source series
_ZIP_MAGIC = b"PK\x03\x04"
# highdicom and pydicom report a source that does not fit the SEG IOD with these.
_SEG_ERRORS: tuple[type[BaseException], ...] = (ValueError, AttributeError, TypeError, KeyError, IndexError)
_READ_ERRORS: tuple[type[BaseException], ...] = (*_SEG_ERRORS, InvalidDicomError, zipfile.BadZipFile, OSError)


class SegUnavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def consensus_seg_bytes(blobs: BlobStore, image: Image, consensus: Consensus) -> bytes:
    """A DICOM SEG of a stored consensus: one segment per label where it has label masks, else one,
    "consensus". Raises SegUnavailable when the source instances cannot be referenced."""
    keys = consensus.label_mask_keys or {"consensus": consensus.mask_key or ""}
    original, *masks = await asyncio.gather(blobs.get(image.original_key), *(blobs.get(k) for k in keys.values()))

    def build() -> bytes:
        segments = {name: stored_mask(mask, image) for name, mask in zip(keys, masks, strict=True)}
        sources = source_instances(original, image)
        return seg_bytes(sources, segments, image, version=consensus.version, made_at=consensus.updated_at)

    return await asyncio.to_thread(build)


def source_instances(original: bytes, image: Image) -> list[Dataset]:
    """The headers of the image's source instances, in frame order: one per slice of a series, or the
    one (multi-frame) file."""
    try:
        if original.startswith(_ZIP_MAGIC):
            with zipfile.ZipFile(BytesIO(original)) as archive:
                names = archive.namelist()
                slices = [dcmread(BytesIO(archive.read(name)), stop_before_pixels=True) for name in names]
            return _in_frame_order(slices)
        return [dcmread(BytesIO(original), stop_before_pixels=True)]
    except _READ_ERRORS as exc:
        raise SegUnavailable(f"the source DICOM cannot be read back: {exc}") from exc


def _in_frame_order(slices: Sequence[Dataset]) -> list[Dataset]:
    # The order of crowdseg.services.ingest.volumes.series_geometry (stable sort along the normal).
    cosines = np.asarray(slices[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(cosines[:3], cosines[3:])
    along = [float(np.asarray(s.ImagePositionPatient, dtype=np.float64) @ normal) for s in slices]
    return [slices[k] for k in np.argsort(along, kind="stable")]


def seg_bytes(
    sources: list[Dataset],
    segments: Mapping[str, npt.NDArray[np.bool_]],
    image: Image,
    *,
    version: int,
    made_at: datetime,
) -> bytes:
    """A binary SEG with one segment per entry of `segments` (``(frames, height, width)`` each, numbered
    in order from 1). Its UIDs derive from the image and the consensus version, its dates from when the
    consensus was made: the same consensus always gives the same object."""
    _check_sources(sources, image)
    shape = (image.frames, image.height, image.width)
    pixels = np.stack([np.asarray(v, dtype=np.bool_).reshape(shape) for v in segments.values()], axis=-1)
    descriptions = [_description(number, name) for number, name in enumerate(segments, start=1)]
    seed = [image.id, str(version)]
    try:
        seg = hd.seg.Segmentation(
            source_images=[_with_thickness(s, image) for s in sources],
            pixel_array=pixels.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(entropy_srcs=[*seed, "series"]),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=generate_uid(entropy_srcs=[*seed, "instance"]),
            instance_number=1,
            manufacturer="crowdseg",
            manufacturer_model_name="crowdseg consensus",
            software_versions=__version__,
            device_serial_number="0",
            content_description="crowd consensus (STAPLE)",
            content_label="CONSENSUS",
            omit_empty_frames=False,
        )
    except _SEG_ERRORS as exc:
        raise SegUnavailable(f"the source DICOM cannot be referenced by a DICOM SEG: {exc}") from exc
    _make_reproducible(seg, seed, made_at)
    buffer = BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _make_reproducible(seg: hd.seg.Segmentation, seed: list[str], made_at: datetime) -> None:
    """highdicom stamps the time of writing and a fresh dimension organisation UID; ours come from the
    consensus, so that concurrent and repeated requests get one object."""
    date, time = made_at.strftime("%Y%m%d"), made_at.strftime("%H%M%S")
    for keyword in ("ContentDate", "SeriesDate", "InstanceCreationDate"):
        setattr(seg, keyword, date)
    for keyword in ("ContentTime", "SeriesTime", "InstanceCreationTime"):
        setattr(seg, keyword, time)
    for item in seg.get("ContributingEquipmentSequence", []):
        item.ContributionDateTime = made_at.strftime("%Y%m%d%H%M%S")
    organisation = generate_uid(entropy_srcs=[*seed, "dimensions"])
    for item in seg.DimensionOrganizationSequence:
        item.DimensionOrganizationUID = organisation
    for item in seg.DimensionIndexSequence:
        item.DimensionOrganizationUID = organisation


def _check_sources(sources: list[Dataset], image: Image) -> None:
    first = sources[0]
    if (int(first.get("Rows", 0)), int(first.get("Columns", 0))) != (image.height, image.width):
        raise SegUnavailable("the source DICOM's size differs from the image's")
    if len(sources) > 1:
        if len(sources) != image.frames:
            raise SegUnavailable(f"the series has {len(sources)} instances for the image's {image.frames} frames")
        return
    frames = int(first.get("NumberOfFrames", 1) or 1)
    if frames != image.frames:
        raise SegUnavailable(f"the source DICOM has {frames} frames for the image's {image.frames}")
    if frames > 1 and "PerFrameFunctionalGroupsSequence" not in first:
        raise SegUnavailable(
            "a legacy multi-frame DICOM (no per-frame functional groups) has no position per frame"
            " for a DICOM SEG to reference; upload the series or an enhanced multi-frame file"
        )


def _with_thickness(source: Dataset, image: Image) -> Dataset:
    """highdicom copies SliceThickness (type 2: present but often empty) of single-frame sources."""
    if "PerFrameFunctionalGroupsSequence" in source or source.get("SliceThickness"):
        return source
    source = copy.deepcopy(source)
    source.SliceThickness = image.spacing[0] if image.spacing else 1.0
    return source


def _description(number: int, name: str) -> hd.seg.SegmentDescription:
    algorithm = hd.AlgorithmIdentificationSequence(
        name="crowdseg STAPLE", version=__version__, family=codes.DCM.ArtificialIntelligence
    )
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm,
    )
