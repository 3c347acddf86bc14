"""Stacks in (issue 11): DICOM series, multi-frame DICOM, multi-page TIFF and NIfTI decode into frames
with their order, spacing and affine; irregular stacks are refused with their reason."""

from __future__ import annotations

import gzip
from io import BytesIO

import nibabel
import numpy as np
import pytest
from crowdseg.services.ingest.archives import ArchiveLimits
from crowdseg.services.ingest.handlers import UploadedFile, expand_archives
from crowdseg.services.ingest.imaging import (
    DecodedImage,
    ImageLimits,
    ImageRejected,
    decode_image,
    decode_series,
    load_values,
)
from PIL import Image
from pydicom.uid import generate_uid

from tests.stack_inputs import (
    AXIAL,
    TILTED,
    dicom_slice,
    multiframe_dicom,
    nifti,
    series_zip,
    sphere_series,
    tiff_stack,
    zip_of,
)

pytestmark = pytest.mark.unit


def only_series(zip_bytes: bytes) -> UploadedFile:
    files, rejected = expand_archives([UploadedFile("upload.zip", zip_bytes)], ArchiveLimits())
    assert rejected == []
    stacks = [f for f in files if f.slices]
    assert len(stacks) == 1
    return stacks[0]


def values_of(decoded: DecodedImage) -> np.ndarray:
    return np.stack([load_values(frame) for frame in decoded.values])


def series_refusal(zip_bytes: bytes, limits: ImageLimits = ImageLimits()) -> str:
    with pytest.raises(ImageRejected) as raised:
        decode_series(only_series(zip_bytes).slices, limits)
    return raised.value.reason


def ramp_volume(frames: int = 24, rows: int = 20, columns: int = 16) -> np.ndarray:
    """Each slice holds its own index, so the frame order is readable from the values."""
    return np.broadcast_to(np.arange(frames, dtype=np.uint16)[:, None, None] * 10, (frames, rows, columns)).copy()


def test_tilted_shuffled_series_becomes_one_stack_in_slice_order() -> None:
    series = series_zip(ramp_volume(), spacing=(2.5, 0.8, 0.7), orientation=TILTED)
    decoded = decode_series(only_series(series.zip_bytes).slices)
    assert (decoded.frames, decoded.width, decoded.height, decoded.source_format) == (24, 16, 20, "DICOM")
    assert decoded.spacing == pytest.approx((2.5, 0.8, 0.7))
    assert np.array_equal(values_of(decoded)[:, 0, 0], np.arange(24) * 10)
    assert len(decoded.more_frames) == 23


def test_series_affine_maps_voxels_to_ras() -> None:
    series = series_zip(ramp_volume(), spacing=(2.5, 0.8, 0.7), orientation=TILTED)
    affine = np.asarray(decode_series(only_series(series.zip_bytes).slices).affine)
    row, column = np.asarray(TILTED[:3]), np.asarray(TILTED[3:])
    # Voxel (x=3, y=5, z=7) in LPS, from the DICOM definition; RAS flips x and y.
    lps = np.asarray(series.origin) + 3 * 0.7 * row + 5 * 0.8 * column + 7 * 2.5 * np.cross(row, column)
    assert affine @ [3, 5, 7, 1] == pytest.approx([-lps[0], -lps[1], lps[2], 1.0])


def test_sphere_series_keeps_its_truth_and_dicom_window() -> None:
    zip_bytes, truth = sphere_series()
    decoded = decode_series(only_series(zip_bytes).slices)
    assert decoded.window == (500.0, 1000.0)
    assert np.array_equal(values_of(decoded) > 500, truth)


def test_plain_images_next_to_a_series_stay_separate() -> None:
    png = BytesIO()
    Image.new("L", (8, 8), 9).save(png, "PNG")
    lone = dicom_slice(np.zeros((4, 4)), series_uid=generate_uid(), position=(0, 0, 0))
    series = series_zip(ramp_volume(3), extra=[("photo.png", png.getvalue()), ("lone.dcm", lone)])
    files, rejected = expand_archives([UploadedFile("upload.zip", series.zip_bytes)], ArchiveLimits())
    assert rejected == []
    assert sorted((f.name, len(f.slices)) for f in files if not f.slices) == [("lone.dcm", 0), ("photo.png", 0)]
    assert [len(f.slices) for f in files if f.slices] == [3]


def test_series_of_mixed_sizes_is_refused() -> None:
    uid = generate_uid()
    files = [
        (f"s{k}.dcm", dicom_slice(np.zeros(shape), series_uid=uid, position=(0, 0, 2.0 * k)))
        for k, shape in enumerate([(8, 8), (8, 8), (9, 8)])
    ]
    assert series_refusal(zip_of(files)) == "the series' slices differ in size"


