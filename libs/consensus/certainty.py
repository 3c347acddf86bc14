"""How certain one image's consensus is, in 0–1: the rule that retires an image early.

Adaptive replicates after Zooniverse's Caesar (a subject retires once its aggregate meets a rule) and
Label Studio's low-agreement overlap: an image with at least ``min_replicates`` accepted submissions
retires once :func:`retires` holds, so annotators go where the crowd still disagrees.

The certainty is the median of the raters' quality on the image (``crowdseg.consensus.quality``): for
masks each rater's Dice against the leave-one-out majority vote of the others, for points and
polylines the F1 of their objects against the clustering of the others within the task's radius (or,
where the image has an expert reference, agreement with it). The median is robust to a minority of bad
raters: two careful raters and a spammer give a median near the careful pair's agreement with a tie,
three careful raters outvote the spammer. It is None while fewer than two raters are scored, so an
image needs two submissions to retire whatever ``min_replicates`` says.

STAPLE's posterior (the share of pixels with a posterior in (0.1, 0.9)) was tried first and rejected:
with three raters drawing nested circles of radii 6, 22 and 12 pixels it is already certain
everywhere (no pixel in the band), since STAPLE decides which rater is right (Warfield, Zou & Wells,
IEEE TMI 23(7), 2004, estimate the raters, not the spread of their answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median


def agreement_certainty(qualities: Sequence[float | None]) -> float | None:
    """The median of the raters' leave-one-out qualities (None for fewer than two)."""
    known = [q for q in qualities if q is not None]
    return float(median(known)) if len(known) >= 2 else None


def retires(certainty: float | None, submissions: int, *, min_replicates: int, confidence: float) -> bool:
    """Whether an image with this many accepted submissions and this certainty needs no more."""
    return certainty is not None and submissions >= min_replicates and certainty >= confidence
