"""Distinct rater-decision patterns of a stack of binary masks.

Pixels where the raters made the same decisions share every quantity STAPLE estimates, so
expectation-maximisation can run over distinct patterns weighted by their pixel counts (see
DESIGN.md, "Consensus"). Each pixel's votes are packed into the bits of one integer; the
unanimous pixels (most of an image) are found with two comparisons, and only the remaining
pixels are sorted to find their distinct patterns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

_WORD_BITS = 64
_SCATTER_CHUNK = 1 << 16  # indices per chunk of the steps that widen int32 indices to intp
_FLAG_CHUNK = 1 << 18  # pixels per chunk when listing the mixed ones


@dataclass(frozen=True)
class DecisionPatterns:
    """Distinct decision rows and their pixel counts, with the map back to pixels.

    Row 0 is the all-background pattern and row 1 the all-foreground one (either may have
    count 0); the other rows are the distinct mixed patterns. ``positions`` lists the flat
    indices of the mixed pixels and ``position_pattern`` their rows.
    """

    decisions: NDArray[np.float64]  # (patterns, raters), 1.0 = foreground vote
    counts: NDArray[np.float64]  # (patterns,)
    all_foreground: NDArray[np.bool_]  # (pixels,)
    positions: NDArray[np.signedinteger[Any]]  # (mixed pixels,)
    position_pattern: NDArray[np.signedinteger[Any]]  # (mixed pixels,)

    def expand(self, per_pattern: NDArray[Any]) -> NDArray[Any]:
        """Scatter one value per pattern back onto the (flat) pixels."""
        values = np.asarray(per_pattern)
        pixels = np.where(self.all_foreground, values[1], values[0])
        # In chunks, so that the int32 indices are widened to intp in cache, not in memory.
        for start in range(0, len(self.positions), _SCATTER_CHUNK):
            chunk = slice(start, start + _SCATTER_CHUNK)
            np.put(pixels, self.positions[chunk], np.take(values, self.position_pattern[chunk]))
        return pixels


def as_binary_stack(masks: NDArray[Any]) -> NDArray[np.bool_]:
    """Validate a (raters, ...) stack of binary masks and return it as bool (no copy if bool)."""
    try:
        stack = np.asarray(masks)
    except ValueError as error:  # numpy refuses ragged nested sequences
        raise ValueError(f"masks must be a regular (raters, ...) array: {error}") from error
    if stack.dtype == object:
        raise ValueError("masks must be a regular (raters, ...) array, not ragged")
    if stack.ndim < 2 or stack.shape[0] == 0 or stack[0].size == 0:
        raise ValueError(f"expected a non-empty (raters, H, W[, D]) stack, got shape {stack.shape}")
    if stack.dtype == np.bool_:
        return stack
    if stack.min() < 0 or stack.max() > 1:
        raise ValueError("masks must be boolean or 0/1")
    return stack != 0


_COUNTING_RATERS = 20  # up to 2**20 bins: patterns are counted, not sorted
_COUNTING_BINS_PER_KEY = 4  # ... and only when the bins are not many more than the keys
_CHUNK_LANES = 1 << 17  # 1 MiB of uint64 per rater row: few calls, and the plane stays in cache


def _lanes(flat: NDArray[np.bool_]) -> NDArray[np.uint64]:
    """The (raters, pixels) bool stack as (raters, ceil(pixels / 8)) uint64, 8 pixels per word."""
    padding = -flat.shape[1] % 8
    votes = np.pad(flat, ((0, 0), (0, padding))) if padding else np.ascontiguousarray(flat)
    return votes.view(np.uint8).view(np.uint64)


def _fill_planes(lanes: NDArray[np.uint64], planes: NDArray[np.uint64]) -> None:
    """Bit r % 8 of each pixel's byte in plane r // 8 := rater r's vote, for one chunk of words.

    Horner's scheme (shift the plane, OR the next lower rater in) works in place: no scratch
    row, so the plane and one rater row are all the cache holds.
    """
    raters = lanes.shape[0]
    for b, plane in enumerate(planes):
        top = min(raters, 8 * b + 8) - 1
        plane[:] = lanes[top]
        for r in range(top - 1, 8 * b - 1, -1):
            plane <<= np.uint64(1)
            plane |= lanes[r]


def _byte_planes(flat: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """(ceil(R / 8), pixels) bytes; bit r % 8 of byte plane r // 8 is rater r's vote.

    The bool bytes of 8 neighbouring pixels are shifted and OR-ed as one uint64, so each rater
    costs one vector operation over pixels / 8 words; votes are 0/1, so bits never spill
    into the neighbouring pixel's byte. Words are processed in cache-sized chunks, so the input
    is read from memory once and nothing else leaves the cache.
    """
    raters, pixels = flat.shape
    lanes = _lanes(flat)
    planes = np.empty((-(-raters // 8), lanes.shape[1]), np.uint64)
    for start in range(0, lanes.shape[1], _CHUNK_LANES):
        chunk = slice(start, start + _CHUNK_LANES)
        _fill_planes(lanes[:, chunk], planes[:, chunk])
    return planes.view(np.uint8)[:, :pixels]


def _full_bytes(raters: int) -> list[int]:
    """The byte value of each plane when every rater in it votes foreground."""
    return [(1 << min(8, raters - 8 * b)) - 1 for b in range(-(-raters // 8))]


def _unanimous(planes: NDArray[np.uint8], raters: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(all background, all foreground) per pixel, from the byte planes, 8 pixels per operation."""
    pixels = planes.shape[1]
    padded = np.pad(planes, ((0, 0), (0, -pixels % 8))) if pixels % 8 else planes
    words = np.ascontiguousarray(padded).view(np.uint64)
    any_vote = words[0].copy()
    missing = words[0] ^ np.uint64(int.from_bytes(bytes([_full_bytes(raters)[0]] * 8), "little"))
    for b, full in enumerate(_full_bytes(raters)[1:], start=1):
        any_vote |= words[b]
        missing |= words[b] ^ np.uint64(int.from_bytes(bytes([full] * 8), "little"))
    return any_vote.view(np.uint8)[:pixels] == 0, missing.view(np.uint8)[:pixels] == 0


