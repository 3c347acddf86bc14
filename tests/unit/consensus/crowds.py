"""Synthetic crowds with known truth, shared by the consensus tests and the bench."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter, map_coordinates


def blob_truth(shape: tuple[int, ...], rng: np.random.Generator, blobs: int = 3) -> NDArray[np.bool_]:
    """A few smooth blobs covering roughly a fifth of the image."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=min(shape) / 10)
    return field > np.quantile(field, 0.8)


def warped(mask: NDArray[np.bool_], rng: np.random.Generator, amplitude: float) -> NDArray[np.bool_]:
    """The mask seen through a smooth random displacement field: realistic boundary noise."""
    if amplitude == 0:
        return mask.copy()
    grid = np.indices(mask.shape, dtype=np.float64)
    sigma = min(mask.shape) / 16
    shift = [gaussian_filter(rng.standard_normal(mask.shape), sigma) for _ in mask.shape]
    shift = [s / (np.abs(s).max() + 1e-12) * amplitude for s in shift]
    coords = [g + s for g, s in zip(grid, shift, strict=True)]
    return map_coordinates(mask.astype(np.float32), coords, order=1, mode="nearest") > 0.5


def boundary_crowd(
    truth: NDArray[np.bool_],
    raters: int,
    rng: np.random.Generator,
    *,
    bad_share: float = 0.0,
    amplitude: float = 2.0,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Good raters trace the truth with boundary noise; bad ones are shifted, shrunk or grown and
    scribble spurious blobs. Returns (masks, is_bad)."""
    n_bad = round(raters * bad_share)
    is_bad = np.zeros(raters, np.bool_)
    is_bad[raters - n_bad :] = True
    masks = np.empty((raters, *truth.shape), np.bool_)
    for r in range(raters):
        if not is_bad[r]:
            masks[r] = warped(truth, rng, amplitude)
            continue
        shifted = np.roll(truth, shift=tuple(rng.integers(-6, 7, truth.ndim)), axis=tuple(range(truth.ndim)))
        spurious = blob_truth(truth.shape, rng) & (rng.random(truth.shape) < 0.5)
        masks[r] = warped(shifted, rng, amplitude * 4) | spurious
    return masks, is_bad


def flip_crowd(
    truth: NDArray[np.bool_], flip_rates: list[float], rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Raters that flip every pixel independently with their own rate (pixel-level noise)."""
    return np.stack([truth ^ (rng.random(truth.shape) < rate) for rate in flip_rates])
