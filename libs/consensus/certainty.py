"""How certain one image's consensus is, in 0–1: the rule that retires an image early.

Adaptive replicates after Zooniverse's Caesar (a subject retires once its aggregate meets a rule) and
Label Studio's low-agreement overlap: an image with at least ``min_replicates`` accepted submissions
retires once :func:`retires` holds, so annotators go where the crowd still disagrees.

* masks: ``1 − u / (f ∪ u)``, where ``u`` counts the contested pixels, whose STAPLE posterior lies in
  (``low``, ``high``) = (0.1, 0.9), and ``f`` the consensus foreground (posterior ≥ 0.5). STAPLE
  weighs each rater by their estimated sensitivity and specificity (Warfield, Zou & Wells, "Simultaneous
  truth and performance level estimation (STAPLE)", IEEE TMI 23(7), 2004), so a pixel two careful raters
  split stays contested, while one spammer outvoted by reliable raters leaves few contested pixels.
  An image nobody marked is certain (1).
* points and polylines: the median of the raters' quality (``crowdseg.consensus.quality``: F1 of each
  rater's objects against the clustering of the others, within the task's radius), robust to a
  minority of bad raters; None while fewer than two raters are scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median
from typing import Any

import numpy as np
from numpy.typing import NDArray

CONTESTED_LOW = 0.1
CONTESTED_HIGH = 0.9


def mask_certainty(probability: NDArray[Any], *, low: float = CONTESTED_LOW, high: float = CONTESTED_HIGH) -> float:
    """``1 − contested / (foreground ∪ contested)`` of a posterior map (any shape)."""
    p = np.asarray(probability, np.float64)
    contested = (p > low) & (p < high)
    considered = int(np.count_nonzero(contested | (p >= 0.5)))
    return 1.0 if considered == 0 else 1.0 - int(np.count_nonzero(contested)) / considered


def agreement_certainty(qualities: Sequence[float | None]) -> float | None:
    """The median of the raters' leave-one-out qualities (None for fewer than two)."""
    known = [q for q in qualities if q is not None]
    return float(median(known)) if len(known) >= 2 else None


def retires(certainty: float | None, submissions: int, *, min_replicates: int, confidence: float) -> bool:
    """Whether an image with this many accepted submissions and this certainty needs no more."""
    return certainty is not None and submissions >= min_replicates and certainty >= confidence
