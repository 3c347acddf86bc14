"""Accuracy on synthetic crowds with a known truth, against Crowd-Kit's SegmentationEM and majority vote."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import SegmentationEM
from crowdseg.consensus import dice, majority_vote, staple

from tests.unit.consensus.crowds import bad_rater, blob_truth, boundary_crowd, flip_crowd, good_rater, signed_distance

pytestmark = pytest.mark.unit

GOOD_FLIPS = [0.05, 0.08, 0.1, 0.12, 0.15, 0.18, 0.2]
BAD_FLIPS = [0.35, 0.4, 0.45]


def segmentation_em(masks: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame({"task": "t", "worker": [f"w{r}" for r in range(len(masks))], "segmentation": list(masks)})
    return np.asarray(SegmentationEM().fit_predict(frame).loc["t"])


def boundary_and_bad_crowd(truth: np.ndarray, rng: np.random.Generator, good: int, modes: list[int]) -> np.ndarray:
    distance = signed_distance(truth)
    goods = [good_rater(truth, distance, rng, 2.0) for _ in range(good)]
    return np.stack(goods + [bad_rater(truth, rng, mode, 2.0) for mode in modes])


def test_dice_at_least_crowdkit_and_majority_vote_with_a_third_bad_raters() -> None:
    """Raters of unequal skill (three of ten bad) with independent pixel noise, the model STAPLE assumes:
    over six crowds its consensus is on average at least as close to the truth as Crowd-Kit's and the
    majority's, and on each crowd no worse than by one pixel (which of two near-equal estimates gets a
    coin-flip pixel right is chance); the bad raters rank last by sensitivity."""
    ours, kit, vote = [], [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        truth = blob_truth((96, 96), rng)
        masks = flip_crowd(truth, GOOD_FLIPS + BAD_FLIPS, rng)
        result = staple(masks)
        ours.append(dice(result.consensus(), truth))
        kit.append(dice(segmentation_em(masks), truth))
        vote.append(dice(majority_vote(masks) > 0.5, truth))
        one_pixel = 2.0 / (2 * truth.sum())
        assert ours[-1] >= max(kit[-1], vote[-1]) - one_pixel
        worst = set(np.argsort(result.sensitivity)[: len(BAD_FLIPS)].tolist())
        assert worst == set(range(len(GOOD_FLIPS), len(GOOD_FLIPS) + len(BAD_FLIPS)))
    assert np.mean(ours) >= np.mean(kit)
    assert np.mean(ours) >= np.mean(vote)


@pytest.mark.parametrize("seed", range(3))
def test_bad_raters_who_miss_rank_last_by_sensitivity_on_boundary_crowds(seed: int) -> None:
    """Boundary noise (each good rater with a habit and a wobbly hand), plus raters who draw well inside
    the object or offset, sloppy and with a spurious region: those rank last by sensitivity."""
    rng = np.random.default_rng(seed)
    truth = blob_truth((128, 128), rng)
    masks = boundary_and_bad_crowd(truth, rng, good=7, modes=[1, 2, 1])
    for region in ("image", "union"):
        result = staple(masks, region=region)  # type: ignore[arg-type]
        assert set(np.argsort(result.sensitivity)[:3].tolist()) == {7, 8, 9}
        assert dice(result.consensus(), truth) > 0.95


@pytest.mark.parametrize("seed", range(3))
def test_bad_raters_who_overdraw_rank_last_by_specificity(seed: int) -> None:
    """A rater drawing far outside the object misses nothing (sensitivity ~1): specificity finds them."""
    rng = np.random.default_rng(seed)
    truth = blob_truth((128, 128), rng)
    masks = boundary_and_bad_crowd(truth, rng, good=7, modes=[0, 0])
    result = staple(masks)
    assert set(np.argsort(result.specificity)[:2].tolist()) == {7, 8}


def boundary_comparison(region: str, seeds: int = 6) -> tuple[list[float], list[float], list[float]]:
    """Dice of STAPLE, Crowd-Kit and the majority on boundary crowds: 10 raters, 3 of them bad."""
    ours, kit, vote = [], [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        truth = blob_truth((128, 128), rng)
        masks, _ = boundary_crowd(truth, 10, rng, bad_share=0.3)
        ours.append(dice(staple(masks, region=region).consensus(), truth))  # type: ignore[arg-type]
        kit.append(dice(segmentation_em(masks), truth))
        vote.append(dice(majority_vote(masks) > 0.5, truth))
    return ours, kit, vote


def test_dice_at_least_crowdkit_and_majority_vote_on_boundary_crowds() -> None:
    """Boundary noise and a share of bad raters, estimated over the union of the raters' foreground:
    on average over six crowds at least as close to the truth as Crowd-Kit and the majority."""
    ours, kit, vote = boundary_comparison("union")
    assert np.mean(ours) >= np.mean(kit)
    assert np.mean(ours) >= np.mean(vote)


def test_whole_image_staple_over_segments_on_boundary_crowds_and_union_does_not() -> None:
    """Spatially correlated boundary errors are a tiny false-positive rate against the whole image's
    background, so foreground votes weigh more than background ones and the consensus grows (3-5 %
    in area on these crowds): whole-image STAPLE (ITK's too) falls below Crowd-Kit there, which is
    why the service does not estimate over the whole image. Stated, not xfailed, so a change shows up."""
    whole_image, kit, _ = boundary_comparison("image")
    union, _, _ = boundary_comparison("union")
    assert np.mean(whole_image) < np.mean(kit) <= np.mean(union)
