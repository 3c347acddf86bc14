"""Synthetic crowds with known truth, shared by the consensus tests and the bench.

Good raters trace the truth through a smooth random displacement (boundary noise, as a
freehand contour would); bad raters are shifted, much sloppier, and add a spurious region.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import distance_transform_edt, gaussian_filter, map_coordinates, zoom

_COARSE = 8  # noise lives on a grid this many times coarser than the image


def _smooth_noise(shape: tuple[int, ...], rng: np.random.Generator) -> NDArray[np.float64]:
    coarse = tuple(max(4, s // _COARSE) for s in shape)
    field = gaussian_filter(rng.standard_normal(coarse), sigma=max(1.0, min(coarse) / 12))
    full = zoom(field, [s / c for s, c in zip(shape, coarse, strict=True)], order=1)
    return np.asarray(full[tuple(slice(0, s) for s in shape)], np.float64)


def blob_truth(shape: tuple[int, ...], rng: np.random.Generator, coverage: float = 0.2) -> NDArray[np.bool_]:
    """A few smooth blobs covering ``coverage`` of the image."""
    field = _smooth_noise(shape, rng)
    return np.asarray(field > np.quantile(field, 1.0 - coverage))


def warped(mask: NDArray[np.bool_], rng: np.random.Generator, amplitude: float) -> NDArray[np.bool_]:
    """The mask seen through a smooth random displacement of at most ``amplitude`` pixels."""
    if amplitude == 0:
        return mask.copy()
    grid = np.indices(mask.shape, dtype=np.float32)
    for axis in range(mask.ndim):
        shift = _smooth_noise(mask.shape, rng)
        grid[axis] += (shift / (np.abs(shift).max() + 1e-12) * amplitude).astype(np.float32)
    return np.asarray(map_coordinates(mask.astype(np.float32), grid, order=1, mode="nearest") > 0.5)


def spurious_region(shape: tuple[int, ...], rng: np.random.Generator) -> NDArray[np.bool_]:
    """A solid ball somewhere in the image, about 2% of its area."""
    centre = [rng.uniform(0, s) for s in shape]
    radius = (0.02 * np.prod(shape) / np.pi) ** (1 / len(shape))
    distance = sum(
        ((np.arange(s) - c) ** 2).reshape([-1 if a == i else 1 for a in range(len(shape))])
        for i, (s, c) in enumerate(zip(shape, centre, strict=True))
    )
    return np.asarray(distance < radius**2)


def signed_distance(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Distance to the boundary, negative inside the mask."""
    return np.asarray(distance_transform_edt(~mask) - distance_transform_edt(mask), np.float64)


def good_rater(
    truth: NDArray[np.bool_], distance: NDArray[np.float64], rng: np.random.Generator, amplitude: float
) -> NDArray[np.bool_]:
    """A careful rater with a personal habit of tracing a little outside or inside the edge
    (up to ``amplitude / 2`` pixels) and a wobbly hand (``amplitude`` pixels of smooth noise)."""
    habit = rng.uniform(-amplitude / 2, amplitude / 2)
    return warped(distance < habit + 0.5, rng, amplitude)


def bad_rater(truth: NDArray[np.bool_], rng: np.random.Generator, mode: int, amplitude: float) -> NDArray[np.bool_]:
    """The common failure modes of crowd outlines, chosen by ``mode % 3``: a rater who draws
    far outside the object, one who draws well inside it, and a sloppy one who is offset,
    wobbly, and outlines something that is not there."""
    margin = 3.0 * amplitude + 2.0
    if mode % 3 == 0:
        return warped(distance_transform_edt(~truth) < margin, rng, amplitude)
    if mode % 3 == 1:
        return warped(distance_transform_edt(truth) > margin, rng, amplitude)
    offset = tuple(int(v) for v in rng.integers(-4, 5, truth.ndim))
    shifted = np.roll(truth, shift=offset, axis=tuple(range(truth.ndim)))
    return warped(shifted, rng, amplitude * 3) | spurious_region(truth.shape, rng)


def boundary_crowd(
    truth: NDArray[np.bool_],
    raters: int,
    rng: np.random.Generator,
    *,
    bad_share: float = 0.0,
    amplitude: float = 2.0,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(masks, is_bad): the last ``round(raters * bad_share)`` raters are bad."""
    is_bad = np.zeros(raters, np.bool_)
    is_bad[raters - round(raters * bad_share) :] = True
    masks = np.empty((raters, *truth.shape), np.bool_)
    distance = signed_distance(truth)
    for r in range(raters):
        masks[r] = bad_rater(truth, rng, r, amplitude) if is_bad[r] else good_rater(truth, distance, rng, amplitude)
    return masks, is_bad


def flip_crowd(
    truth: NDArray[np.bool_], flip_rates: list[float], rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Raters that flip every pixel independently with their own rate (pixel-level noise)."""
    return np.stack([truth ^ (rng.random(truth.shape) < rate) for rate in flip_rates])
