"""Binary STAPLE and (weighted) majority vote.

STAPLE: Warfield S.K., Zou K.H., Wells W.M. (2004), "Simultaneous truth and performance level
estimation (STAPLE): an algorithm for the validation of image segmentation", IEEE Transactions
on Medical Imaging 23(7):903-921.

Expectation-maximisation of the hidden true segmentation T and each rater j's sensitivity
p_j = P(D_j = 1 | T = 1) and specificity q_j = P(D_j = 0 | T = 0). The conventions follow
ITK's ``STAPLEImageFilter`` (as wrapped by SimpleITK), so results agree with it:

* the posterior W starts as the fraction of raters voting foreground at each pixel;
* the prior P(T = 1) defaults to the mean of that initial W and stays fixed;
* each iteration is an M-step (p, q from W) followed by an E-step (W from p, q);
* it stops when no p_j or q_j moved by more than ``tol`` (ITK: squared change <= 1e-14).

The EM runs over distinct rater-decision patterns weighted by pixel counts, not per pixel.

``region="union"`` estimates p, q and the prior only over the pixels that at least one rater
marked foreground. Specificity and the prior depend on how much background the estimation
includes, which is why STAPLE is commonly run within a region of interest: over the whole
image, a few pixels of boundary error are a negligible false-positive rate against the large
background, so every foreground vote looks reliable and the consensus grows under boundary
noise. Crowd-Kit's SegmentationEM normalises its error rates by the same union.
Pixels outside the union still get a posterior (near 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from crowdseg.consensus._patterns import as_binary_stack, decision_patterns
from numpy.typing import NDArray
from scipy.special import expit

# Keeps log(p), log(1 - p) finite for perfect or inverted raters.
PROBABILITY_FLOOR = 1e-12


@dataclass(frozen=True)
class StapleResult:
    """Outcome of binary STAPLE.

    ``probability`` is the posterior P(true foreground) per pixel, ``history`` the observed-data
    log-likelihood after every iteration (non-decreasing up to rounding), ``region_pixels`` the
    number of pixels p, q and the prior were estimated over.
    """

    probability: NDArray[np.float64]
    sensitivity: NDArray[np.float64]
    specificity: NDArray[np.float64]
    prior: float
    iterations: int
    converged: bool
    history: list[float] = field(default_factory=list)
    region_pixels: int | None = None

    def consensus(self, threshold: float = 0.5) -> NDArray[np.bool_]:
        """Consensus mask: pixels whose posterior exceeds ``threshold`` (ITK's STAPLE output > 0.5)."""
        return np.asarray(self.probability > threshold)


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
    specificity = (
        background_mass @ (1.0 - decisions) / total_bg if total_bg > 0 else np.ones(decisions.shape[1])
    )
    # Sums of posterior-weighted counts can overshoot 1 by an ulp.
    return np.clip(sensitivity, 0.0, 1.0, dtype=np.float64), np.clip(specificity, 0.0, 1.0, dtype=np.float64)


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
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float, int, bool, list[float]]:
    """STAPLE over distinct decision patterns; returns (W per pattern, p, q, prior, iterations,
    converged, history)."""
    posterior = decisions.mean(axis=1)
    g = float(counts @ posterior / counts.sum()) if prior is None else float(prior)
    history: list[float] = []
    previous: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
    converged = False
    iterations = 0
    sensitivity = specificity = np.ones(decisions.shape[1])
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is part of the result
        sensitivity, specificity = staple_m_step(decisions, counts, posterior)
        posterior, log_likelihood = staple_e_step(decisions, sensitivity, specificity, g)
        history.append(float(counts @ log_likelihood))
        if previous is not None and _max_change(previous, (sensitivity, specificity)) <= tol:
            converged = True
            break
        previous = (sensitivity, specificity)
    return posterior, sensitivity, specificity, g, iterations, converged, history


Region = Literal["image", "union"]


def region_weights(counts: NDArray[np.float64], region: Region) -> NDArray[np.float64]:
    """Pattern weights for estimation: the pixel counts, without the all-background row for "union"
    (row 0 of `decision_patterns`), unless nobody marked anything."""
    if region not in ("image", "union"):
        raise ValueError(f"region must be 'image' or 'union', got {region!r}")
    if region == "image" or counts[0] == counts.sum():
        return counts
    weights = counts.copy()
    weights[0] = 0.0
    return weights


def staple(
    masks: NDArray[Any],
    *,
    max_iter: int = 100,
    tol: float = 1e-7,
    prior: float | None = None,
    region: Region = "image",
) -> StapleResult:
    """Binary STAPLE (Warfield, Zou & Wells 2004) of a (raters, H, W) or (raters, D, H, W) stack.

    ``masks`` are bool or 0/1. ``prior`` is P(true foreground); by default the mean fraction
    of foreground over raters, as in ITK/SimpleITK. ``region`` is where p, q and the prior are
    estimated: "image" (ITK's choice) or "union" of the raters' foreground (see the module
    docstring; more accurate under boundary noise). One rater is allowed (its mask comes back).
    Raises ValueError on empty or ragged input.
    """
    if prior is not None and not 0.0 <= prior <= 1.0:
        raise ValueError(f"prior must be in [0, 1], got {prior}")
    stack = as_binary_stack(masks)
    patterns = decision_patterns(stack)
    weights = region_weights(patterns.counts, region)
    posterior, sensitivity, specificity, g, iterations, converged, history = staple_patterns(
        patterns.decisions, weights, max_iter=max_iter, tol=tol, prior=prior
    )
    probability = patterns.expand(posterior).reshape(stack.shape[1:])
    region_pixels = int(weights.sum())
    return StapleResult(probability, sensitivity, specificity, g, iterations, converged, history, region_pixels)


def majority_vote(masks: NDArray[Any], weights: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """Weighted fraction of foreground votes per pixel (threshold at 0.5 for the majority mask)."""
    stack = as_binary_stack(masks)
    raters = stack.shape[0]
    w = np.ones(raters) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (raters,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be (raters,), non-negative, not all zero")
    patterns = decision_patterns(stack)
    fraction = patterns.decisions @ (w / w.sum())
    return patterns.expand(fraction).reshape(stack.shape[1:])
