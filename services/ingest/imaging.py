"""Decode an uploaded image into the renditions annotators see.

Pure: bytes in, bytes out. Anything wrong with the input surfaces as `ImageRejected`, whose
reason is a short sentence meant for the uploader.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from io import BytesIO
from typing import Any

import nibabel
import numpy as np
import numpy.typing as npt
from crowdseg.services.ingest.volumes import GeometryRejected, series_geometry
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from PIL import Image, ImageOps
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi
from pydicom.pixels.utils import pixel_array

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_GZIP_MAGIC = b"\x1f\x8b"
_NOT_AN_IMAGE = "not a PNG, JPEG, TIFF, DICOM or NIfTI image"
_CORRUPT = "image is corrupt or truncated"

# Decoders of hostile input fail in many ways; these are the ones Pillow, numpy and pydicom raise
# for malformed files. A bug of ours (TypeError, AttributeError...) still escapes on purpose.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    ZeroDivisionError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    InvalidDicomError,
    Image.DecompressionBombError,
)

# pydicom parses element values lazily: a malformed or missing element surfaces as a TypeError or
# AttributeError when the value is first used, so for DICOM those mean bad input too.
_DICOM_ERRORS: tuple[type[BaseException], ...] = (BytesLengthException, TypeError, AttributeError)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 64 * 2**20
    max_pixels: int = 40_000_000
    # Files declaring more TIFF pages / DICOM frames than this are refused; only the first is used.
    max_frames: int = 1000
    thumbnail_size: int = 256
    # All frames of a stack together; their raw values are held as float32 while it is decoded.
    max_stack_voxels: int = 128_000_000


@dataclass(frozen=True)
class FrameRendition:
    display: bytes
    thumbnail: bytes


@dataclass(frozen=True)
class DecodedImage:
    width: int
    height: int
    source_format: str
    display: bytes
    display_media_type: str
    thumbnail: bytes
    thumbnail_media_type: str
    # The upload itself already is the display rendition (a plain 8-bit PNG, see `_plain_png`), and
    # the display rendition already is the thumbnail (it fits): the caller may store each object once.
    display_is_original: bool = False
    thumbnail_is_display: bool = False
    frames: int = 1
    more_frames: tuple[FrameRendition, ...] = ()
    """Renditions of frames 1, 2, ... of a stack (frame 0 is ``display`` and ``thumbnail``)."""
    values: tuple[bytes, ...] = field(default=(), repr=False)
    """Each frame's raw values as a float32 ``.npy``, for rendering other windows (DICOM, NIfTI)."""
    window: tuple[float, float] | None = None
    """The default ``(center, width)`` of the raw values, when they are kept."""
    windows: tuple[tuple[float, float], ...] = ()
    """Every ``(center, width)`` the DICOM file offers (several Window Center/Width values), first the default."""
    spacing: tuple[float, float, float] | None = None
    affine: list[list[float]] | None = None


