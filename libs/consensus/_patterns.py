"""Distinct rater-decision patterns of a stack of binary masks.

Pixels where every rater made the same decisions share every quantity STAPLE estimates,
so expectation-maximisation can run over distinct patterns weighted by their pixel counts
(see DESIGN.md, "Consensus"). Most of an image is unanimous, so the unanimous patterns are
found with cheap comparisons and only the remaining pixels are sorted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

_BITS_PER_WORD = 64


@dataclass(frozen=True)
class DecisionPatterns:
    """Distinct decision rows, their pixel counts, and each pixel's row index."""

    decisions: NDArray[np.float64]  # (patterns, raters), 1.0 = foreground vote
    counts: NDArray[np.float64]  # (patterns,)
    pixel_pattern: NDArray[np.intp]  # (pixels,) index into `decisions`

    def expand(self, per_pattern: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scatter one value per pattern back onto the pixels."""
        return per_pattern[self.pixel_pattern]


def as_binary_stack(masks: NDArray[Any]) -> NDArray[np.bool_]:
    """Validate a (raters, ...) stack of binary masks and return it as bool."""
    stack = np.asarray(masks)
    if stack.ndim < 2 or stack.shape[0] == 0 or stack[0].size == 0:
        raise ValueError(f"expected a non-empty (raters, H, W[, D]) stack, got shape {stack.shape}")
    if stack.dtype == np.bool_:
        return stack
    if stack.dtype == object:
        raise ValueError("masks must be a regular (raters, ...) array, not ragged")
    if stack.min() < 0 or stack.max() > 1:
        raise ValueError("masks must be boolean or 0/1")
    return stack != 0


def stack_masks(masks: NDArray[Any] | list[NDArray[Any]]) -> NDArray[np.bool_]:
    """Stack a list of same-shape masks, raising ValueError on ragged input."""
    if isinstance(masks, np.ndarray):
        return as_binary_stack(masks)
    shapes = {np.shape(m) for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"masks differ in shape: {sorted(shapes)}")
    return as_binary_stack(np.stack(masks))


def _pack_votes(flat: NDArray[np.bool_]) -> NDArray[np.uint64]:
    """Pack each pixel's rater votes into bits: (words, pixels) uint64, rater r at bit r % 64.

    The bool bytes of 8 neighbouring pixels are OR-ed as one uint64, so a rater costs one
    vector shift-or over pixels/8 words; bits of a byte never spill because votes are 0/1.
    """
    raters, pixels = flat.shape
    padded = -pixels % 8
    votes = np.pad(flat, ((0, 0), (0, padded))) if padded else np.ascontiguousarray(flat)
    lanes = votes.view(np.uint8).view(np.uint64)
    n_bytes = -(-raters // 8)
    byte_planes = np.empty((n_bytes, lanes.shape[1]), np.uint64)
    for b in range(n_bytes):
        plane = lanes[8 * b].copy()
        for r in range(8 * b + 1, min(raters, 8 * b + 8)):
            plane |= lanes[r] << np.uint64(r - 8 * b)
        byte_planes[b] = plane
    per_pixel = byte_planes.view(np.uint8)[:, :pixels]
    n_words = -(-raters // _BITS_PER_WORD)
    words = np.zeros((n_words, pixels), np.uint64)
    for b in range(n_bytes):
        words[b // 8] |= per_pixel[b].astype(np.uint64) << np.uint64(8 * (b % 8))
    return words


def _unpack_votes(words: NDArray[np.uint64], raters: int) -> NDArray[np.float64]:
    """Inverse of `_pack_votes` for a few rows: (rows, words) -> (rows, raters) of 0.0/1.0."""
    rater = np.arange(raters)
    bits = (words[:, rater // _BITS_PER_WORD] >> (rater % _BITS_PER_WORD).astype(np.uint64)) & np.uint64(1)
    return bits.astype(np.float64)


def _full_word(raters: int, word: int) -> np.uint64:
    bits = min(_BITS_PER_WORD, raters - word * _BITS_PER_WORD)
    return np.uint64((1 << bits) - 1)


def decision_patterns(masks: NDArray[np.bool_]) -> DecisionPatterns:
    """Group pixels of a (raters, ...) bool stack by their rater-decision pattern.

    Row 0 is the all-background pattern and row 1 the all-foreground one (possibly with
    count 0); the rest are the distinct mixed patterns.
    """
    raters = masks.shape[0]
    words = _pack_votes(masks.reshape(raters, -1))
    pixels = words.shape[1]
    all_bg = ~np.any(words, axis=0) if words.shape[0] > 1 else words[0] == 0
    all_fg = np.ones(pixels, np.bool_)
    for w in range(words.shape[0]):
        all_fg &= words[w] == _full_word(raters, w)
    mixed = np.flatnonzero(~(all_bg | all_fg))

    mixed_words = words[:, mixed]
    if mixed_words.shape[0] == 1:
        unique, inverse, mixed_counts = np.unique(mixed_words[0], return_inverse=True, return_counts=True)
        unique_rows = unique[:, None]
    else:
        unique_rows, inverse, mixed_counts = np.unique(
            mixed_words.T, axis=0, return_inverse=True, return_counts=True
        )
    full = np.array([[_full_word(raters, w) for w in range(words.shape[0])]], np.uint64)
    rows = np.concatenate([np.zeros_like(full), full, unique_rows.astype(np.uint64)])

    pixel_pattern = np.where(all_fg, 1, 0).astype(np.intp)
    pixel_pattern[mixed] = inverse.reshape(-1) + 2
    n_fg = int(np.count_nonzero(all_fg))
    counts = np.concatenate([[pixels - n_fg - mixed.size, n_fg], mixed_counts]).astype(np.float64)
    return DecisionPatterns(_unpack_votes(rows, raters), counts, pixel_pattern)
