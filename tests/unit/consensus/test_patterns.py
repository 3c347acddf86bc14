"""Decision patterns: every grouping path (counting, sorting, multi-word) agrees with np.unique
and with the previous algorithm, bit for bit."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from crowdseg.consensus._patterns import count_keys, decision_patterns, group_keys
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("raters", [1, 3, 8, 9, 16, 21, 32, 33, 64, 65, 70])
@pytest.mark.parametrize("shape", [(13, 17), (48, 48), (3, 5, 7)])
def test_patterns_match_a_naive_grouping(raters: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(raters)
    base = rng.random(shape) < 0.3
    masks = np.stack([base ^ (rng.random(shape) < 0.04 * (r % 4)) for r in range(raters)])
    patterns = decision_patterns(masks)
    columns = masks.reshape(raters, -1).T
    rows, inverse = np.unique(columns, axis=0, return_inverse=True)
    assert patterns.counts.sum() == columns.shape[0]
    present = patterns.counts > 0
    assert sorted(map(tuple, patterns.decisions[present].astype(bool))) == sorted(map(tuple, rows))
    pattern_of_pixel = patterns.expand(np.arange(len(patterns.counts)))
    np.testing.assert_array_equal(patterns.decisions[pattern_of_pixel].astype(bool), columns)
    np.testing.assert_array_equal(np.bincount(pattern_of_pixel, minlength=len(patterns.counts)), patterns.counts)
    assert len(np.unique(inverse)) == int(present.sum())


def test_counting_and_sorting_give_the_same_groups() -> None:
    keys = np.random.default_rng(0).integers(0, 1 << 10, 5000).astype(np.uint32)
    counted_keys, counted, group = count_keys(keys, 10)
    sorted_keys, sorted_counts, order, sorted_group = group_keys(keys, 10)
    np.testing.assert_array_equal(counted_keys, sorted_keys)
    np.testing.assert_array_equal(counted, sorted_counts)
    np.testing.assert_array_equal(group[order], sorted_group)


# The rewrite that brought the patterns closer to the memory floor (issue 11) must give
# bit-identical results: the previous algorithm is kept verbatim as bench/staple/reference.py.
_REFERENCE = Path(__file__).resolve().parents[3] / "bench" / "staple" / "reference.py"
_spec = importlib.util.spec_from_file_location("staple_patterns_reference", _REFERENCE)
assert _spec is not None and _spec.loader is not None
previous = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = previous  # dataclasses look their module up there
_spec.loader.exec_module(previous)

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True)  # the same examples on every run
crowd_shapes = st.one_of(
    st.tuples(st.integers(1, 9), st.integers(1, 24), st.integers(1, 24)),
    st.tuples(st.integers(60, 70), st.integers(1, 6), st.integers(1, 6)),
    st.tuples(st.integers(1, 12), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
)


@st.composite
def crowds(draw: st.DrawFn) -> np.ndarray:
    """A crowd around one random mask: each rater flips a share of it (0: unanimous, 1: contested)."""
    shape = draw(crowd_shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = rng.random(shape[1:]) < draw(st.sampled_from([0.0, 0.3, 1.0]))
    flips = rng.random(shape) < draw(st.sampled_from([0.0, 0.05, 0.5]))
    return np.asarray(base ^ flips)


def packed_order(votes: tuple[bool, ...]) -> tuple[int, ...]:
    """The order of patterns: rater r is bit r % 64 of word r // 64, words compared in turn."""
    return tuple(
        sum(1 << (r - start) for r in range(start, min(start + 64, len(votes))) if votes[r])
        for start in range(0, len(votes), 64)
    )


def assert_matches_straightforward_grouping(masks: np.ndarray) -> None:
    patterns = decision_patterns(masks)
    columns = masks.reshape(len(masks), -1).T
    unanimous = columns.all(axis=1) | ~columns.any(axis=1)
    expected_rows = sorted({tuple(map(bool, c)) for c in columns[~unanimous]}, key=packed_order)
    assert not patterns.decisions[0].any() and patterns.decisions[1].all()
    assert [tuple(map(bool, row)) for row in patterns.decisions[2:]] == expected_rows
    pattern_of_pixel = patterns.expand(np.arange(len(patterns.counts)))
    np.testing.assert_array_equal(patterns.decisions[pattern_of_pixel].astype(bool), columns)
    np.testing.assert_array_equal(np.bincount(pattern_of_pixel, minlength=len(patterns.counts)), patterns.counts)
    np.testing.assert_array_equal(patterns.all_foreground, columns.all(axis=1))
    np.testing.assert_array_equal(np.sort(patterns.positions), np.flatnonzero(~unanimous))


def assert_identical_to_previous(masks: np.ndarray) -> None:
    new, old = decision_patterns(masks), previous.decision_patterns(masks)
    for field in dataclasses.fields(new):
        mine, theirs = getattr(new, field.name), getattr(old, field.name)
        assert mine.dtype == theirs.dtype, field.name
        np.testing.assert_array_equal(mine, theirs, err_msg=field.name)


@PROPERTY
@given(crowds())
def test_patterns_match_a_straightforward_grouping(masks: np.ndarray) -> None:
    assert_matches_straightforward_grouping(masks)


@PROPERTY
@given(crowds())
def test_patterns_are_bit_identical_to_the_previous_algorithm(masks: np.ndarray) -> None:
    assert_identical_to_previous(masks)


def _edge_crowds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    checker = np.indices((9, 11)).sum(axis=0) % 2 == 0
    return {
        "one rater": rng.random((1, 20, 30)) < 0.5,
        "all unanimous": np.repeat(rng.random((1, 20, 30)) < 0.5, 7, axis=0),
        "all background": np.zeros((5, 8, 8), bool),
        "all foreground": np.ones((70, 8, 8), bool),
        "all contested": np.stack([checker, ~checker, checker]),
        "64 raters": rng.random((64, 16, 16)) < 0.5,
        "65 raters, two words": rng.random((65, 16, 16)) < 0.5,
        "130 raters, three words": rng.random((130, 9, 9)) < 0.5,
        "3-D": rng.random((6, 5, 12, 13)) < 0.5,
        # rater count plus index bits over 64: the previous np.unique path
        "60 raters, many mixed": rng.random((60, 200, 200)) < 0.5,
        # counting path (few raters, many contested pixels) across the chunk boundaries
        "10 raters, dense, 1.2 Mpx": rng.random((10, 1100, 1100)) < 0.5,
        "30 raters, sparse, 1.2 Mpx": np.repeat(rng.random((1, 1100, 1100)) < 0.5, 30, axis=0)
        ^ (rng.random((30, 1100, 1100)) < 0.01),
    }


@pytest.mark.parametrize("name", list(_edge_crowds()))
def test_edge_crowds_match_the_straightforward_grouping_and_the_previous_algorithm(name: str) -> None:
    masks = _edge_crowds()[name]
    assert_identical_to_previous(masks)
    if masks[0].size <= 100_000:  # the straightforward grouping is a Python loop over pixels
        assert_matches_straightforward_grouping(masks)
