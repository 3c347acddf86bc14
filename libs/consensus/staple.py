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

``region="band"`` (the consensus service's default) estimates over the disagreement band with a
margin: every pixel where the raters disagree, plus as many unanimous-background and as many
unanimous-foreground pixels as ``margin`` times the disagreeing ones (fewer when the image has
fewer). Unanimous pixels carry no evidence about who is right, only about how much background and
foreground the estimate sees, so they are counted, not located. Restricting estimation to where the
raters disagree follows Asman & Landman's consensus regions (COLLATE: "Robust statistical label
fusion through consensus level, labeler accuracy, and truth estimation", IEEE TMI 30(10), 2011).
Over the band, misses and additions are both counted per pixel of the band (``band_m_step``):
p_j = 1 − 2·FN_j / N and q_j = 1 − 2·FP_j / N over a band of N pixels, the rates of a band holding
as much foreground as background, with the prior fixed at 1/2 and no rater worse than chance
(p, q ≥ 1/2). Counting errors per pixel of a region rather than per class is what Crowd-Kit's
SegmentationEM does over the union (Lee, Das Sarma & Parameswaran, "Aggregating crowdsourced image
segmentations", CEUR-WS 2173, 2018), here with misses and additions kept apart. Class-conditional
rates (eqs. 18-19) make a boundary error cheap on whichever side has more pixels in the region:
over the whole image background dominates (the consensus grows), over the raw union foreground
does (it shrinks), and inside the band a ring drawn only by a few over-drawers makes the careful
raters look perfectly specific (it grows again). Counted per band
pixel, symmetric boundary noise weighs the same either way, so a crowd of good raters gets its
majority, while a rater who adds or misses much more than the others gets a low rate and little
say. This is a fixed-point iteration of E-steps (eq. 14) and these M-steps, not the EM of a
likelihood: its ``history`` (the observed-data log-likelihood, as for the other regions) need not
increase. The sensitivity and specificity reported for "band" are re-estimated over the whole image
from the band's posterior with eqs. 18-19, so specificity is over the image, as task masters read
it. bench/consensus_accuracy compares the regions with majority vote and Crowd-Kit.
"""

from __future__ import annotations

from collections.abc import Callable
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
    return _between(probability, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)


def _between(values: NDArray[np.float64], low: float, high: float) -> NDArray[np.float64]:
    """``np.clip`` of a float array, the same values: the two ufuncs without ``np.clip``'s dispatch,
    which cost more than the arithmetic on the few decision patterns a crowd of one image has."""
    return np.minimum(np.maximum(values, low), high)


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
    return _between(sensitivity, 0.0, 1.0), _between(specificity, 0.0, 1.0)


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
    return _between(1.0 - 2.0 * misses / total, 0.5, 1.0), _between(1.0 - 2.0 * additions / total, 0.5, 1.0)


MStep = Callable[
    [NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]
]


def staple_e_step(
    decisions: NDArray[np.float64],
    sensitivity: NDArray[np.float64],
    specificity: NDArray[np.float64],
    prior: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Posterior W = P(T = 1 | D) per pattern (Warfield et al. 2004, eq. 14), and log P(D) per pattern.

    Works in log space so that many raters do not underflow the products.
    """
    return _e_step(decisions, sensitivity, specificity, _log_prior(prior))


def _log_prior(prior: float) -> tuple[Any, Any]:
    """``(log g, log(1 − g))`` of the clamped prior, once per run rather than once per iteration."""
    g = float(np.clip(prior, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR))
    return np.log(g), np.log1p(-g)


def _e_step(
    decisions: NDArray[np.float64],
    sensitivity: NDArray[np.float64],
    specificity: NDArray[np.float64],
    log_prior: tuple[Any, Any],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    p, q = _clamp(sensitivity), _clamp(specificity)
    log_p, log_not_p, log_q, log_not_q = np.log(p), np.log1p(-p), np.log(q), np.log1p(-q)
    log_fg = log_prior[0] + decisions @ (log_p - log_not_p) + log_not_p.sum()
    log_bg = log_prior[1] + decisions @ (log_not_q - log_q) + log_q.sum()
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
    log_prior = _log_prior(g)
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is part of the result
        sensitivity, specificity = m_step(decisions, counts, posterior)
        posterior, log_likelihood = _e_step(decisions, sensitivity, specificity, log_prior)
        history.append(float(counts @ log_likelihood))
        if previous is not None and _max_change(previous, (sensitivity, specificity)) <= tol:
            converged = True
            break
        previous = (sensitivity, specificity)
    return posterior, sensitivity, specificity, g, iterations, converged, history


Region = Literal["image", "union", "band"]
REGIONS = ("image", "union", "band")


BAND_MARGIN = 2.0  # unanimous pixels of each kind in the band, per disagreeing pixel (bench/consensus_accuracy)


def region_weights(counts: NDArray[np.float64], region: Region, margin: float = BAND_MARGIN) -> NDArray[np.float64]:
    """Pattern weights for estimation: the pixel counts; without the all-background row for "union"
    (row 0 of `decision_patterns`), unless nobody marked anything; for "band", the unanimous rows
    (0 and 1) capped at ``margin`` times the disagreeing pixels, unless there are none."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {', '.join(map(repr, REGIONS))}, got {region!r}")
    if region == "image" or counts[0] == counts.sum():
        return counts
    weights = counts.copy()
    if region == "union":
        weights[0] = 0.0
        return weights
    disagreeing = float(counts[2:].sum())
    if disagreeing == 0:
        return counts
    weights[:2] = np.minimum(counts[:2], margin * disagreeing)
    return weights


def staple(
    masks: NDArray[Any],
    *,
    max_iter: int = 100,
    tol: float = 1e-7,
    prior: float | None = None,
    region: Region = "image",
    margin: float = BAND_MARGIN,
) -> StapleResult:
    """Binary STAPLE (Warfield, Zou & Wells 2004) of a (raters, H, W) or (raters, D, H, W) stack.

    ``masks`` are bool or 0/1. ``prior`` is P(true foreground); by default the mean fraction
    of foreground over raters, as in ITK/SimpleITK. ``region`` is where p, q and the prior are
    estimated: "image" (ITK's choice), "union" of the raters' foreground, or "band", the
    disagreement band with ``margin`` (see the module docstring; "band" is the service's default,
    with the prior 1/2 unless given). For "band" the reported sensitivity and specificity are over
    the whole image. One rater is allowed (its mask
    comes back). Raises ValueError on empty or ragged input.
    """
    if prior is not None and not 0.0 <= prior <= 1.0:
        raise ValueError(f"prior must be in [0, 1], got {prior}")
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    stack = as_binary_stack(masks)
    patterns = decision_patterns(stack)
    weights = region_weights(patterns.counts, region, margin)
    band = region == "band"
    posterior, sensitivity, specificity, g, iterations, converged, history = staple_patterns(
        patterns.decisions,
        weights,
        max_iter=max_iter,
        tol=tol,
        prior=0.5 if band and prior is None else prior,
        m_step=band_m_step if band else staple_m_step,
    )
    probability = patterns.expand(posterior).reshape(stack.shape[1:])
    region_pixels = int(weights.sum())
    if band:  # rates of record over the whole image, from the band's posterior (eqs. 18-19)
        sensitivity, specificity = staple_m_step(patterns.decisions, patterns.counts, posterior)
        region_pixels = int(patterns.counts.sum())
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
