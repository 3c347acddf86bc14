"""Decision patterns: every grouping path (counting, sorting, multi-word) agrees with np.unique."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.consensus._patterns import count_keys, decision_patterns, group_keys

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
