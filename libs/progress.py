"""Experience and levels: they grow with contributions and with their quality."""

from __future__ import annotations

import math

XP_PER_SUBMISSION = 10
XP_QUALITY_BONUS = 10


def experience(submissions: int, mean_quality: float | None) -> tuple[int, int]:
    """(level, xp): each submission earns 10 xp, plus up to 10 more for agreeing with the consensus."""
    quality = 0.0 if mean_quality is None else min(max(mean_quality, 0.0), 1.0)
    xp = round(submissions * (XP_PER_SUBMISSION + XP_QUALITY_BONUS * quality))
    level = 1 + math.isqrt(xp // 100)
    return level, xp