class ImageRejected(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_image(name: str, data: bytes, limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Decode `data` by its content; `name` is the uploader's and never decides the format."""
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"file is larger than {_format_size(limits.max_bytes)}")
    source_format = sniff_format(data)
    if source_format is None:
        raise ImageRejected(_NOT_AN_IMAGE)
    try:
        if source_format == "DICOM":
            return _decode_dicom(data, limits)
        if source_format == "NIfTI":
            return _decode_nifti(data, limits)
        if source_format == "TIFF" and _tiff_pages(data, limits) > 1:
            return _decode_tiff_stack(data, limits)
        image = _decode_pillow(data, source_format, limits)
        # Decoded in full either way (a corrupt or truncated file is refused); a plain PNG needs no new encoding.
        plain = source_format == "PNG" and image.mode in ("L", "RGB") and _plain_png(data, image.width, image.height)
        return _render(image, source_format, limits, original=data if plain else None)
    except ImageRejected:
        raise
    except MemoryError as exc:
        raise ImageRejected("image is too large to decode") from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejected(_CORRUPT) from exc


def sniff_format(data: bytes) -> str | None:
    """The format the magic bytes announce, ignoring any file name extension."""
    if data[128:132] == b"DICM":
        return "DICOM"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data[:4] in _TIFF_MAGICS:
        return "TIFF"
    if _is_nifti(data) or data.startswith(_GZIP_MAGIC):
        # A gzip stream is only accepted once it turns out to hold a NIfTI file.
        return "NIfTI"
    return None


def _is_nifti(data: bytes) -> bool:
    return data[344:348] == b"n+1\x00" or data[4:8] == b"n+2\x00"


# --- Pillow: PNG, JPEG, TIFF -----------------------------------------------------------------


def _decode_pillow(data: bytes, source_format: str, limits: ImageLimits) -> Image.Image:
    try:
        opened = Image.open(BytesIO(data), formats=[source_format])
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"image has too many pixels; the limit is {_pixel_limit(limits)}") from exc
    _check_frames(opened, source_format, limits)
    # Checked on the header, before any pixel is decoded: this is the decompression-bomb guard,
    # with a limit never above Pillow's MAX_IMAGE_PIXELS, so its warning band is refused too.
    _check_pixels(opened.width, opened.height, limits)
    opened.load()
    im: Image.Image = opened
    if source_format == "JPEG":
        # Annotators draw on the upright picture, so its coordinates are the ones we report.
        im = ImageOps.exif_transpose(opened)
    return _to_display_mode(im)


def _check_frames(im: Image.Image, source_format: str, limits: ImageLimits) -> None:
    if source_format == "TIFF":
        # n_frames would walk every IFD; probing one past the limit bounds the work.
        try:
            im.seek(limits.max_frames)
        except EOFError:
            im.seek(0)
            return
        raise ImageRejected(_too_many_frames(limits))
    if getattr(im, "n_frames", 1) > limits.max_frames:
        raise ImageRejected(_too_many_frames(limits))


