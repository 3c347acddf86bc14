"""The geometry of a DICOM series: slice order, voxel spacing and the voxel-to-RAS affine.

Pure numpy. A series that is not one regular volume surfaces as `GeometryRejected`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_ORIENTATION_TOLERANCE = 1e-4
_SAME_POSITION_MM = 1e-3
_SPACING_TOLERANCE = 0.01  # relative: scanners round positions to a few decimals
# DICOM patient coordinates are LPS; NIfTI (and our affine) are RAS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class GeometryRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SeriesGeometry:
    order: list[int]
    """Indices of the slices as given, sorted along the slice normal."""
    spacing: tuple[float, float, float]
    """``(z, y, x)`` in mm."""
    affine: list[list[float]]
    """Voxel ``(x, y, z)`` to RAS mm, the NIfTI convention."""


def series_geometry(
    orientations: Sequence[Sequence[float]], positions: Sequence[Sequence[float]], pixel_spacing: Sequence[float]
) -> SeriesGeometry:
    """From each slice's ImageOrientationPatient and ImagePositionPatient and the PixelSpacing."""
    cosines = np.asarray(orientations, dtype=np.float64)
    if cosines.shape[1:] != (6,) or np.abs(cosines - cosines[0]).max() > _ORIENTATION_TOLERANCE:
        raise GeometryRejected("the series' slices differ in orientation")
    row, column = cosines[0, :3], cosines[0, 3:]
    normal = np.cross(row, column)
    points = np.asarray(positions, dtype=np.float64)
    along = points @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    step = _uniform_step(along[order])
    row_spacing, column_spacing = float(pixel_spacing[0]), float(pixel_spacing[1])
    lps = np.eye(4)
    lps[:3, 0] = row * column_spacing
    lps[:3, 1] = column * row_spacing
    lps[:3, 2] = normal * step
    lps[:3, 3] = points[order[0]]
    affine = (_LPS_TO_RAS @ lps).tolist()
    return SeriesGeometry(order=order, spacing=(step, row_spacing, column_spacing), affine=affine)


def _uniform_step(sorted_positions: np.ndarray) -> float:
    steps = np.diff(sorted_positions)
    if steps.size == 0:
        return 1.0
    if steps.min() < _SAME_POSITION_MM:
        raise GeometryRejected("two slices of the series are at the same position")
    mean = float(steps.mean())
    if float(np.abs(steps - mean).max()) > _SPACING_TOLERANCE * mean + _SAME_POSITION_MM:
        raise GeometryRejected("the series' slices are not evenly spaced")
    return mean
