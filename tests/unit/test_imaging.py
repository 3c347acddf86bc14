"""decode_image: content sniffing, renditions, and refusal of hostile or broken files."""

from __future__ import annotations

import contextlib
import random
import struct
import zlib
from collections.abc import Callable
from io import BytesIO

import numpy as np
import pytest
from crowdseg.services.ingest.imaging import DecodedImage, ImageLimits, ImageRejected, decode_image
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

pytestmark = pytest.mark.unit


# --- builders --------------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def reopen(blob: bytes) -> Image.Image:
    im = Image.open(BytesIO(blob))
    im.load()
    return im


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height greyscale pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", **elements: object) -> bytes:
    """A DICOM Part 10 file (preamble + DICM) holding `pixels` as (frames,) rows x columns."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.set_pixel_data(pixels, photometric_interpretation=photometric, bits_stored=16)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    buffer = BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def ramp16(rows: int = 8, columns: int = 16) -> np.ndarray:
    return np.tile(np.linspace(0, 4000, columns, dtype=np.uint16), (rows, 1))


def rejected(data: bytes, limits: ImageLimits = ImageLimits()) -> str:
    with pytest.raises(ImageRejected) as info:
        decode_image("upload", data, limits)
    return info.value.reason


def display_of(decoded: DecodedImage) -> Image.Image:
    return reopen(decoded.display)


# --- PNG ---------------------------------------------------------------------------------------


def test_png_8bit_grey_kept_as_is() -> None:
    pixels = np.arange(12 * 10, dtype=np.uint8).reshape(10, 12)
    decoded = decode_image("a.png", encode(Image.fromarray(pixels, "L"), "PNG"))
    assert (decoded.width, decoded.height, decoded.source_format) == (12, 10, "PNG")
    assert decoded.display_media_type == "image/png"
    shown = display_of(decoded)
    assert shown.mode == "L"
    assert np.array_equal(np.asarray(shown), pixels)


def test_png_16bit_is_stretched_to_8bit() -> None:
    """Guards: 16-bit greyscale shown as a flat or clipped picture instead of min-max scaled."""
    pixels = np.tile(np.linspace(1000, 3000, 32, dtype=np.uint16), (4, 1))
    source = Image.fromarray(pixels)
    assert source.mode == "I;16"
    shown = np.asarray(display_of(decode_image("a.png", encode(source, "PNG"))))
    assert shown.dtype == np.uint8
    assert shown.min() == 0 and shown.max() == 255
    assert np.all(np.diff(shown[0].astype(int)) >= 0)


def test_png_alpha_dropped_onto_black() -> None:
    """Guards: transparent pixels showing whatever colour they store instead of black."""
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[0, 0, 3] = 255
    decoded = decode_image("a.png", encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    shown = display_of(decoded)
    assert shown.mode == "RGB"
    assert shown.getpixel((0, 0)) == (255, 0, 0)
    assert shown.getpixel((1, 1)) == (0, 0, 0)


def test_palette_png_becomes_rgb() -> None:
    palette = Image.new("P", (3, 3))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    shown = display_of(decode_image("a.png", encode(palette, "PNG")))
    assert shown.mode == "RGB"
    assert shown.getpixel((1, 1)) == (10, 200, 30)


def test_thumbnail_longest_side_is_bounded() -> None:
    decoded = decode_image("a.png", encode(Image.new("L", (600, 300), 80), "PNG"))
    thumb = reopen(decoded.thumbnail)
    assert thumb.size == (256, 128)
    assert decoded.thumbnail_media_type == "image/jpeg"


# --- JPEG --------------------------------------------------------------------------------------


def test_jpeg_exif_orientation_applied_and_not_reapplied() -> None:
    """Guards: annotations drawn in the sideways coordinate system of an EXIF-rotated photo, and a
    display rendition that still carries the orientation tag (browsers would rotate it twice)."""
    source = Image.new("RGB", (40, 20), (200, 30, 30))
    source.paste((30, 30, 200), (0, 0, 10, 20))  # blue band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    decoded = decode_image("photo.jpg", encode(source, "JPEG", exif=exif, quality=95))
    assert (decoded.width, decoded.height) == (20, 40)
    assert decoded.display_media_type == "image/jpeg"
    shown = display_of(decoded)
    assert shown.format == "JPEG" and shown.size == (20, 40)
    assert 0x0112 not in shown.getexif()
    red, _green, blue = np.asarray(shown)[2, 10]  # the stored left edge is now the top
    assert blue > red


def test_jpeg_named_png_is_sniffed_by_content() -> None:
    """Guards: trusting the file name extension instead of the magic bytes."""
    decoded = decode_image("scan.png", encode(Image.new("RGB", (5, 5)), "JPEG"))
    assert decoded.source_format == "JPEG"


def test_cmyk_jpeg_becomes_rgb() -> None:
    decoded = decode_image("a.jpg", encode(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG"))
    assert display_of(decoded).mode == "RGB"


# --- TIFF --------------------------------------------------------------------------------------


def test_multipage_tiff_with_pages_of_different_sizes_is_refused() -> None:
    first = Image.new("L", (30, 20), 50)
    others = [Image.new("L", (70, 70), 200), Image.new("L", (5, 5), 0)]
    data = encode(first, "TIFF", save_all=True, append_images=others)
    assert rejected(data) == "the TIFF's pages differ in size (page 1 is 70×70)"


def test_tiff_with_too_many_pages_is_refused() -> None:
    """Guards: unbounded work on TIFFs declaring huge page counts."""
    pages = [Image.new("L", (4, 4), n) for n in range(4)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert rejected(data, ImageLimits(max_frames=3)) == "image has more than 3 frames"
    assert decode_image("ok.tif", data, ImageLimits(max_frames=4)).width == 4


def test_float_tiff_is_stretched_with_nan_as_minimum() -> None:
    """Guards: NaN in float images poisoning min-max scaling (all-black or crash)."""
    values = np.array([[-1.5, 0.0], [np.nan, 2.5]], dtype=np.float32)
    shown = np.asarray(display_of(decode_image("f.tif", encode(Image.fromarray(values, "F"), "TIFF"))))
    assert shown.tolist() == [[0, 96], [0, 255]]


# --- DICOM -------------------------------------------------------------------------------------


def test_dicom_monochrome16_rescale_then_window() -> None:
    """Guards: window centre/width applied to stored values instead of rescaled (HU) values."""
    stored = np.array([[0, 1000, 2000]], dtype=np.uint16)  # -1000, 0, +1000 HU
    data = dicom(stored, RescaleSlope=1, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=401)
    decoded = decode_image("ct.dcm", data)
    assert (decoded.width, decoded.height, decoded.source_format) == (3, 1, "DICOM")
    assert decoded.display_media_type == "image/png"
    assert np.asarray(display_of(decoded)).tolist() == [[0, 128, 255]]


def test_dicom_voi_lut_takes_precedence_over_window() -> None:
    """Guards: a VOI LUT Sequence ignored in favour of window values or min-max."""
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 8]
    lut.LUTData = np.array([0, 10, 200, 255], dtype="<u2").tobytes()
    data = dicom(
        np.array([[0, 1, 2, 3]], dtype=np.uint16), VOILUTSequence=[lut], WindowCenter=0, WindowWidth=1
    )
    assert np.asarray(display_of(decode_image("a.dcm", data))).tolist() == [[0, 10, 200, 255]]


def test_dicom_without_window_uses_min_max_of_rescaled_values() -> None:
    """Guards: rescale slope ignored (a negative slope must invert the picture)."""
    data = dicom(ramp16(), RescaleSlope=-1, RescaleIntercept=0)
    shown = np.asarray(display_of(decode_image("a.dcm", data)))
    assert shown[0, 0] == 255 and shown[0, -1] == 0


def test_dicom_monochrome1_is_inverted() -> None:
    """Guards: MONOCHROME1 (low = white) shown as a negative."""
    shown = np.asarray(display_of(decode_image("cr.dcm", dicom(ramp16(), "MONOCHROME1"))))
    assert shown[0, 0] == 255 and shown[0, -1] == 0


def test_dicom_multiframe_is_a_stack_under_one_window() -> None:
    frames = np.stack([np.full((4, 6), v, dtype=np.uint16) for v in (10, 20, 30)])
    frames[0, 0, 0] = 0
    decoded = decode_image("cine.dcm", dicom(frames))
    shown = np.asarray(display_of(decoded))
    assert shown.shape == (4, 6) and decoded.frames == 3 and len(decoded.more_frames) == 2
    # One min-max window over the whole stack, so frames compare: 0 black, 30 white, 10 a third.
    assert shown[0, 0] == 0 and shown[1, 1] == 85
    assert np.asarray(reopen(decoded.more_frames[1].display)).max() == 255


def test_dicom_declaring_too_many_frames_is_refused() -> None:
    """Guards: decoding or allocating for files that declare thousands of frames."""
    frames = np.zeros((3, 2, 2), dtype=np.uint16)
    assert rejected(dicom(frames), ImageLimits(max_frames=2)) == "image has more than 2 frames"


def test_dicom_pixel_limit_checked_on_header_before_decoding() -> None:
    """Guards: allocating Rows x Columns from a header before checking it (DICOM bomb)."""
    data = dicom(ramp16(), Rows=60000, Columns=60000)
    assert rejected(data) == "image has 3600000000 pixels; the limit is 40000000"


def test_dicom_without_pixels_is_refused() -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName = "Nobody"
    buffer = BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    assert rejected(buffer.getvalue()) == "DICOM file contains no image"


def test_truncated_dicom_is_refused() -> None:
    data = dicom(ramp16(64, 64))
    assert rejected(data[: len(data) - 500]) == "image is corrupt or truncated"


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, world", b"%PDF-1.7\n" + b"x" * 300, b"GIF89a" + b"\x00" * 40, b"\x00" * 200],
)
def test_non_images_are_refused(data: bytes) -> None:
    assert rejected(data) == "not a PNG, JPEG, TIFF, DICOM or NIfTI image"


def test_truncated_png_is_refused() -> None:
    """Guards: Pillow's lazy loading letting a truncated file through open() and fail later."""
    noise = np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)
    data = encode(Image.fromarray(noise, "L"), "PNG")
    assert rejected(data[: len(data) // 2]) == "image is corrupt or truncated"


def test_png_bomb_beyond_pillow_limit_is_refused() -> None:
    """Guards: decompression bombs (DecompressionBombError must become ImageRejected)."""
    assert rejected(png_declaring(100_000, 100_000)) == "image has too many pixels; the limit is 40000000"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_png_in_pillow_warning_band_is_refused() -> None:
    """Guards: images between Pillow's warning and error thresholds being decoded anyway."""
    assert rejected(png_declaring(10_000, 10_000)) == "image has 100000000 pixels; the limit is 40000000"


def test_png_over_our_pixel_limit_is_refused_before_decoding() -> None:
    """Guards: the configured pixel limit, checked on the header (the IDAT here is tiny)."""
    assert rejected(png_declaring(200, 100), ImageLimits(max_pixels=19_999)) == (
        "image has 20000 pixels; the limit is 19999"
    )


def test_zero_size_image_is_refused() -> None:
    assert rejected(png_declaring(0, 10)) in ("image has no pixels", "image is corrupt or truncated")


def test_file_over_byte_limit_is_refused() -> None:
    data = encode(Image.new("L", (64, 64)), "PNG")
    assert rejected(data, ImageLimits(max_bytes=10)) == "file is larger than 10 bytes"
    assert rejected(b"\x00" * (2**20 + 1), ImageLimits(max_bytes=2**20)) == "file is larger than 1 MiB"


def seeds() -> list[bytes]:
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 255, (24, 24, 3), dtype=np.uint8))
    return [
        encode(rgb, "PNG"),
        encode(rgb, "JPEG"),
        encode(rgb, "TIFF", compression="tiff_deflate"),
        dicom(ramp16(16, 16), RescaleSlope=2, WindowCenter=100, WindowWidth=50),
    ]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", range(4))
