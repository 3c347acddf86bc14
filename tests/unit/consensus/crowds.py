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


# --- The accuracy grid's crowds (bench/consensus_accuracy): symmetric size noise and a third bad ----------

GRID_KINDS = (
    "good-tight",
    "good-loose",
    "spammers",
    "shifted",
    "over-drawers",
    "under-drawers",
    "skippers",
    "mix",
)
BAD_MODES = ("spammer", "shifted", "over-drawer", "under-drawer", "skipper")
TIGHT, LOOSE = (1.5, 2.0), (3.0, 4.0)  # (size noise, wobble) in pixels


def sized_rater(
    distance: NDArray[np.float64], rng: np.random.Generator, size: float, wobble: float, offset: float = 0.0
) -> NDArray[np.bool_]:
    """An outline a little too small or too large at random (up to ``size`` pixels either way,
    symmetric), drawn by a hand that wobbles ``wobble`` pixels; ``offset`` adds a deliberate bias."""
    return warped(distance < offset + rng.uniform(-size, size), rng, wobble)


def skipping_rater(
    truth: NDArray[np.bool_], distance: NDArray[np.float64], rng: np.random.Generator, size: float, wobble: float
) -> NDArray[np.bool_]:
    """A careful outline of only part of the object: everything beyond a random plane, about 40 % of the
    object's pixels, is left out."""
    mask = sized_rater(distance, rng, size, wobble)
    direction = rng.standard_normal(truth.ndim)
    direction /= np.linalg.norm(direction)
    projection = np.tensordot(direction, np.indices(truth.shape, dtype=np.float64), axes=1)
    return np.asarray(mask & (projection < np.quantile(projection[truth], 0.6)))


def bad_grid_rater(
    mode: str, truth: NDArray[np.bool_], distance: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.bool_]:
    """One bad rater of the grid: a spammer drawing random blobs anywhere (as much area as the object),
    an outline shifted by 5-8 pixels, one drawn 5-8 pixels too large or too small, or a skipper."""
    size, wobble = TIGHT
    if mode == "spammer":
        return blob_truth(truth.shape, rng, coverage=float(truth.mean()))
    if mode == "shifted":
        direction = rng.standard_normal(truth.ndim)
        offset = direction / np.linalg.norm(direction) * rng.uniform(5.0, 8.0)
        shifted = np.roll(distance, shift=tuple(round(v) for v in offset), axis=tuple(range(truth.ndim)))
        return sized_rater(shifted, rng, size, wobble)
    if mode == "over-drawer":
        return sized_rater(distance, rng, size, wobble, offset=rng.uniform(5.0, 8.0))
    if mode == "under-drawer":
        return sized_rater(distance, rng, size, wobble, offset=-rng.uniform(5.0, 8.0))
    if mode == "skipper":
        return skipping_rater(truth, distance, rng, size, wobble)
    raise ValueError(f"unknown bad rater {mode!r}")


def grid_crowd(
    kind: str, truth: NDArray[np.bool_], raters: int, rng: np.random.Generator
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(masks, is_bad) of one crowd of the grid: ``good-tight`` and ``good-loose`` are all good raters with
    symmetric size noise; the other kinds have ``raters // 3`` bad raters (the last ones) of one kind, or of
    every kind in turn (``mix``), among tight good ones."""
    if kind not in GRID_KINDS:
        raise ValueError(f"unknown crowd kind {kind!r}")
    distance = signed_distance(truth)
    bad = 0 if kind.startswith("good") else raters // 3
    size, wobble = LOOSE if kind == "good-loose" else TIGHT
    masks = np.empty((raters, *truth.shape), np.bool_)
    for r in range(raters - bad):
        masks[r] = sized_rater(distance, rng, size, wobble)
    singular = {"spammers": "spammer", "shifted": "shifted", "skippers": "skipper"}
    for b in range(bad):
        mode = BAD_MODES[b % len(BAD_MODES)] if kind == "mix" else singular.get(kind, kind[:-1])
        masks[raters - bad + b] = bad_grid_rater(mode, truth, distance, rng)
    is_bad = np.zeros(raters, np.bool_)
    is_bad[raters - bad :] = True
    return masks, is_bad
