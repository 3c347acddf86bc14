"""The STAPLE iteration (issue 8: the consensus worker's hottest loop on small crowds, ~90 µs an
iteration of numpy dispatch over a handful of decision patterns) gives the results it gave before it
was made cheaper, bit for bit: tests/unit/consensus/staple_reference.py keeps the previous code."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from crowdseg.consensus import staple
from crowdseg.consensus._patterns import decision_patterns
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.consensus import staple_reference as reference

pytestmark = pytest.mark.unit
# the module, not the function that crowdseg.consensus exports under its name
staple_module = importlib.import_module("crowdseg.consensus.staple")


def _crowd(seed: int, raters: int, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    decisions = (rng.random((1 << min(raters, 6), raters)) < 0.5).astype(np.float64)
    counts = rng.integers(0, 500, decisions.shape[0]).astype(np.float64)
    if weighted:
        counts = counts * rng.random(decisions.shape[0])
    counts[0] += 1.0
    return decisions, counts


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    raters=st.integers(1, 9),
    band=st.booleans(),
    prior=st.sampled_from([None, 0.5, 0.0, 1.0, 0.2]),
    weighted=st.booleans(),
)
def test_the_iteration_matches_the_previous_code_bit_for_bit(
    seed: int, raters: int, band: bool, prior: float | None, weighted: bool
) -> None:
    decisions, counts = _crowd(seed, raters, weighted)
    now = staple_module.staple_patterns(
        decisions, counts, prior=prior, m_step=staple_module.band_m_step if band else staple_module.staple_m_step
    )
    before = reference.staple_patterns(
        decisions, counts, prior=prior, m_step=reference.band_m_step if band else reference.staple_m_step
    )
    for a, b in zip(now[:3], before[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    assert now[3:] == before[3:]  # prior, iterations, converged, history


@pytest.mark.parametrize("raters", [1, 2, 3, 5])
def test_staple_of_drawn_outlines_matches_the_previous_code(raters: int) -> None:
    """Disjoint random outlines, as bench/load's annotators draw: two raters run to max_iter."""
    rng = np.random.default_rng(raters)
    yy, xx = np.mgrid[:128, :128]
    masks = np.stack(
        [
            (yy - rng.uniform(20, 100)) ** 2 + (xx - rng.uniform(20, 100)) ** 2 < rng.uniform(8, 16) ** 2
            for _ in range(raters)
        ]
    )
    result = staple(masks, region="band")
    patterns = decision_patterns(masks)
    weights = staple_module.region_weights(patterns.counts, "band")
    before = reference.staple_patterns(patterns.decisions, weights, prior=0.5, m_step=reference.band_m_step)
    np.testing.assert_array_equal(result.probability, patterns.expand(before[0]).reshape(masks.shape[1:]))
    assert (result.iterations, result.history) == (before[4], before[6])
