"""Property tests of STAPLE (hypothesis): invariances that hold for every crowd."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.consensus import dice, multilabel_staple, staple
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

pytestmark = pytest.mark.unit

shapes = st.tuples(st.integers(2, 7), st.integers(1, 12), st.integers(1, 12))
crowds = shapes.flatmap(lambda shape: arrays(np.bool_, shape))
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)  # the same examples on every run


@PROPERTY
@given(crowds, st.randoms(use_true_random=False))
def test_rater_order_does_not_matter(masks: np.ndarray, random: object) -> None:
    order = np.arange(len(masks))
    random.shuffle(order)  # type: ignore[attr-defined]
    before, after = staple(masks), staple(masks[order])
    np.testing.assert_allclose(after.probability, before.probability, atol=1e-9)
    np.testing.assert_allclose(after.sensitivity, before.sensitivity[order], atol=1e-9)
    np.testing.assert_allclose(after.specificity, before.specificity[order], atol=1e-9)
    assert after.iterations == before.iterations


@PROPERTY
@given(crowds, st.data())
def test_duplicating_a_perfect_rater_does_not_lower_dice(masks: np.ndarray, data: st.DataObject) -> None:
    perfect = data.draw(st.integers(0, len(masks) - 1))
    truth = masks[perfect]
    before = dice(staple(masks).consensus(), truth)
    after = dice(staple(np.concatenate([masks, truth[None]])).consensus(), truth)
    assert after >= before - 1e-12


@PROPERTY
@given(crowds)
def test_posterior_is_a_probability_and_rates_are_rates(masks: np.ndarray) -> None:
    result = staple(masks)
    assert np.all((result.probability >= 0) & (result.probability <= 1))
    for rates in (result.sensitivity, result.specificity):
        assert np.all((rates >= 0) & (rates <= 1))
    assert len(result.history) == result.iterations


@PROPERTY
@given(crowds, st.randoms(use_true_random=False))
def test_multilabel_rater_order_does_not_matter(masks: np.ndarray, random: object) -> None:
    order = np.arange(len(masks))
    random.shuffle(order)  # type: ignore[attr-defined]
    labels = masks.astype(np.uint8)
    before, after = multilabel_staple(labels), multilabel_staple(labels[order])
    np.testing.assert_array_equal(after.label_map, before.label_map)
    np.testing.assert_allclose(after.confusion, before.confusion[order], atol=1e-9)
