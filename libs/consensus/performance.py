"""Running per-rater performance across the images of a task.

One image gives a rater only a little evidence (a STAPLE sensitivity from a few hundred
foreground pixels, a point recall from a handful of objects), so the performance of record
pools the evidence of every image the rater annotated rather than starting over on each: the
(expected) confusion counts are summed, and rates are taken from the sums. An image with a
large object then weighs more than one with a speck, as in the pooled estimate of a single
STAPLE run over all images (Warfield, Zou & Wells 2004, eqs. 18-19, summed over images).

Masks: from a STAPLE result with posterior W, rater j's expected counts are
tp = p_j·ΣW, fn = (1 − p_j)·ΣW, tn = q_j·Σ(1 − W), fp = (1 − q_j)·Σ(1 − W), summed over the
region STAPLE estimated over (the image, or the union of the raters' foreground).
Objects (points, lines, polygons): the counts of matches against the crowd's consensus.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from crowdseg.consensus.points import RaterPointScore, crowd_quality
from crowdseg.consensus.staple import StapleResult


@dataclass(frozen=True)
class Counts:
    """Confusion counts of one rater (expected counts for masks, so possibly fractional)."""

    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tn: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


def staple_counts(result: StapleResult) -> list[Counts]:
    """Every rater's expected confusion counts on one image, from its STAPLE result."""
    foreground = float(result.probability.sum())  # pixels outside a "union" region add ~0
    pixels = result.probability.size if result.region_pixels is None else result.region_pixels
    background = max(float(pixels) - foreground, 0.0)
    return [
        Counts(tp=p * foreground, fn=(1.0 - p) * foreground, tn=q * background, fp=(1.0 - q) * background)
        for p, q in zip(result.sensitivity.tolist(), result.specificity.tolist(), strict=True)
    ]


def object_counts(scores: Iterable[RaterPointScore]) -> list[Counts]:
    """Every rater's matches against consensus objects (points, lines or polygons) on one image."""
    return [Counts(tp=s.tp, fp=s.fp, fn=s.fn) for s in scores]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


@dataclass(frozen=True)
class Performance:
    """Pooled performance of one rater over ``images`` images; a rate is None without evidence."""

    counts: Counts
    images: int

    @property
    def sensitivity(self) -> float | None:
        return _ratio(self.counts.tp, self.counts.tp + self.counts.fn)

    @property
    def specificity(self) -> float | None:
        return _ratio(self.counts.tn, self.counts.tn + self.counts.fp)

    @property
    def precision(self) -> float | None:
        return _ratio(self.counts.tp, self.counts.tp + self.counts.fp)

    @property
    def recall(self) -> float | None:
        return self.sensitivity

    def quality(self, k: float = 1.0) -> float | None:
        """The crowd-only score ``1 − (fp + k·fn) / (2·tp)`` over the pooled counts."""
        if self.images == 0:
            return None
        return crowd_quality(round(self.counts.tp), round(self.counts.fp), round(self.counts.fn), k)


class PerformanceTracker:
    """Accumulates per-rater counts image after image; never reset between images."""

    def __init__(self) -> None:
        self._counts: dict[str, Counts] = {}
        self._images: dict[str, int] = {}

    def add(self, rater: str, counts: Counts) -> None:
        """One image's counts of one rater."""
        self._counts[rater] = self._counts.get(rater, Counts()) + counts
        self._images[rater] = self._images.get(rater, 0) + 1

    def add_image(self, raters: Iterable[str], counts: Iterable[Counts]) -> None:
        """One image's counts of every rater who annotated it."""
        for rater, rater_counts in zip(raters, counts, strict=True):
            self.add(rater, rater_counts)

    def performance(self, rater: str) -> Performance:
        return Performance(self._counts.get(rater, Counts()), self._images.get(rater, 0))

    def raters(self) -> list[str]:
        return sorted(self._counts)

    def ranking(self, key: str = "sensitivity") -> list[str]:
        """Raters from worst to best by a rate (raters without evidence first)."""
        values: dict[str, float] = {}
        for rater in self._counts:
            value = getattr(self.performance(rater), key)
            value = value() if callable(value) else value
            values[rater] = -np.inf if value is None else float(value)
        return sorted(values, key=lambda r: (values[r], r))
