"""The STAPLE iteration as it was before issue 8 took np.clip's dispatch and the per-iteration log of
the prior out of it (verbatim from libs/consensus/staple.py): tests/unit/consensus/test_staple_loop.py
holds today's iteration to these results, bit for bit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

PROBABILITY_FLOOR = 1e-12

MStep = Callable[
    [NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]
]


def _clamp(probability: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.clip(probability, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)


def staple_m_step(
    decisions: NDArray[np.float64], counts: NDArray[np.float64], posterior: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Maximise over (p, q) given W (Warfield et al. 2004, eqs. 18-19), weighted by pattern counts.

    A rater has no defined sensitivity when no pixel is believed foreground; it is then 1.0
    (nothing to miss), and likewise specificity.
    """
    foreground_mass = counts * posterior
    background_mass = counts - foreground_mass
    total_fg, total_bg = foreground_mass.sum(), background_mass.sum()
    sensitivity = foreground_mass @ decisions / total_fg if total_fg > 0 else np.ones(decisions.shape[1])
    specificity = background_mass @ (1.0 - decisions) / total_bg if total_bg > 0 else np.ones(decisions.shape[1])
    # Sums of posterior-weighted counts can overshoot 1 by an ulp.
    return np.clip(sensitivity, 0.0, 1.0, dtype=np.float64), np.clip(specificity, 0.0, 1.0, dtype=np.float64)


def band_m_step(
    decisions: NDArray[np.float64], counts: NDArray[np.float64], posterior: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Rates over a disagreement band (``region="band"``, module docstring): misses and additions
    per pixel of the band, p = 1 − 2·FN/N and q = 1 − 2·FP/N, floored at 1/2 (no worse than chance)."""
    total = counts.sum()
    if total <= 0:
        return np.ones(decisions.shape[1]), np.ones(decisions.shape[1])
    foreground_mass = counts * posterior
    background_mass = counts - foreground_mass
    misses = foreground_mass @ (1.0 - decisions)
    additions = background_mass @ decisions
    return (
        np.clip(1.0 - 2.0 * misses / total, 0.5, 1.0, dtype=np.float64),
        np.clip(1.0 - 2.0 * additions / total, 0.5, 1.0, dtype=np.float64),
    )


def staple_e_step(
    decisions: NDArray[np.float64],
    sensitivity: NDArray[np.float64],
    specificity: NDArray[np.float64],
    prior: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Posterior W = P(T = 1 | D) per pattern (Warfield et al. 2004, eq. 14), and log P(D) per pattern.

    Works in log space so that many raters do not underflow the products.
    """
    p, q = _clamp(sensitivity), _clamp(specificity)
    g = float(np.clip(prior, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR))
    log_fg = np.log(g) + decisions @ (np.log(p) - np.log1p(-p)) + np.log1p(-p).sum()
    log_bg = np.log1p(-g) + decisions @ (np.log1p(-q) - np.log(q)) + np.log(q).sum()
    return expit(log_fg - log_bg), np.logaddexp(log_fg, log_bg)


def _max_change(
    before: tuple[NDArray[np.float64], NDArray[np.float64]],
    after: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> float:
    return float(max(np.abs(after[0] - before[0]).max(), np.abs(after[1] - before[1]).max()))


def staple_patterns(
    decisions: NDArray[np.float64],
    counts: NDArray[np.float64],
    *,
    max_iter: int = 100,
    tol: float = 1e-7,
    prior: float | None = None,
    m_step: MStep = staple_m_step,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float, int, bool, list[float]]:
    """STAPLE over distinct decision patterns; returns (W per pattern, p, q, prior, iterations,
    converged, history). ``m_step`` is eqs. 18-19 unless told otherwise (``band_m_step``)."""
    posterior = decisions.mean(axis=1)
    g = float(counts @ posterior / counts.sum()) if prior is None else float(prior)
    history: list[float] = []
    previous: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
    converged = False
    iterations = 0
    sensitivity = specificity = np.ones(decisions.shape[1])
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is part of the result
        sensitivity, specificity = m_step(decisions, counts, posterior)
        posterior, log_likelihood = staple_e_step(decisions, sensitivity, specificity, g)
        history.append(float(counts @ log_likelihood))
        if previous is not None and _max_change(previous, (sensitivity, specificity)) <= tol:
            converged = True
            break
        previous = (sensitivity, specificity)
    return posterior, sensitivity, specificity, g, iterations, converged, history
