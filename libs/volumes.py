"""Stacks (an image with ``frames > 1``): shapes rasterised frame by frame, the volume as NIfTI-1, and
consensus points linked across frames into tracks. Shared by the consensus and export services.

Arrays of a stack are ``(frames, height, width)``, as JSON's ``spacing`` is ``(z, y, x)``; NIfTI stores
``(x, y, z)`` with x fastest on disk, so the writer transposes. ``Image.affine`` maps the voxel index
``(column, row, frame)`` to RAS millimetres, NIfTI's own convention.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
from crowdseg.consensus.interpolation import interpolate_frames
from crowdseg.domain import Image, Shape
from crowdseg.geometry import png_to_mask, rasterize
from scipy.optimize import linear_sum_assignment

NIFTI_MEDIA_TYPE = "application/gzip"
SFORM_SCANNER, SFORM_ALIGNED = 1, 2  # NIfTI-1 xform codes: the source's own frame, or spacing only


def is_stack(image: Image) -> bool:
    return image.frames > 1


def shapes_by_frame(shapes: Iterable[Shape]) -> dict[int, list[Shape]]:
    """The shapes of each frame that has any (a shape without ``frame`` counts as frame 0)."""
    grouped: dict[int, list[Shape]] = defaultdict(list)
    for shape in shapes:
        grouped[shape.frame or 0].append(shape)
    return dict(grouped)


def rasterize_frames(shapes: Iterable[Shape], frames: int, width: int, height: int) -> npt.NDArray[np.bool_]:
    """The union of the shapes' interiors frame by frame, as a ``(frames, height, width)`` volume."""
    volume = np.zeros((frames, height, width), dtype=np.bool_)
    for frame, drawn in shapes_by_frame(shapes).items():
        if 0 <= frame < frames:
            volume[frame] = rasterize(drawn, width, height)
    return volume


def rasterize_image(shapes: Iterable[Shape], image: Image) -> npt.NDArray[np.bool_]:
    return rasterize_frames(shapes, image.frames, image.width, image.height)


def rater_volume(
    shapes: Sequence[Shape], image: Image, *, interpolate: bool
) -> tuple[npt.NDArray[np.bool_], list[int]]:
    """One rater's ``(frames, height, width)`` volume and the frames filled by shape interpolation
    between the frames they drew on (none unless ``interpolate``)."""
    volume = rasterize_image(shapes, image)
    if not interpolate:
        return volume, []
    sampling = None if image.spacing is None else image.spacing[1:]
    filled = interpolate_frames(volume, shapes_by_frame(shapes), sampling)
    return filled.volume, filled.frames


def image_mask(shapes: Iterable[Shape], image: Image) -> npt.NDArray[np.bool_]:
    """The shapes' mask: ``(height, width)`` on a plain image, ``(frames, height, width)`` on a stack."""
    if is_stack(image):
        return rasterize_image(shapes, image)
    return rasterize(list(shapes), image.width, image.height)


def stored_mask(data: bytes, image: Image) -> npt.NDArray[np.bool_]:
    """A stored consensus mask: a plain image's PNG, a stack's NIfTI volume."""
    return nifti_volume(data) > 0 if is_stack(image) else png_to_mask(data)


def voxel_affine(image: Image) -> tuple[npt.NDArray[np.float64], int]:
    """The voxel-to-world matrix and its NIfTI xform code: the source's own where it has one, else the
    spacing on the diagonal (1 mm where the source says nothing)."""
    if image.affine is not None:
        return np.asarray(image.affine, dtype=np.float64), SFORM_SCANNER
    z, y, x = image.spacing or (1.0, 1.0, 1.0)
    return np.diag([x, y, z, 1.0]), SFORM_ALIGNED


def nifti_bytes(volume: npt.NDArray[Any], image: Image) -> bytes:
    """A ``(frames, height, width)`` volume as a gzipped NIfTI-1 file with the image's geometry."""
    data = np.ascontiguousarray(np.transpose(np.asarray(volume, dtype=np.uint8), (2, 1, 0)))
    affine, code = voxel_affine(image)
    nifti = nib.Nifti1Image(data, affine)
    nifti.set_sform(affine, code=code)
    nifti.set_qform(affine, code=code)
    if image.spacing is not None:
        z, y, x = image.spacing
        nifti.header.set_zooms((x, y, z))
    nifti.header.set_xyzt_units(xyz="mm")
    return gzip.compress(nifti.to_bytes(), compresslevel=6, mtime=0)


def nifti_volume(data: bytes) -> npt.NDArray[Any]:
    """The ``(frames, height, width)`` array of a file written by :func:`nifti_bytes`."""
    nifti = nib.Nifti1Image.from_bytes(gzip.decompress(data))
    return np.transpose(np.asarray(nifti.dataobj), (2, 1, 0))


def link_tracks(frames: Sequence[int], centres: npt.NDArray[Any], max_distance: float) -> list[int]:
    """Track ids (1-based) for points given by frame and x, y: each point joins the track of the nearest
    point in the frame before within ``max_distance`` (one-to-one, by least total distance), or starts a
    new track."""
    points = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    tracks = [0] * len(points)
    by_frame: dict[int, list[int]] = defaultdict(list)
    for index, frame in enumerate(frames):
        by_frame[frame].append(index)
    next_track, previous = 1, list[int]()
    last_frame: int | None = None
    for frame in sorted(by_frame):
        current = by_frame[frame]
        if last_frame is not None and frame == last_frame + 1 and previous:
            for before, now in _matches(points[previous], points[current], max_distance):
                tracks[current[now]] = tracks[previous[before]]
        for index in current:
            if not tracks[index]:
                tracks[index], next_track = next_track, next_track + 1
        previous, last_frame = current, frame
    return tracks


def _matches(
    before: npt.NDArray[np.float64], now: npt.NDArray[np.float64], max_distance: float
) -> list[tuple[int, int]]:
    cost = np.linalg.norm(before[:, None, :] - now[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= max_distance]
