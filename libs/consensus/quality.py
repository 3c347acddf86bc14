"""One quality number per rater, in 0–1, and the rule that flags a low one.

A rater's quality on one image is their agreement with what the others say, the rater left out (so a
rater cannot agree with themselves), or with an expert's reference where the image has one:

* masks: the Dice coefficient of the rater's mask against the leave-one-out vote of the other raters,
  each weighing their own first-pass score (their Dice against the plain majority of the others), or
  against the reference mask. A pixel is foreground when the others marking it carry more than half
  of the others' weight; a tie weighs one half, so Dice is the soft Dice ``2·Σ(m·t) / (Σm + Σt)``.
  Weighting the vote keeps a spammer among the others from dragging a careful rater's score down:
  with 5 raters an image and 20–30 % bad raters the plain majority ranked the raters' true Dice with
  a Spearman correlation of 0.83–0.90, the weighted vote 0.89–0.95 (bench/quality). It is one step
  of the reweighting that STAPLE and Dawid & Skene's EM iterate (Warfield, Zou & Wells, "Simultaneous
  truth and performance level estimation (STAPLE)", IEEE TMI 23(7), 2004; Dawid & Skene, Applied
  Statistics 28(1), 1979); further steps changed nothing measurable there;
* points: the F1 score of the rater's clicks matched one to one within the task's radius against the
  consensus points of the others (``cluster_points`` of the others) or the reference points;
* polylines: the same F1, lines matched one to one when their mean distance is within the radius.

Over a task, a rater's quality is the mean over the images that scored them (the count is reported
next to it). :func:`flagged` marks the raters whose quality is low with enough evidence: quality
below the crowd's median minus ``k`` median absolute deviations (k = 3, the MAD scaled by 1.4826 to
estimate a standard deviation, at least 0.05 so that a unanimous crowd flags no one for a hair's
difference) with at least ``min_images`` images (5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

import numpy as np
from crowdseg.consensus._patterns import as_binary_stack
from crowdseg.consensus.lines import distance_matrix, fuse_polylines, resample_polyline
from crowdseg.consensus.metrics import match_points
from crowdseg.consensus.points import cluster_points
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

SCORING = 2
"""The version of the per-image rater scores (``Consensus.scoring``): raise it when they change
(2: mask quality against the others' quality-weighted vote, not their plain majority)."""
FLAG_K = 3.0
FLAG_MIN_IMAGES = 5
FLAG_MIN_SPREAD = 0.05
MAD_TO_SD = 1.4826


def soft_dice(mask: NDArray[Any], target: NDArray[Any]) -> float:
    """``2·Σ(m·t) / (Σm + Σt)`` of a binary mask against a target in [0, 1]; 1.0 when both are empty."""
    m = np.asarray(mask, np.float64)
    t = np.asarray(target, np.float64)
    total = float(m.sum() + t.sum())
    return 1.0 if total == 0 else 2.0 * float((m * t).sum()) / total


def majority_of_others(stack: NDArray[np.bool_], rater: int) -> NDArray[np.float64]:
    """The others' majority vote: 1 where more than half marked a pixel, 1/2 on a tie, else 0."""
    others = np.delete(stack, rater, axis=0)
    votes = others.sum(axis=0, dtype=np.int64) * 2
    n = others.shape[0]
    return np.where(votes > n, 1.0, np.where(votes == n, 0.5, 0.0))


def vote_of_others(stack: NDArray[np.bool_], rater: int, weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """The others' vote, each weighing ``weights[i]``: 1 where those marking a pixel carry more than half
    of the others' weight, 1/2 on a tie, else 0; the plain majority when the others weigh nothing."""
    others = np.delete(np.arange(stack.shape[0]), rater)
    weight = weights[others]
    total = float(weight.sum())
    if total <= 0:
        return majority_of_others(stack, rater)
    votes = np.tensordot(weight, stack[others], axes=1) * 2
    tie = np.isclose(votes, total, rtol=1e-9, atol=0.0)
    return np.where(tie, 0.5, np.where(votes > total, 1.0, 0.0))


def mask_qualities(masks: NDArray[Any], reference: NDArray[Any] | None = None) -> list[float | None]:
    """Every rater's Dice against the others' quality-weighted vote (None for a lone rater) or the
    reference (the module's docstring says why the vote is weighted)."""
    stack = as_binary_stack(masks)
    raters = stack.shape[0]
    if reference is not None:
        truth = np.asarray(reference) != 0
        return [soft_dice(stack[r], truth) for r in range(raters)]
    if raters < 2:
        return [None] * raters
    first = np.array(leave_one_out_dices(stack))
    return [soft_dice(stack[r], vote_of_others(stack, r, first)) for r in range(raters)]


def leave_one_out_dices(stack: NDArray[np.bool_]) -> list[float]:
    """``soft_dice(stack[r], majority_of_others(stack, r))`` for every rater r, the same floats, from
    histograms of the votes rather than one majority image per rater (issue 8: on a small image the
    consensus worker spent more on this than on STAPLE). A pixel with v votes that r marked has v − 1
    other votes, one that r left has v; the sums are of halves, exact in float64 like the original's."""
    raters = stack.shape[0]
    flat = stack.reshape(raters, -1)
    votes = flat.sum(axis=0, dtype=np.int64)
    everyone = np.bincount(votes, minlength=raters + 1)
    others = raters - 1
    levels = 2 * np.arange(raters + 1)
    doubled = np.where(levels > others, 2, np.where(levels == others, 1, 0))  # twice the tie-halved majority
    dices = []
    for rater in range(raters):
        mine = np.bincount(votes[flat[rater]], minlength=raters + 1)
        inside = int(mine[1:] @ doubled[:-1])  # twice Σ(m·t)
        outside = int((everyone - mine) @ doubled)
        total = float(mine.sum()) + (inside + outside) / 2
        dices.append(1.0 if total == 0 else 2.0 * (inside / 2) / total)
    return dices


def f1(tp: int, fp: int, fn: int) -> float:
    """``2·tp / (2·tp + fp + fn)``; 1.0 when there is nothing on either side."""
    denominator = 2 * tp + fp + fn
    return 1.0 if denominator == 0 else 2.0 * tp / denominator


@dataclass(frozen=True)
class Matching:
    """One-to-one matches of predicted objects against true ones within a radius."""

    tp: int
    fp: int
    fn: int
    distances: NDArray[np.float64]

    @property
    def f1(self) -> float:
        return f1(self.tp, self.fp, self.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def match_point_sets(pred: NDArray[Any], truth: NDArray[Any], radius: float) -> Matching:
    predicted, actual = np.asarray(pred, np.float64).reshape(-1, 2), np.asarray(truth, np.float64).reshape(-1, 2)
    rows, _, distances = match_points(predicted, actual, radius)
    return Matching(len(rows), len(predicted) - len(rows), len(actual) - len(rows), distances)


def match_line_sets(pred: Sequence[NDArray[Any]], truth: Sequence[NDArray[Any]], radius: float) -> Matching:
    """Lines matched one to one minimising the total mean distance (``lines.line_distance``), pairs
    farther apart than ``radius`` left unmatched."""
    predicted = [resample_polyline(line) for line in pred]
    actual = [resample_polyline(line) for line in truth]
    if not predicted or not actual:
        return Matching(0, len(predicted), len(actual), np.empty(0))
    distance = distance_matrix([*predicted, *actual])[: len(predicted), len(predicted) :]
    out_of_range = distance > radius
    cost = np.where(out_of_range, radius * (len(predicted) + len(actual) + 1), distance)
    rows, cols = linear_sum_assignment(cost)
    keep = ~out_of_range[rows, cols]
    matched = int(keep.sum())
    return Matching(matched, len(predicted) - matched, len(actual) - matched, distance[rows[keep], cols[keep]])


def point_qualities(
    points: Sequence[NDArray[Any]], radius: float, reference: NDArray[Any] | None = None
) -> list[float | None]:
    """Every rater's F1 against the others' consensus points (None for a lone rater) or the reference."""
    if reference is not None:
        return [match_point_sets(clicks, reference, radius).f1 for clicks in points]
    if len(points) < 2:
        return [None] * len(points)
    qualities: list[float | None] = []
    for r, clicks in enumerate(points):
        others = cluster_points([p for i, p in enumerate(points) if i != r], radius=radius)
        qualities.append(match_point_sets(clicks, others.centres, radius).f1)
    return qualities


def line_qualities(
    lines: Sequence[Sequence[NDArray[Any]]], radius: float, reference: Sequence[NDArray[Any]] | None = None
) -> list[float | None]:
    """Every rater's F1 against the others' fused lines (None for a lone rater) or the reference."""
    if reference is not None:
        return [match_line_sets(drawn, reference, radius).f1 for drawn in lines]
    if len(lines) < 2:
        return [None] * len(lines)
    qualities: list[float | None] = []
    for r, drawn in enumerate(lines):
        others = fuse_polylines([d for i, d in enumerate(lines) if i != r], radius=radius)
        qualities.append(match_line_sets(drawn, others.lines, radius).f1)
    return qualities


def click_radius(points: list[NDArray[Any]], width: int, height: int) -> float:
    """Half the typical spacing between one rater's clicks (objects do not overlap), within bounds."""
    spacings = []
    for clicks in points:
        if len(clicks) > 1:
            gaps = np.linalg.norm(clicks[:, None, :] - clicks[None, :, :], axis=-1)
            np.fill_diagonal(gaps, np.inf)
            spacings.append(float(np.median(gaps.min(axis=1))))
    ceiling = 0.05 * min(width, height)
    if not spacings:
        return max(3.0, 0.5 * ceiling)
    return float(np.clip(0.5 * np.median(spacings), 3.0, max(3.0, ceiling)))


def line_radius(width: int, height: int) -> float:
    """How far apart (mean distance along the line) two raters' lines of one object may lie."""
    return max(3.0, 0.03 * min(width, height))


@dataclass(frozen=True)
class FlagRule:
    k: float = FLAG_K
    min_images: int = FLAG_MIN_IMAGES
    min_spread: float = FLAG_MIN_SPREAD

    def threshold(self, qualities: Sequence[float]) -> float | None:
        """The quality below which a rater with enough images is flagged (None without a crowd)."""
        if len(qualities) < 3:
            return None
        centre = median(qualities)
        spread = max(MAD_TO_SD * median(abs(q - centre) for q in qualities), self.min_spread)
        return centre - self.k * spread


def flagged(raters: Mapping[str, tuple[float | None, int]], rule: FlagRule = FlagRule()) -> set[str]:
    """Raters (``{id: (quality, images)}``) whose quality is below the crowd's median minus k·MAD,
    with at least ``rule.min_images`` images behind it. The crowd is every rater with a quality."""
    scored = {rater: q for rater, (q, _) in raters.items() if q is not None}
    threshold = rule.threshold(list(scored.values()))
    if threshold is None:
        return set()
    return {rater for rater, q in scored.items() if q < threshold and raters[rater][1] >= rule.min_images}


def screened_out(
    raters: Mapping[str, tuple[float | None, int]], min_quality: float, rule: FlagRule = FlagRule()
) -> set[str]:
    """Raters (``{id: (quality, images)}``) a task's screening leaves out: quality below
    ``min_quality`` with at least ``rule.min_images`` images behind it (as much evidence as a flag)."""
    return {
        rater
        for rater, (q, images) in raters.items()
        if q is not None and q < min_quality and images >= rule.min_images
    }
