"""The certainty rule of adaptive replicates (crowdseg.consensus.certainty), by hand and on crowds."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.consensus import agreement_certainty, retires
from crowdseg.consensus.quality import mask_qualities

from tests.unit.consensus.crowds import bad_grid_rater, blob_truth, signed_distance, sized_rater

pytestmark = pytest.mark.unit


def test_agreement_certainty_is_the_median_of_two_or_more() -> None:
    assert agreement_certainty([0.9, None, 0.2, 0.8]) == pytest.approx(0.8)
    assert agreement_certainty([0.9, None]) is None


def test_retires_needs_both_the_submissions_and_the_certainty() -> None:
    assert retires(0.95, 2, min_replicates=2, confidence=0.9)
    assert not retires(0.95, 1, min_replicates=2, confidence=0.9)
    assert not retires(0.85, 5, min_replicates=2, confidence=0.9)
    assert not retires(None, 5, min_replicates=2, confidence=0.0)


def test_nested_circles_stay_contested() -> None:
    """The case that ruled out STAPLE's posterior as the rule: it was certain at three raters."""
    yy, xx = np.mgrid[:96, :96]
    circles = np.stack([(yy - 48) ** 2 + (xx - 48) ** 2 < r * r for r in (6, 22, 12, 30, 16)])
    for raters in range(2, 6):
        certainty = agreement_certainty(mask_qualities(circles[:raters]))
        assert certainty is not None and certainty < 0.6


def test_careful_raters_are_certain_and_a_spammer_is_outvoted() -> None:
    rng = np.random.default_rng(3)
    truth = blob_truth((96, 96), rng)
    distance = signed_distance(truth)
    careful = np.stack([sized_rater(distance, rng, 0.5, 0.5) for _ in range(3)])
    spammer = bad_grid_rater("spammer", truth, distance, rng)[None]

    def certainty(masks: np.ndarray) -> float:
        found = agreement_certainty(mask_qualities(masks))
        assert found is not None
        return found

    assert certainty(careful[:2]) > 0.9
    assert certainty(np.concatenate([careful[:1], spammer])) < 0.5
    assert certainty(np.concatenate([careful, spammer])) > 0.9  # three careful raters outvote it