def test_series_of_mixed_orientations_is_refused() -> None:
    uid = generate_uid()
    files = [
        (f"s{k}.dcm", dicom_slice(np.zeros((8, 8)), series_uid=uid, position=(0, 0, 2.0 * k), orientation=o))
        for k, o in enumerate([AXIAL, AXIAL, TILTED])
    ]
    assert series_refusal(zip_of(files)) == "the series' slices differ in orientation"


@pytest.mark.parametrize(
    ("heights", "reason"),
    [
        ([0.0, 2.0, 2.0], "two slices of the series are at the same position"),
        ([0.0, 2.0, 5.0], "the series' slices are not evenly spaced"),
    ],
)
def test_series_with_irregular_positions_is_refused(heights: list[float], reason: str) -> None:
    uid = generate_uid()
    files = [
        (f"s{k}.dcm", dicom_slice(np.zeros((8, 8)), series_uid=uid, position=(0, 0, z))) for k, z in enumerate(heights)
    ]
    assert series_refusal(zip_of(files)) == reason


def test_series_with_too_many_slices_is_refused() -> None:
    series = series_zip(ramp_volume(5, 4, 4))
    assert series_refusal(series.zip_bytes, ImageLimits(max_frames=4)) == "series has 5 slices; the limit is 4 frames"


def test_stack_over_the_voxel_cap_is_refused() -> None:
    series = series_zip(ramp_volume(5, 4, 4))
    assert series_refusal(series.zip_bytes, ImageLimits(max_stack_voxels=79)) == "stack has 80 voxels; the limit is 79"


def test_multiframe_dicom_keeps_every_frame_and_its_spacing() -> None:
    frames = ramp_volume(6, 10, 12)
    decoded = decode_image("cine.dcm", multiframe_dicom(frames, SpacingBetweenSlices=3.0))
    assert (decoded.frames, decoded.width, decoded.height) == (6, 12, 10)
    assert decoded.spacing == pytest.approx((3.0, 0.8, 0.7))
    assert np.array_equal(values_of(decoded)[:, 0, 0], np.arange(6) * 10)


def test_multipage_tiff_becomes_a_stack() -> None:
    pages = [np.full((20, 30), 8 * k, dtype=np.uint8) for k in range(30)]
    decoded = decode_image("movie.tif", tiff_stack(pages))
    assert (decoded.frames, decoded.width, decoded.height, decoded.source_format) == (30, 30, 20, "TIFF")
    last = Image.open(BytesIO(decoded.more_frames[-1].display))
    assert np.asarray(last).max() == 8 * 29
    # 8-bit greyscale: the raw values are kept for other windows; the default is the full 0-255 range.
    assert decoded.window == (127.5, 255.0) and len(decoded.values) == 30


def test_sixteen_bit_tiff_stack_shares_one_min_max_window() -> None:
    pages = [np.full((4, 4), 1000 * k, dtype=np.uint16) for k in range(3)]
    decoded = decode_image("stack.tif", tiff_stack(pages))
    shown = [
        np.asarray(Image.open(BytesIO(d))).max() for d in (decoded.display, *(f.display for f in decoded.more_frames))
    ]
    assert shown == [0, 128, 255]


def test_tiff_with_too_many_pages_is_refused_with_the_frame_cap() -> None:
    data = tiff_stack([np.zeros((4, 4), dtype=np.uint8)] * 5)
    with pytest.raises(ImageRejected, match="image has more than 4 frames"):
        decode_image("long.tif", data, ImageLimits(max_frames=4))


@pytest.mark.parametrize("compressed", [False, True])
def test_nifti_frames_follow_the_third_axis_with_header_spacing_and_affine(compressed: bool) -> None:
    affine = np.array([[0.0, -1.5, 0.0, 10.0], [1.25, 0.0, 0.0, -5.0], [0.0, 0.2, 3.0, 7.0], [0.0, 0.0, 0.0, 1.0]])
    xyz = np.random.default_rng(3).random((12, 10, 7)).astype(np.float32)
    decoded = decode_image("brain.nii.gz" if compressed else "brain.nii", nifti(xyz, affine, compressed=compressed))
    assert (decoded.frames, decoded.width, decoded.height, decoded.source_format) == (7, 12, 10, "NIfTI")
    assert np.allclose(decoded.affine or [], affine, atol=1e-5)
    zooms = nibabel.Nifti1Image(xyz, affine).header.get_zooms()
    assert decoded.spacing == pytest.approx((zooms[2], zooms[1], zooms[0]))
    assert np.allclose(values_of(decoded), xyz.transpose(2, 1, 0))


def test_four_dimensional_nifti_is_refused() -> None:
    data = nifti(np.zeros((4, 4, 3, 2), dtype=np.float32), np.eye(4))
    with pytest.raises(ImageRejected, match="more than 3 dimensions"):
        decode_image("fmri.nii", data)


def test_gzip_that_is_not_nifti_is_not_an_image() -> None:
    with pytest.raises(ImageRejected, match="not a PNG, JPEG, TIFF, DICOM or NIfTI image"):
        decode_image("notes.gz", gzip.compress(b"hello"))
