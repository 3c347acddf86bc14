"""The certainty rule of adaptive replicates (crowdseg.consensus.certainty), by hand and on crowds."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.consensus import agreement_certainty, mask_certainty, retires, staple

from tests.unit.consensus.crowds import bad_grid_rater, blob_truth, signed_distance, sized_rater

pytestmark = pytest.mark.unit


def test_mask_certainty_by_hand() -> None:
    # foreground {0.95, 0.6}, contested {0.6, 0.3}: 2 contested of 3 considered
    assert mask_certainty(np.array([0.95, 0.6, 0.3, 0.05, 0.0])) == pytest.approx(1 - 2 / 3)
    assert mask_certainty(np.zeros((4, 4))) == 1.0  # nobody marked anything
    assert mask_certainty(np.array([0.1, 0.9])) == pytest.approx(0.0 + 1.0)  # the bounds are not contested


def test_agreement_certainty_is_the_median_of_two_or_more() -> None:
    assert agreement_certainty([0.9, None, 0.2, 0.8]) == pytest.approx(0.8)
    assert agreement_certainty([0.9, None]) is None


def test_retires_needs_both_the_submissions_and_the_certainty() -> None:
    assert retires(0.95, 2, min_replicates=2, confidence=0.9)
    assert not retires(0.95, 1, min_replicates=2, confidence=0.9)
    assert not retires(0.85, 5, min_replicates=2, confidence=0.9)
    assert not retires(None, 5, min_replicates=2, confidence=0.0)


def test_agreeing_raters_are_more_certain_than_a_rater_and_a_spammer() -> None:
    rng = np.random.default_rng(3)
    truth = blob_truth((96, 96), rng)
    distance = signed_distance(truth)
    careful = np.stack([sized_rater(distance, rng, 0.5, 0.5) for _ in range(2)])
    spammed = np.stack([careful[0], bad_grid_rater("spammer", truth, distance, rng)])
    agreeing = mask_certainty(staple(careful, region="band").probability)
    contested = mask_certainty(staple(spammed, region="band").probability)
    assert agreeing > 0.8 > contested
    # a third careful rater outvotes the spammer: the consensus is certain again
    three = np.concatenate([spammed, careful[1:]])
    assert mask_certainty(staple(three, region="band").probability) > contested