def test_mutated_files_only_ever_raise_image_rejected(seed: int) -> None:
    """Guards: any exception other than ImageRejected escaping for malformed input (a 500)."""
    rng = random.Random(seed)
    original = seeds()[seed]
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        with contextlib.suppress(ImageRejected):
            decode_image("fuzz", bytes(data))


# --- plain PNGs are their own display rendition ----------------------------------------------


def test_plain_png_is_shown_as_uploaded_and_small_ones_are_their_own_thumbnail() -> None:
    """A plain 8-bit grey/RGB PNG is decoded in full (so checked) but not encoded again."""
    pixels = np.random.default_rng(5).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels, "RGB"), "PNG")
    decoded = decode_image("a.png", data)
    assert decoded.display_is_original and decoded.display is data
    assert decoded.thumbnail_is_display and decoded.thumbnail is data
    assert decoded.thumbnail_media_type == decoded.display_media_type == "image/png"
    assert np.array_equal(np.asarray(display_of(decoded)), pixels)


def test_large_plain_png_still_gets_a_small_thumbnail() -> None:
    data = encode(Image.new("L", (600, 300), 80), "PNG")
    decoded = decode_image("a.png", data)
    assert decoded.display_is_original and not decoded.thumbnail_is_display
    assert reopen(decoded.thumbnail).size == (256, 128)