def _to_display_mode(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I") or mode == "F":
        return _array_to_image(_min_max(np.asarray(im)))
    if mode in ("LA", "La", "PA", "P", "RGBA", "RGBa"):
        return _flatten_alpha(im)
    return im.convert("RGB")


def _flatten_alpha(im: Image.Image) -> Image.Image:
    grey = im.mode in ("LA", "La")
    rgba = im.convert("LA" if grey else "RGBA")
    out = Image.new("L" if grey else "RGB", rgba.size, 0)
    out.paste(rgba.convert(out.mode), mask=rgba.getchannel("A"))
    return out


# --- DICOM -----------------------------------------------------------------------------------


def _decode_dicom(data: bytes, limits: ImageLimits) -> DecodedImage:
    try:
        ds = dcmread(BytesIO(data), force=False)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise ImageRejected("DICOM file contains no image")
        _check_dicom_header(ds, limits)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            return _dicom_multiframe(ds, frames, limits)
        decoded = _render(_dicom_to_image(pixel_array(ds, index=0), ds), "DICOM", limits)
        if not _windowable(ds):
            return decoded
        values = _rescale(pixel_array(ds, index=0), ds)
        window = _dicom_window(ds, values[np.newaxis])
        return replace(decoded, values=(_npy(values),), window=window, windows=_dicom_windows(ds))
    except _DICOM_ERRORS as exc:
        raise ImageRejected(_CORRUPT) from exc


def _dicom_to_image(arr: npt.NDArray[Any], ds: Dataset) -> Image.Image:
    photometric = _photometric(ds)
    if photometric.startswith("MONOCHROME"):
        unit = _dicom_grey(arr, ds, invert=photometric == "MONOCHROME1")
    elif photometric == "PALETTE COLOR":
        unit = _min_max(apply_color_lut(arr, ds))
    else:
        unit = _dicom_colour(arr)
    return _array_to_image(unit)


def _photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()


def _windowable(ds: Dataset) -> bool:
    """Raw values are kept (and other windows rendered) for greyscale MONOCHROME2, where a window means
    something: also under a VOI LUT (the upload's rendition applies the LUT; another window is linear
    over the modality values, as viewers do when the user drags)."""
    return _photometric(ds) == "MONOCHROME2"


def _dicom_window(ds: Dataset, values: FloatArray) -> tuple[float, float]:
    if "WindowCenter" in ds and "WindowWidth" in ds and _first(ds.WindowWidth) >= 1:
        return _first(ds.WindowCenter), _first(ds.WindowWidth)
    return min_max_window(values)


def _dicom_windows(ds: Dataset) -> tuple[tuple[float, float], ...]:
    """Every Window Center/Width pair the file offers (the first is the default), as presets."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return ()
    centers, widths = _all(ds.WindowCenter), _all(ds.WindowWidth)
    return tuple((c, w) for c, w in zip(centers, widths, strict=False) if w >= 1)


def _dicom_multiframe(ds: Dataset, frames: int, limits: ImageLimits) -> DecodedImage:
    _check_voxels(int(ds.Columns), int(ds.Rows), frames, limits)
    arr = pixel_array(ds)
    spacing = _multiframe_spacing(ds)
    if not _windowable(ds):
        images = [_dicom_to_image(arr[k], ds) for k in range(frames)]
        return _render_stack(images, "DICOM", limits, spacing=spacing)
    values = _rescale(arr, ds)
    window = _dicom_window(ds, values)
    if "VOILUTSequence" in ds:
        decoded = _render_stack([_dicom_to_image(arr[k], ds) for k in range(frames)], "DICOM", limits, spacing=spacing)
        return replace(
            decoded, values=tuple(_npy(frame) for frame in values), window=window, windows=_dicom_windows(ds)
        )
    return replace(_windowed_stack(values, window, "DICOM", limits, spacing=spacing), windows=_dicom_windows(ds))


def _multiframe_spacing(ds: Dataset) -> tuple[float, float, float] | None:
    measures = ds
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and "PixelMeasuresSequence" in shared[0]:
        measures = shared[0].PixelMeasuresSequence[0]
    pixel = measures.get("PixelSpacing") or ds.get("PixelSpacing")
    between = measures.get("SpacingBetweenSlices") or ds.get("SpacingBetweenSlices")
    between = between or measures.get("SliceThickness") or ds.get("SliceThickness")
    if not pixel or not between:
        return None
    return float(between), float(pixel[0]), float(pixel[1])


def decode_series(parts: Sequence[bytes], limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """The files of one DICOM series as one stack, its slices ordered along their normal."""
    if len(parts) > limits.max_frames:
        raise ImageRejected(f"series has {len(parts)} slices; the limit is {limits.max_frames} frames")
    try:
        slices = [dcmread(BytesIO(part), force=False) for part in parts]
        return _series_stack(slices, limits)
    except ImageRejected:
        raise
    except GeometryRejected as exc:
        raise ImageRejected(exc.reason) from exc
    except MemoryError as exc:
        raise ImageRejected("series is too large to decode") from exc
    except (*_DECODE_ERRORS, *_DICOM_ERRORS) as exc:
        raise ImageRejected(f"a slice of the series is corrupt or truncated ({type(exc).__name__})") from exc


def _series_stack(slices: Sequence[Dataset], limits: ImageLimits) -> DecodedImage:
    first = slices[0]
    if any((s.get("Rows"), s.get("Columns")) != (first.get("Rows"), first.get("Columns")) for s in slices):
        raise ImageRejected("the series' slices differ in size")
    if any(_photometric(s) != "MONOCHROME2" for s in slices):
        raise ImageRejected("only greyscale (MONOCHROME2) series are accepted")
    missing = [s for s in slices if "ImagePositionPatient" not in s or "ImageOrientationPatient" not in s]
    if missing or "PixelSpacing" not in first:
        raise ImageRejected("a slice of the series has no position, orientation or pixel spacing")
    _check_dicom_header(first, limits)
    _check_voxels(int(first.Columns), int(first.Rows), len(slices), limits)
    geometry = series_geometry(
        [[float(v) for v in s.ImageOrientationPatient] for s in slices],
        [[float(v) for v in s.ImagePositionPatient] for s in slices],
        [float(v) for v in first.PixelSpacing],
    )
    ordered = [slices[k] for k in geometry.order]
    values = np.stack([_rescale(pixel_array(s, index=0), s) for s in ordered])
    window = _dicom_window(ordered[0], values)
    decoded = _windowed_stack(values, window, "DICOM", limits, spacing=geometry.spacing, affine=geometry.affine)
    return replace(decoded, windows=_dicom_windows(ordered[0]))


# --- NIfTI -----------------------------------------------------------------------------------


def _decode_nifti(data: bytes, limits: ImageLimits) -> DecodedImage:
    raw = _gunzip(data, limits) if data.startswith(_GZIP_MAGIC) else data
    if not _is_nifti(raw):
        raise ImageRejected(_NOT_AN_IMAGE)

    try:
        return _nifti_stack(raw, limits)
    except _NIFTI_ERRORS as exc:
        raise ImageRejected(_CORRUPT) from exc


def _nifti_stack(raw: bytes, limits: ImageLimits) -> DecodedImage:
    kind = nibabel.Nifti1Image if raw[344:348] == b"n+1\x00" else nibabel.Nifti2Image
    volume = kind.from_bytes(raw)
    shape = tuple(int(n) for n in volume.header.get_data_shape())
    if len(shape) > 3 and any(n != 1 for n in shape[3:]):
        raise ImageRejected("NIfTI images with more than 3 dimensions (time, vectors) are not accepted")
    width, height = shape[0], shape[1] if len(shape) > 1 else 1
    frames = shape[2] if len(shape) > 2 else 1
    _check_pixels(width, height, limits)
    if frames > limits.max_frames:
        raise ImageRejected(_too_many_frames(limits))
    _check_voxels(width, height, frames, limits)
    xyz = np.asarray(volume.get_fdata(dtype=np.float32)).reshape(width, height, frames)
    # nibabel's array is (x, y, z); a frame is shown with y down the rows, as JSON's (z, y, x) says.
    values = np.ascontiguousarray(xyz.transpose(2, 1, 0))
    zooms = [float(z) for z in volume.header.get_zooms()[:3]]
    spacing = (zooms[2], zooms[1], zooms[0]) if len(zooms) == 3 else None
    affine = [[float(v) for v in row] for row in volume.affine]
    return _windowed_stack(values, min_max_window(values), "NIfTI", limits, spacing=spacing, affine=affine)


def _gunzip(data: bytes, limits: ImageLimits) -> bytes:
    # Bounded, a gzip bomb stops at the cap: a volume at the voxel cap in float32, plus its header.
    cap = 4 * limits.max_stack_voxels + 2**20
    try:
        raw = zlib.decompressobj(wbits=31).decompress(data, cap + 1)
    except zlib.error as exc:
        raise ImageRejected(_NOT_AN_IMAGE) from exc
    if len(raw) > cap:
        raise ImageRejected(f"file expands to more than {_format_size(cap)}")
    return raw


# --- Stacks ----------------------------------------------------------------------------------


# nibabel reports a malformed header with its own exceptions, some of them plain Exception subclasses.
_NIFTI_ERRORS: tuple[type[BaseException], ...] = (HeaderDataError, ImageFileError, TypeError, AttributeError)

# Pillow reports a TIFF page with missing tags as a TypeError.
_TIFF_ERRORS: tuple[type[BaseException], ...] = (TypeError,)


def _tiff_pages(data: bytes, limits: ImageLimits) -> int:
    try:
        with Image.open(BytesIO(data), formats=["TIFF"]) as opened:
            _check_frames(opened, "TIFF", limits)
            return int(getattr(opened, "n_frames", 1))
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"image has too many pixels; the limit is {_pixel_limit(limits)}") from exc
    except _TIFF_ERRORS as exc:
        raise ImageRejected(_CORRUPT) from exc


def _decode_tiff_stack(data: bytes, limits: ImageLimits) -> DecodedImage:
    try:
        images = _tiff_page_images(data, limits)
    except _TIFF_ERRORS as exc:
        raise ImageRejected(_CORRUPT) from exc
    if all(im.mode in ("L", "F") or im.mode.startswith("I") for im in images):
        values = np.stack([np.asarray(im, dtype=np.float32) for im in images])
        eight_bit = all(im.mode == "L" for im in images)
        window = (127.5, 255.0) if eight_bit else percentile_window(values)
        return _windowed_stack(values, window, "TIFF", limits)
    return _render_stack([_to_display_mode(im) for im in images], "TIFF", limits)


def _tiff_page_images(data: bytes, limits: ImageLimits) -> list[Image.Image]:
    with Image.open(BytesIO(data), formats=["TIFF"]) as opened:
        pages = int(getattr(opened, "n_frames", 1))
        size = opened.size
        _check_pixels(*size, limits)
        _check_voxels(*size, pages, limits)
        images: list[Image.Image] = []
        for page in range(pages):
            opened.seek(page)
            if opened.size != size:
                raise ImageRejected(f"the TIFF's pages differ in size (page {page} is {opened.width}×{opened.height})")
            opened.load()
            images.append(opened.copy())
    return images


def min_max_window(values: npt.NDArray[Any]) -> tuple[float, float]:
    """The window spanning the finite values, as ``(center, width)``."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return (low + high) / 2, max(high - low, 1e-6)


TIFF_WINDOW_PERCENTILES = (0.5, 99.5)
_PERCENTILE_SAMPLE = 4_000_000  # values a percentile is taken over; a regular subsample beyond


def percentile_window(values: npt.NDArray[Any]) -> tuple[float, float]:
    """The window from the 0.5th to the 99.5th percentile of the finite values (a 16-bit or float
    stack's default: a few hot or dead pixels do not squeeze the rest into a handful of grey levels)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    sample = finite[:: max(1, finite.size // _PERCENTILE_SAMPLE)]
    low, high = (float(v) for v in np.percentile(sample, TIFF_WINDOW_PERCENTILES))
    if high <= low:
        return min_max_window(finite)
    return (low + high) / 2, high - low


def apply_window(values: npt.NDArray[Any], center: float, width: float) -> FloatArray:
    """Linear from ``center - width/2`` (black) to ``center + width/2`` (white); non-finite values black."""
    unit = (np.nan_to_num(values.astype(np.float32), nan=-np.inf) - np.float32(center)) / np.float32(width)
    return _clip_unit(unit + np.float32(0.5))


def render_window(values: FloatArray, center: float, width: float) -> bytes:
    """One frame's raw values as a PNG under the window."""
    return _encode(_array_to_image(apply_window(values, center, width)), "PNG", quality=92)


def _windowed_stack(
    values: FloatArray,
    window: tuple[float, float],
    source_format: str,
    limits: ImageLimits,
    *,
    spacing: tuple[float, float, float] | None = None,
    affine: list[list[float]] | None = None,
    keep_values: bool = True,
) -> DecodedImage:
    images = [_array_to_image(apply_window(frame, *window)) for frame in values]
    decoded = _render_stack(images, source_format, limits, spacing=spacing, affine=affine)
    if not keep_values:
        return decoded
    return replace(decoded, values=tuple(_npy(frame) for frame in values), window=window)


def _render_stack(
    images: list[Image.Image],
    source_format: str,
    limits: ImageLimits,
    *,
    spacing: tuple[float, float, float] | None = None,
    affine: list[list[float]] | None = None,
) -> DecodedImage:
    rendered = [_render(im, source_format, limits) for im in images]
    more = tuple(FrameRendition(display=r.display, thumbnail=r.thumbnail) for r in rendered[1:])
    return replace(rendered[0], frames=len(rendered), more_frames=more, spacing=spacing, affine=affine)


def _npy(values: npt.NDArray[Any]) -> bytes:
    buffer = BytesIO()
    np.save(buffer, np.asarray(values, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def load_values(data: bytes) -> FloatArray:
    return np.asarray(np.load(BytesIO(data), allow_pickle=False), dtype=np.float32)


def _check_voxels(width: int, height: int, frames: int, limits: ImageLimits) -> None:
    voxels = width * height * frames
    if voxels > limits.max_stack_voxels:
        raise ImageRejected(f"stack has {voxels} voxels; the limit is {limits.max_stack_voxels}")


def _check_dicom_header(ds: Dataset, limits: ImageLimits) -> None:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > limits.max_frames:
        raise ImageRejected(_too_many_frames(limits))
    _check_pixels(int(ds.get("Columns", 0)), int(ds.get("Rows", 0)), limits)


def _dicom_grey(arr: npt.NDArray[Any], ds: Dataset, *, invert: bool) -> FloatArray:
    values = _rescale(arr, ds)
    if "VOILUTSequence" in ds:
        unit = _voi_lut(values, ds)
    elif "WindowCenter" in ds and "WindowWidth" in ds and _first(ds.WindowWidth) >= 1:
        unit = _window(values, _first(ds.WindowCenter), _first(ds.WindowWidth))
    else:
        unit = _min_max(values)
    # MONOCHROME1 means the lowest value is shown white.
    return 1.0 - unit if invert else unit


def _dicom_colour(arr: npt.NDArray[Any]) -> FloatArray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255)
    return _min_max(arr)


def _rescale(arr: npt.NDArray[Any], ds: Dataset) -> FloatArray:
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    values = arr.astype(np.float32)
    values *= np.float32(slope)
    values += np.float32(intercept)
    return values


def _voi_lut(values: FloatArray, ds: Dataset) -> FloatArray:
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    # The LUT is indexed by integers; modality values are integral in practice.
    mapped = np.asarray(apply_voi(np.rint(values).astype(np.int32), ds, index=0), dtype=np.float32)
    if not 1 <= bits <= 16:
        return _min_max(mapped)
    return _clip_unit(mapped / np.float32(2**bits - 1))


def _window(values: FloatArray, center: float, width: float) -> FloatArray:
    # DICOM PS3.3 C.11.2.1.2.1, the "LINEAR" function.
    unit = (values - np.float32(center - 0.5)) / np.float32(max(width - 1.0, 1.0)) + np.float32(0.5)
    return _clip_unit(unit)


def _clip_unit(values: npt.NDArray[Any]) -> FloatArray:
    return np.asarray(np.clip(values, 0.0, 1.0), dtype=np.float32)


def _all(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, MultiValue) else [float(value)]


def _first(value: Any) -> float:
    # Window values may hold several alternatives; the first is the primary one.
    return float(value[0]) if isinstance(value, MultiValue) else float(value)


# --- Shared ----------------------------------------------------------------------------------


def _check_pixels(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejected("image has no pixels")
    pixels = width * height
    if pixels > _pixel_limit(limits):
        raise ImageRejected(f"image has {pixels} pixels; the limit is {_pixel_limit(limits)}")


def _pixel_limit(limits: ImageLimits) -> int:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return limits.max_pixels if pillow_limit is None else min(limits.max_pixels, pillow_limit)


def _min_max(arr: npt.NDArray[Any]) -> FloatArray:
    """Stretch to 0..1; non-finite values (float images) count as the minimum."""
    values = np.asarray(arr, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.float32)
    low, high = float(values[finite].min()), float(values[finite].max())
    values = np.where(finite, values, np.float32(low))
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return (values - np.float32(low)) / np.float32(high - low)


def _array_to_image(unit: FloatArray) -> Image.Image:
    pixels = np.rint(_clip_unit(unit) * np.float32(255)).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        return Image.fromarray(pixels, mode="L")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return Image.fromarray(pixels, mode="RGB")
    raise ImageRejected("image has an unsupported pixel layout")


# A PNG made of these chunks only carries pixels: no text, time, EXIF, ICC profile, gamma or transparency.
_PLAIN_PNG_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND"})
_PLAIN_PNG_COLOUR_TYPES = (0, 2)  # greyscale, RGB
_PLAIN_PNG_SLACK = 4096  # bytes a plain PNG may exceed its raw pixels by (headers, incompressible data)


def _plain_png(data: bytes, width: int, height: int) -> bool:
    """True when the PNG can be shown as uploaded: 8-bit grey or RGB, only IHDR/IDAT/IEND chunks with
    valid CRCs, nothing after IEND, and no larger than its raw pixels (so no padding passes through)."""
    channels = 0
    position = len(_PNG_MAGIC)
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body_end = position + 8 + length
        if kind not in _PLAIN_PNG_CHUNKS or body_end + 4 > len(data):
            return False
        (crc,) = struct.unpack_from(">I", data, body_end)
        if zlib.crc32(memoryview(data)[position + 4 : body_end]) != crc:
            return False
        if kind == b"IHDR":
            depth, colour = data[position + 16], data[position + 17]
            if length != 13 or depth != 8 or colour not in _PLAIN_PNG_COLOUR_TYPES:
                return False
            channels = 1 if colour == 0 else 3
        position = body_end + 4
        if kind == b"IEND":
            raw = height * (width * channels + 1)
            return channels > 0 and position == len(data) and len(data) <= raw + _PLAIN_PNG_SLACK
    return False


def _render(im: Image.Image, source_format: str, limits: ImageLimits, *, original: bytes | None = None) -> DecodedImage:
    """The display rendition (``original`` itself when given: it is already one) and the thumbnail."""
    # Fresh renditions carry no metadata of the upload (EXIF, GPS, ICC, text chunks).
    im.info = {}
    as_jpeg = source_format == "JPEG"
    display = original if original is not None else _encode(im, "JPEG" if as_jpeg else "PNG", quality=92)
    display_media_type = "image/jpeg" if as_jpeg else "image/png"
    if max(im.width, im.height) <= limits.thumbnail_size:
        # Already small enough: the thumbnail would be the same pixels again.
        thumbnail, thumbnail_media_type, thumbnail_is_display = display, display_media_type, True
    else:
        thumb = im.copy()
        thumb.thumbnail((limits.thumbnail_size, limits.thumbnail_size), Image.Resampling.LANCZOS)
        thumbnail, thumbnail_media_type, thumbnail_is_display = _encode(thumb, "JPEG", quality=85), "image/jpeg", False
    return DecodedImage(
        width=im.width,
        height=im.height,
        source_format=source_format,
        display=display,
        display_media_type=display_media_type,
        thumbnail=thumbnail,
        thumbnail_media_type=thumbnail_media_type,
        display_is_original=original is not None,
        thumbnail_is_display=thumbnail_is_display,
    )


def _encode(im: Image.Image, fmt: str, *, quality: int) -> bytes:
    buffer = BytesIO()
    if fmt == "JPEG":
        im.save(buffer, "JPEG", quality=quality)
    else:
        im.save(buffer, "PNG")
    return buffer.getvalue()


def _too_many_frames(limits: ImageLimits) -> str:
    return f"image has more than {limits.max_frames} frames"


def _format_size(n: int) -> str:
    if n % 2**20 == 0:
        return f"{n // 2**20} MiB"
    return f"{n} bytes"
