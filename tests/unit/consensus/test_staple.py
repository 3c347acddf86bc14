from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from crowdseg.consensus import StapleResult, majority_vote, staple

from tests.unit.consensus.crowds import blob_truth, boundary_crowd, flip_crowd

pytestmark = pytest.mark.unit


def sitk_staple(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    staple_filter = sitk.STAPLEImageFilter()
    staple_filter.SetForegroundValue(1)
    staple_filter.SetMaximumIterations(1000)
    images = [sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks]
    probability = sitk.GetArrayFromImage(staple_filter.Execute(images))
    return probability, np.array(staple_filter.GetSensitivity()), np.array(staple_filter.GetSpecificity())


@pytest.mark.parametrize("seed", range(4))
def test_matches_simpleitk_on_boundary_crowds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = blob_truth((96, 112), rng)
    masks, _ = boundary_crowd(truth, 7 + seed, rng, bad_share=0.25)
    probability, sensitivity, specificity = sitk_staple(masks)
    result = staple(masks, max_iter=1000)
    agreement = np.mean(result.consensus() == (probability > 0.5))
    assert agreement >= 0.9999
    np.testing.assert_allclose(result.sensitivity, sensitivity, atol=5e-3)
    np.testing.assert_allclose(result.specificity, specificity, atol=5e-3)


@pytest.mark.parametrize("seed", range(3))
def test_matches_simpleitk_on_pixel_noise_crowds(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    truth = blob_truth((80, 80), rng)
    masks = flip_crowd(truth, [0.02, 0.05, 0.1, 0.2, 0.3], rng)
    probability, sensitivity, specificity = sitk_staple(masks)
    result = staple(masks, max_iter=1000)
    assert np.mean(result.consensus() == (probability > 0.5)) >= 0.9999
    np.testing.assert_allclose(result.sensitivity, sensitivity, atol=5e-3)
    np.testing.assert_allclose(result.specificity, specificity, atol=5e-3)


def test_three_dimensional_stack() -> None:
    rng = np.random.default_rng(7)
    truth = blob_truth((12, 40, 40), rng)
    masks = flip_crowd(truth, [0.05, 0.1, 0.15], rng)
    result = staple(masks)
    assert result.probability.shape == truth.shape
    assert np.mean(result.consensus() == truth) > 0.95


def test_unanimous_raters_reproduce_their_mask() -> None:
    mask = np.zeros((6, 6), np.bool_)
    mask[1:4, 2:5] = True
    result = staple(np.stack([mask] * 4))
    np.testing.assert_array_equal(result.consensus(), mask)
    np.testing.assert_allclose(result.sensitivity, 1.0)
    np.testing.assert_allclose(result.specificity, 1.0)
    assert result.prior == pytest.approx(9 / 36)
    assert result.converged


def test_single_rater_is_its_own_consensus() -> None:
    mask = np.eye(5, dtype=np.uint8)
    result = staple(mask[None])
    np.testing.assert_array_equal(result.consensus(), mask.astype(bool))


def test_result_type_and_history() -> None:
    rng = np.random.default_rng(3)
    masks = flip_crowd(blob_truth((40, 40), rng), [0.05, 0.1, 0.2], rng)
    result = staple(masks, max_iter=200)
    assert isinstance(result, StapleResult)
    assert len(result.history) == result.iterations
    assert np.all(np.diff(result.history) >= -1e-6 * abs(result.history[0]))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 4, 4)), np.zeros((3, 0, 4)), np.zeros(4), np.full((2, 3, 3), 2)],
)
def test_rejects_invalid_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        staple(bad)


def test_majority_vote_weights() -> None:
    masks = np.array([[[1, 0]], [[1, 1]], [[0, 0]]], np.uint8)
    np.testing.assert_allclose(majority_vote(masks), [[2 / 3, 1 / 3]])
    np.testing.assert_allclose(majority_vote(masks, np.array([2.0, 1.0, 1.0])), [[0.75, 0.25]])


def test_one_perfect_rater_among_noisy_ones_is_recovered_exactly() -> None:
    """A perfect rater's mask is the consensus, pixel for pixel, and its p and q tend to 1 (EM approaches
    the boundary of the parameter space only in the limit, hence the tolerance)."""
    rng = np.random.default_rng(21)
    truth = blob_truth((48, 48), rng)
    masks = np.concatenate([truth[None], flip_crowd(truth, [0.05, 0.1, 0.15, 0.2], rng)])
    result = staple(masks, max_iter=500)
    np.testing.assert_array_equal(result.consensus(), truth)
    assert result.sensitivity[0] == pytest.approx(1.0, abs=1e-6)
    assert result.specificity[0] == pytest.approx(1.0, abs=1e-6)
    assert np.all(result.sensitivity[1:] < result.sensitivity[0])


def test_inverted_rater_gets_zero_sensitivity_and_specificity() -> None:
    mask = np.zeros((8, 8), np.bool_)
    mask[2:6, 1:5] = True
    result = staple(np.stack([mask, mask, mask, ~mask]))
    np.testing.assert_array_equal(result.consensus(), mask)
    np.testing.assert_allclose(result.sensitivity, [1.0, 1.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(result.specificity, [1.0, 1.0, 1.0, 0.0], atol=1e-12)
    assert result.converged


def test_hand_computed_posterior_of_a_split_pixel() -> None:
    """Two raters agree everywhere except one pixel: the posterior there follows eq. 14 by hand."""
    a = np.zeros((4, 4), np.bool_)
    a[:2] = True
    b = a.copy()
    b[2, 0] = True
    result = staple(np.stack([a, b]), max_iter=1)
    # Iteration 1: W0 = vote fraction; p, q from W0; posterior from p, q and the fixed prior.
    w0 = (a.astype(float) + b) / 2
    g = w0.mean()
    p = [(w0 * m).sum() / w0.sum() for m in (a, b)]
    q = [((1 - w0) * ~m).sum() / (1 - w0).sum() for m in (a, b)]
    fg = g * p[1] * (1 - p[0])
    bg = (1 - g) * (1 - q[1]) * q[0]
    assert result.probability[2, 0] == pytest.approx(fg / (fg + bg), rel=1e-12)
    assert result.probability[0, 0] == pytest.approx(1.0, abs=1e-9)
    assert result.probability[3, 3] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("raters", "shape"), [(40, (64, 72)), (70, (40, 48)), (6, (10, 40, 44))])
def test_matches_simpleitk_with_many_raters_and_in_3d(raters: int, shape: tuple[int, ...]) -> None:
    """Every packing path: one 64-bit word (33-64 raters), several words (> 64), and volumes."""
    rng = np.random.default_rng(raters)
    truth = blob_truth(shape, rng)
    masks = flip_crowd(truth, list(rng.uniform(0.01, 0.3, raters)), rng)
    probability, sensitivity, specificity = sitk_staple(masks)
    result = staple(masks, max_iter=1000)
    assert np.mean(result.consensus() == (probability > 0.5)) >= 0.9999
    np.testing.assert_allclose(result.sensitivity, sensitivity, atol=5e-3)
    np.testing.assert_allclose(result.specificity, specificity, atol=5e-3)