def with_chunk_before_iend(data: bytes, kind: bytes, body: bytes) -> bytes:
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + png_chunk(kind, body) + data[iend:]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: with_chunk_before_iend(d, b"tEXt", b"Author\x00someone"), id="text chunk"),
        pytest.param(lambda d: with_chunk_before_iend(d, b"eXIf", b"MM\x00*\x00\x00\x00\x08"), id="exif chunk"),
        pytest.param(lambda d: with_chunk_before_iend(d, b"gAMA", struct.pack(">I", 45455)), id="gamma chunk"),
        pytest.param(lambda d: d + b"<html>after the end</html>", id="data after IEND"),
    ],
)
def test_pngs_carrying_more_than_pixels_are_encoded_afresh(make: Callable[[bytes], bytes]) -> None:
    """Guards: metadata or trailing bytes of an upload reaching annotators in the display rendition."""
    source = encode(Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), "L"), "PNG")
    data = make(source)
    decoded = decode_image("a.png", data)
    assert not decoded.display_is_original and decoded.display != data
    shown = display_of(decoded)
    assert np.array_equal(np.asarray(shown), np.arange(64, dtype=np.uint8).reshape(8, 8))
    assert not shown.info.get("Author") and "gamma" not in shown.info
    assert b"tEXt" not in decoded.display and b"eXIf" not in decoded.display and b"html" not in decoded.display


