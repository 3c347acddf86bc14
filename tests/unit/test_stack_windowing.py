"""Windowing beyond the CT/MR defaults (issue 11): 16-bit TIFF stacks keep their values (not clipped to
8 bits) under a percentile window, 8-bit ones the full range; colour DICOM (RGB, YBR_FULL) is shown in
colour and has no window; a VOI LUT Sequence renders through the LUT, and every Window Center/Width
pair of a file is offered. Real files built with tifffile, Pillow and pydicom; pixel values checked."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from crowdseg.services.ingest.imaging import DecodedImage, decode_image, load_values, render_window
from PIL import Image
from pydicom.uid import generate_uid

from tests.stack_inputs import colour_dicom, dicom_slice, tiff16_stack, tiff_stack, voi_lut_dicom

pytestmark = pytest.mark.unit


def shown(decoded: DecodedImage) -> np.ndarray:
    frames = [decoded.display, *(f.display for f in decoded.more_frames)]
    return np.stack([np.asarray(Image.open(BytesIO(d))) for d in frames])


def expected(values: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.rint(np.clip((values.astype(np.float64) - center) / width + 0.5, 0, 1) * 255).astype(np.uint8)


def test_sixteen_bit_tiff_stack_keeps_its_values_under_a_percentile_window() -> None:
    rng = np.random.default_rng(5)
    pages = rng.integers(1000, 1200, size=(4, 32, 32)).astype(np.uint16)
    pages[0, 0, 0] = 65535  # one hot pixel must not squeeze the rest into a few grey levels
    decoded = decode_image("confocal.tif", tiff16_stack(pages))
    assert (decoded.frames, decoded.source_format) == (4, "TIFF")
    kept = np.stack([load_values(v) for v in decoded.values])
    assert np.array_equal(kept, pages.astype(np.float32))  # every 16-bit value, none clipped to 8 bits
    low, high = np.percentile(pages, [0.5, 99.5])
    assert decoded.window == pytest.approx(((low + high) / 2, high - low))
    center, width = decoded.window
    assert np.abs(shown(decoded).astype(int) - expected(pages, center, width)).max() <= 1
    assert len(np.unique(shown(decoded))) > 150  # the tissue spans the grey range
    narrow = np.asarray(Image.open(BytesIO(render_window(kept[1], 1100.0, 20.0))))
    assert np.array_equal(narrow, expected(pages[1], 1100.0, 20.0))  # another window, from the full values


def test_eight_bit_tiff_stack_shows_its_values_as_they_are() -> None:
    pages = [np.arange(256, dtype=np.uint8).reshape(16, 16) + k for k in range(3)]
    decoded = decode_image("movie.tif", tiff_stack(pages))
    assert decoded.window == (127.5, 255.0)
    assert np.array_equal(shown(decoded), np.stack(pages))


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_colour_dicom_is_shown_in_colour_without_a_window(photometric: str) -> None:
    rgb = np.zeros((2, 12, 12, 3), dtype=np.uint8)
    rgb[:, :, :4] = (200, 30, 40)
    rgb[:, :, 4:8] = (20, 180, 60)
    rgb[1, :, 8:] = (10, 20, 230)
    decoded = decode_image("colour.dcm", colour_dicom(rgb, photometric))
    assert decoded.frames == 2 and decoded.window is None and decoded.values == ()
    tolerance = 0 if photometric == "RGB" else 2  # YBR_FULL to RGB rounds
    assert np.abs(shown(decoded).astype(int) - rgb.astype(int)).max() <= tolerance


def test_voi_lut_sequence_renders_through_the_lut_and_keeps_the_values() -> None:
    stored = np.tile(np.arange(100, 164, dtype=np.uint16), (4, 1))
    lut = [(255 - 4 * i) for i in range(64)]  # a decreasing LUT: no linear window could give it
    decoded = decode_image("voi.dcm", voi_lut_dicom(stored, lut, first=100, bits=8))
    assert np.array_equal(np.asarray(Image.open(BytesIO(decoded.display))), np.asarray(lut, np.uint8)[stored - 100])
    assert np.array_equal(load_values(decoded.values[0]), stored.astype(np.float32))
    assert decoded.window == pytest.approx((131.5, 63.0))  # no Window Center/Width: the values' range


def test_every_window_center_and_width_of_a_file_is_offered_the_first_by_default() -> None:
    pixels = np.arange(0, 2000, 125, dtype=np.uint16).reshape(4, 4)
    data = dicom_slice(
        pixels,
        series_uid=generate_uid(),
        RescaleIntercept=-1024,
        RescaleSlope=1,
        WindowCenter=[40, -600],
        WindowWidth=[400, 1500],
        WindowCenterWidthExplanation=["SOFT TISSUE", "LUNG"],
    )
    decoded = decode_image("chest.dcm", data)
    assert decoded.window == (40.0, 400.0) and decoded.windows == ((40.0, 400.0), (-600.0, 1500.0))
    hu = pixels.astype(np.float64) - 1024
    linear = np.clip((hu - (40 - 0.5)) / (400 - 1) + 0.5, 0, 1)  # DICOM's LINEAR function
    assert np.abs(np.asarray(Image.open(BytesIO(decoded.display))).astype(int) - np.rint(linear * 255)).max() <= 1
