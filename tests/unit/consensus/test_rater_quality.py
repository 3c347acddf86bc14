"""Rater quality (crowdseg.consensus.quality) on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.consensus.quality import (
    FLAG_MIN_IMAGES,
    FlagRule,
    f1,
    flagged,
    leave_one_out_dices,
    line_qualities,
    majority_of_others,
    mask_qualities,
    match_line_sets,
    match_point_sets,
    point_qualities,
    screened_out,
    soft_dice,
    vote_of_others,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def masks(*rows: str) -> np.ndarray:
    """One 1×n mask per string ("1" foreground)."""
    return np.array([[[c == "1" for c in row]] for row in rows])


def test_soft_dice_and_f1_by_hand() -> None:
    assert soft_dice(np.array([1, 1, 0, 0]), np.array([1, 0.5, 0.5, 0])) == pytest.approx(2 * 1.5 / (2 + 2))
    assert soft_dice(np.zeros(4), np.zeros(4)) == 1.0
    assert f1(3, 1, 2) == pytest.approx(6 / 9)
    assert f1(0, 0, 0) == 1.0


def test_majority_of_others_breaks_ties_by_halves() -> None:
    stack = masks("1100", "1000", "0110")
    assert majority_of_others(stack, 0).tolist() == [[0.5, 0.5, 0.5, 0.0]]  # two others: ties
    assert majority_of_others(stack, 2).tolist() == [[1.0, 0.5, 0.0, 0.0]]


def test_mask_quality_is_dice_against_the_others_weighted_vote() -> None:
    stack = masks("11110000", "11110000", "11100000", "00001111")
    # First pass, Dice against the others' plain majority: raters 0-2 score 6/7, the spammer 0.
    first = [6 / 7, 6 / 7, 6 / 7, 0.0]
    # rater 0: the others weigh 6/7, 6/7, 0; pixel 3 is marked by rater 1 alone, half the weight: a tie
    # -> target 1,1,1,½,0,0,0,0 -> Dice 2·3.5/(4+3.5)
    assert vote_of_others(stack, 0, np.array(first)).tolist() == [[1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0]]
    qualities = mask_qualities(stack)
    assert qualities[0] == pytest.approx(7 / 7.5)
    assert qualities[1] == pytest.approx(7 / 7.5)
    # rater 2: raters 0 and 1 carry the whole weight -> target 1,1,1,1,0,... -> Dice 2·3/(3+4)
    assert qualities[2] == pytest.approx(6 / 7)
    # the spammer: the others agree on 1,1,1,1 (and ½ nowhere it drew) -> no overlap
    assert qualities[3] == 0.0
    assert mask_qualities(masks("1100")) == [None]  # a lone rater: no one to agree with


def test_a_spammer_among_the_others_no_longer_drags_a_careful_rater_down() -> None:
    """Regression (bench/quality, issue 10): quality against the others' plain majority let a spammer
    among three others halve the evidence on a careful rater's pixels, and the ranking of quality against
    the raters' true Dice fell below 0.9 with 5 raters an image. The others' vote is weighted now."""
    stack = masks("11110000", "11110000", "00001111")
    # plain majority of rater 0's others (rater 1 and the spammer): a tie everywhere either drew
    assert majority_of_others(stack, 0).tolist() == [[0.5] * 8]
    assert mask_qualities(stack)[0] == 1.0  # the spammer's first-pass score is 0: rater 1 decides


def test_others_who_weigh_nothing_fall_back_to_the_plain_majority() -> None:
    stack = masks("1100", "0011", "0011")
    assert vote_of_others(stack, 0, np.zeros(3)).tolist() == majority_of_others(stack, 0).tolist()


def test_mask_quality_against_a_reference() -> None:
    stack = masks("1100", "0011")
    assert mask_qualities(stack, reference=np.array([[1, 1, 1, 0]])) == [pytest.approx(0.8), pytest.approx(0.4)]


def test_point_matching_and_quality_within_the_radius() -> None:
    matching = match_point_sets(np.array([[0, 0], [10, 0], [50, 50]]), np.array([[1, 0], [10, 2], [30, 30]]), 3.0)
    assert (matching.tp, matching.fp, matching.fn) == (2, 1, 1)
    assert np.sqrt(np.mean(matching.distances**2)) == pytest.approx(np.sqrt((1 + 4) / 2))
    assert (matching.precision, matching.recall, matching.f1) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 2 / 3)
    good = np.array([[10.0, 10], [40, 40], [70, 10]])
    crowd = [good, good + 1, good - 1, np.array([[90.0, 90], [5, 60]])]
    qualities = point_qualities(crowd, radius=4.0)
    assert qualities[:3] == [1.0, 1.0, 1.0]
    assert qualities[3] == 0.0  # 0 of 2 clicks match the 3 points of the others: F1 0
    assert point_qualities(crowd, radius=4.0, reference=good[:2]) == [pytest.approx(0.8)] * 3 + [0.0]


def test_line_matching_and_quality() -> None:
    horizontal = np.array([[0.0, 10], [100, 10]])
    vertical = np.array([[50.0, 0], [50, 100]])
    drawn, truth = [horizontal + np.array([0, 2]), vertical[::-1]], [horizontal, vertical + np.array([30, 0])]
    matching = match_line_sets(drawn, truth, radius=5)
    assert (matching.tp, matching.fp, matching.fn) == (1, 1, 1)
    assert matching.distances.tolist() == [pytest.approx(2.0)]
    crowd = [[horizontal], [horizontal + np.array([0, 1])], [horizontal - np.array([0, 1])], [vertical]]
    assert line_qualities(crowd, radius=5) == [1.0, 1.0, 1.0, 0.0]
    assert line_qualities(crowd, radius=5, reference=[horizontal, vertical]) == [pytest.approx(2 / 3)] * 4


def test_flagged_below_median_minus_k_mad_with_enough_images() -> None:
    crowd = {"a": (0.90, 10), "b": (0.88, 10), "c": (0.92, 10), "d": (0.86, 10), "spam": (0.10, 10)}
    rule = FlagRule()
    # median 0.88, MAD 0.02 -> 0.0297 < the 0.05 floor -> threshold 0.88 - 3·0.05
    assert rule.threshold([q for q, _ in crowd.values()]) == pytest.approx(0.73)
    assert flagged(crowd) == {"spam"}
    assert flagged({**crowd, "spam": (0.10, 4)}) == set()  # too little evidence yet
    assert flagged({"a": (0.9, 10), "spam": (0.1, 10)}) == set()  # no crowd to compare with
    assert flagged({**crowd, "new": (None, 0)}) == {"spam"}


def test_screening_leaves_out_only_the_low_raters_with_enough_images() -> None:
    raters = {"good": (0.9, 10), "low": (0.3, 10), "low-but-new": (0.3, FLAG_MIN_IMAGES - 1), "unscored": (None, 0)}
    assert screened_out(raters, 0.5) == {"low"}
    assert screened_out(raters, 0.3) == set()  # below, not at
    assert screened_out(raters, 1.0) == {"good", "low"}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), raters=st.integers(2, 12), density=st.floats(0.0, 1.0))
def test_leave_one_out_dices_equal_the_per_rater_majorities(seed: int, raters: int, density: float) -> None:
    """issue 8: mask_qualities counts votes instead of building each rater's leave-one-out majority;
    the floats are those of soft_dice against majority_of_others, bit for bit."""
    rng = np.random.default_rng(seed)
    stack = rng.random((raters, 9, 11)) < density
    expected = [soft_dice(stack[r], majority_of_others(stack, r)) for r in range(raters)]
    assert leave_one_out_dices(stack) == expected