def test_png_with_a_bad_chunk_crc_is_not_passed_through() -> None:
    data = bytearray(encode(Image.fromarray(np.full((8, 8, 3), 7, dtype=np.uint8), "RGB"), "PNG"))
    at = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4 : at])
    data[at + 4 + length] ^= 0xFF  # the first byte of the IDAT chunk's CRC
    try:
        decoded = decode_image("a.png", bytes(data))
    except ImageRejected:
        return  # refused outright is fine too
    assert not decoded.display_is_original and decoded.display != bytes(data)


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(Image.fromarray(np.arange(16, dtype=np.uint16).reshape(4, 4) * 1000), id="16-bit"),
        pytest.param(Image.new("RGBA", (4, 4), (1, 2, 3, 128)), id="alpha"),
        pytest.param(Image.new("P", (4, 4)), id="palette"),
        pytest.param(Image.new("1", (4, 4)), id="1-bit"),
    ],
)
def test_pngs_needing_conversion_are_encoded_afresh(image: Image.Image) -> None:
    decoded = decode_image("a.png", encode(image, "PNG"))
    assert not decoded.display_is_original
    assert display_of(decoded).mode in ("L", "RGB")


def test_jpeg_is_never_passed_through() -> None:
    data = encode(Image.new("RGB", (8, 8), (10, 20, 30)), "JPEG")
    decoded = decode_image("a.jpg", data)
    assert not decoded.display_is_original