def pack_votes(flat: NDArray[np.bool_]) -> NDArray[np.unsignedinteger[Any]]:
    """(words, pixels): rater r's vote at bit r % 64 of word r // 64 (uint32 words if R <= 32)."""
    return _words(_byte_planes(flat), flat.shape[0])


def _words(planes: NDArray[np.uint8], raters: int) -> NDArray[np.unsignedinteger[Any]]:
    """Byte planes (of a few pixels) combined into words of 64 (or, for R <= 32, 32) raters."""
    dtype = np.uint32 if raters <= 32 else np.uint64
    words = np.zeros((-(-raters // _WORD_BITS), planes.shape[1]), dtype)
    for b in range(planes.shape[0]):
        words[b // 8] |= planes[b].astype(dtype) << dtype(8 * (b % 8))
    return words


def unpack_votes(rows: NDArray[np.uint64], raters: int) -> NDArray[np.float64]:
    """Inverse of `pack_votes` for a few rows: (rows, words) -> (rows, raters) of 0.0/1.0."""
    rater = np.arange(raters)
    shift = (rater % _WORD_BITS).astype(np.uint64)
    bits = (rows[:, rater // _WORD_BITS] >> shift) & np.uint64(1)
    return bits.astype(np.float64)


def _mixed_words(
    planes: NDArray[np.uint8], mixed: NDArray[np.signedinteger[Any]], raters: int
) -> NDArray[np.unsignedinteger[Any]]:
    """`_words` of the mixed pixels only; np.take per plane is much faster than planes[:, mixed]."""
    dtype = np.uint32 if raters <= 32 else np.uint64
    words = np.zeros((-(-raters // _WORD_BITS), len(mixed)), dtype)
    for b, plane in enumerate(planes):
        byte: NDArray[np.unsignedinteger[Any]] = np.take(plane, mixed).astype(dtype)
        byte <<= dtype(8 * (b % 8))
        words[b // 8] |= byte
    return words


def _full_words(raters: int) -> NDArray[np.uint64]:
    bits = [min(_WORD_BITS, raters - w) for w in range(0, raters, _WORD_BITS)]
    return np.array([(1 << b) - 1 for b in bits], np.uint64)


def index_dtype(length: int) -> type[np.signedinteger[Any]]:
    """int32 indices while they fit (half the memory of intp on the mixed pixels), else intp."""
    return np.int32 if length < 2**31 else np.intp


def group_keys(
    keys: NDArray[np.unsignedinteger[Any]], key_bits: int
) -> tuple[NDArray[np.uint64], NDArray[np.intp], NDArray[np.signedinteger[Any]], NDArray[np.signedinteger[Any]]]:
    """Distinct keys, counts, and an (order, group id) pairing without an argsort.

    Each key carries its own position in its low bits, so a plain value sort (much faster than
    argsort) yields the order too; when key and position do not fit into 64 bits, np.unique.
    Works in place on one uint64 copy of the keys. Returns (distinct keys, their counts, order,
    group of each ordered key).
    """
    index_bits = max(1, (len(keys) - 1).bit_length())
    if key_bits + index_bits > _WORD_BITS:
        unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        return unique.astype(np.uint64), counts, np.arange(len(keys), dtype=np.intp), inverse.reshape(-1)
    index = index_dtype(len(keys))
    tagged = keys.astype(np.uint64)
    tagged <<= np.uint64(index_bits)
    tagged |= np.arange(len(keys), dtype=np.uint64)
    tagged.sort()
    order = (tagged & np.uint64((1 << index_bits) - 1)).astype(index)
    tagged >>= np.uint64(index_bits)
    starts = np.empty(len(keys), np.bool_)
    starts[:1] = True
    np.not_equal(tagged[1:], tagged[:-1], out=starts[1:])
    group = np.cumsum(starts, dtype=index)
    group -= 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.append(first, len(keys)))
    return tagged[first], counts, order, group


def _group_by_value_sort(
    keys: NDArray[np.unsignedinteger[Any]], positions: NDArray[np.signedinteger[Any]]
) -> tuple[NDArray[np.uint64], NDArray[np.intp], NDArray[np.signedinteger[Any]], NDArray[np.signedinteger[Any]]]:
    """What `group_keys` gives (positions reordered by key, stably), with cheaper steps.

    A plain sort of the bare keys (SIMD, no positions carried along) finds the distinct keys,
    a binary search numbers each key, and a stable argsort of those small numbers (a radix
    sort while they fit int16) orders the positions.
    """
    index = index_dtype(len(keys))
    ordered = np.sort(keys)
    starts = np.empty(len(keys), np.bool_)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    first = np.flatnonzero(starts)
    distinct = ordered[first]
    counts = np.diff(np.append(first, len(keys)))
    group_dtype = np.int16 if len(distinct) <= np.iinfo(np.int16).max else index
    group = np.searchsorted(distinct, keys).astype(group_dtype)
    order = np.argsort(group, kind="stable")
    group_of_ordered = np.repeat(np.arange(len(distinct), dtype=index), counts)
    return distinct.astype(np.uint64), counts, positions[order], group_of_ordered


def _group_rows(
    rows: NDArray[np.uint64],
) -> tuple[NDArray[np.uint64], NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """General fallback for any number of words: np.unique over rows."""
    unique, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    return unique, counts, np.arange(len(rows), dtype=np.intp), inverse.reshape(-1)


def _mixed_pixels(planes: NDArray[np.uint8], raters: int) -> tuple[NDArray[np.bool_], NDArray[np.signedinteger[Any]]]:
    """(all-foreground flag per pixel, flat indices of the pixels where the raters disagree)."""
    all_bg, all_fg = _unanimous(planes, raters)
    np.logical_or(all_bg, all_fg, out=all_bg)
    np.logical_not(all_bg, out=all_bg)
    return all_fg, _flat_indices(all_bg)


def _flat_indices(flags: NDArray[np.bool_]) -> NDArray[np.signedinteger[Any]]:
    """np.flatnonzero in the index dtype, chunk by chunk: no intp array of every index."""
    indices = np.empty(np.count_nonzero(flags), index_dtype(len(flags)))
    filled = 0
    for start in range(0, len(flags), _FLAG_CHUNK):
        found = np.flatnonzero(flags[start : start + _FLAG_CHUNK])
        np.add(found, start, out=indices[filled : filled + len(found)], casting="unsafe")
        filled += len(found)
    return indices


def count_keys(
    keys: NDArray[np.unsignedinteger[Any]], key_bits: int
) -> tuple[NDArray[np.uint64], NDArray[np.intp], NDArray[np.signedinteger[Any]]]:
    """Distinct keys, their counts and each key's group, by counting into 2**key_bits bins.

    Linear in the number of keys, no sort: for few raters (small ``key_bits``) and many
    disagreeing pixels, as in volumes. Groups are numbered in ascending key order.
    """
    bins = np.zeros(1 << key_bits, np.intp)
    for start in range(0, len(keys), _SCATTER_CHUNK):  # bincount widens its input to intp
        bins += np.bincount(keys[start : start + _SCATTER_CHUNK], minlength=1 << key_bits)
    present = np.flatnonzero(bins)
    lookup = np.zeros(1 << key_bits, index_dtype(len(keys)))
    lookup[present] = np.arange(len(present))
    return present.astype(np.uint64), bins[present], np.take(lookup, keys)


def _group_mixed(
    words: NDArray[np.unsignedinteger[Any]], mixed: NDArray[np.signedinteger[Any]], raters: int
) -> tuple[NDArray[np.uint64], NDArray[np.intp], NDArray[np.signedinteger[Any]], NDArray[np.signedinteger[Any]]]:
    """(distinct rows, counts, positions, group per position) of the mixed pixels' packed votes."""
    if raters <= _COUNTING_RATERS and (1 << raters) <= _COUNTING_BINS_PER_KEY * len(mixed):
        unique_keys, counts, group = count_keys(words[0], raters)
        return unique_keys[:, None], counts, mixed, group
    if len(words) == 1 and raters + max(1, (len(mixed) - 1).bit_length()) <= _WORD_BITS:
        unique_keys, counts, positions, group = _group_by_value_sort(words[0], mixed)
        return unique_keys[:, None], counts, positions, group
    if len(words) == 1:
        unique_keys, counts, order, group = group_keys(words[0], raters)
        return unique_keys[:, None], counts, mixed[order], group
    unique_rows, counts, order, group = _group_rows(words.T.astype(np.uint64))
    return unique_rows, counts, mixed[order], group


def decision_patterns(masks: NDArray[np.bool_]) -> DecisionPatterns:
    """Group the pixels of a (raters, ...) bool stack by their rater-decision pattern.

    Memory: the byte planes (R / 8 bytes a pixel) and a few bytes a pixel for the flags, plus
    some 30 bytes per pixel where the raters disagree.
    """
    raters = masks.shape[0]
    planes = _byte_planes(masks.reshape(raters, -1))
    pixels = planes.shape[1]
    all_fg, mixed = _mixed_pixels(planes, raters)
    mixed_words = _mixed_words(planes, mixed, raters)
    del planes
    unique_rows, counts, positions, group = _group_mixed(mixed_words, mixed, raters)
    del mixed_words, mixed
    group += 2
    full = _full_words(raters)
    rows = np.concatenate([np.zeros_like(full)[None], full[None], unique_rows.reshape(-1, len(full))])
    n_fg = int(np.count_nonzero(all_fg))
    all_counts = np.concatenate([[pixels - n_fg - len(positions), n_fg], counts]).astype(np.float64)
    return DecisionPatterns(unpack_votes(rows, raters), all_counts, all_fg, positions, group)
