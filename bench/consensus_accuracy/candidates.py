"""Candidate mask consensuses compared with the default on bench/consensus_accuracy (not the service's code).

Both start from the default (``staple(masks, region="band")``) and keep its per-band-pixel rates
(``band_m_step``); each is a fixed number of pure E/M rounds, per pixel rather than per pattern.

* ``sp_band``: spatially varying performance, after SP-STAPLE (Commowick, Akhondi-Asl & Warfield,
  "Estimating a reference standard segmentation with spatially varying performance parameters",
  IEEE TMI 31(8), 2012): each rater's rates are estimated per block of the image over that block's
  disagreement band and shrunk towards the rater's global rates, as SP-STAPLE's MAP priors do, so a
  rater who is careful in one part of the image and sloppy in another is trusted where careful.
* ``band_mrf``: a Markov random field prior on the hidden truth (Warfield, Zou & Wells 2004,
  section II-C): mean-field E-steps where each pixel's log-odds gets ``beta`` times its
  neighbours' mean of 2W − 1 (a 3×3 or 3×3×3 Ising neighbourhood).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from crowdseg.consensus import staple
from crowdseg.consensus.staple import BAND_MARGIN, PROBABILITY_FLOOR
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter
from scipy.special import expit

Floats = NDArray[np.float64]


def _log_odds(decisions: Floats, sensitivity: Floats, specificity: Floats) -> Floats:
    """Σ_j log P(d_j | T=1) − log P(d_j | T=0) per pixel (prior 1/2); rates (raters,) or (raters, pixels)."""
    p = np.clip(sensitivity, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    q = np.clip(specificity, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    if p.ndim == 1:
        p, q = p[:, None], q[:, None]
    evidence = decisions * (np.log(p) - np.log1p(-q)) + (1 - decisions) * (np.log1p(-p) - np.log(q))
    return np.asarray(evidence.sum(axis=0))


def _block_ids(shape: tuple[int, ...], block: int) -> tuple[NDArray[np.intp], int]:
    grids = np.meshgrid(*[np.arange(n) // block for n in shape], indexing="ij")
    sizes = [-(-n // block) for n in shape]
    return np.ravel_multi_index([g.ravel() for g in grids], sizes), int(np.prod(sizes))


def _band_pixel_weights(decisions: Floats, blocks: NDArray[np.intp], count: int, margin: float) -> Floats:
    """Each block's disagreement band: its mixed pixels, and its unanimous pixels of each kind
    down-weighted to at most ``margin`` times the mixed ones (as ``region_weights`` does globally)."""
    votes = decisions.sum(axis=0)
    raters = decisions.shape[0]
    kinds = np.where(votes == 0, 0, np.where(votes == raters, 1, 2))
    weights = np.ones(votes.shape)
    mixed = np.bincount(blocks, weights=kinds == 2, minlength=count)
    for kind in (0, 1):
        present = np.bincount(blocks, weights=kinds == kind, minlength=count)
        scale = np.minimum(1.0, margin * mixed / np.maximum(present, 1))
        weights[kinds == kind] = scale[blocks[kinds == kind]]
    return weights


def _block_rates(
    decisions: Floats, posterior: Floats, weights: Floats, blocks: NDArray[np.intp], count: int, strength: float
) -> tuple[Floats, Floats]:
    """Per-block band rates (p = 1 − 2·FN/N, q = 1 − 2·FP/N), each rater's global rate as a prior
    worth ``strength`` band pixels; returns (raters, pixels) rates looked up by block."""
    total = np.bincount(blocks, weights=weights, minlength=count)
    fg, bg = weights * posterior, weights * (1 - posterior)
    misses = np.stack([np.bincount(blocks, weights=fg * (1 - d), minlength=count) for d in decisions])
    additions = np.stack([np.bincount(blocks, weights=bg * d, minlength=count) for d in decisions])
    global_miss = misses.sum(axis=1, keepdims=True) / max(total.sum(), 1.0)
    global_add = additions.sum(axis=1, keepdims=True) / max(total.sum(), 1.0)
    miss_rate = (misses + strength * global_miss) / (total + strength)
    add_rate = (additions + strength * global_add) / (total + strength)
    p = np.clip(1 - 2 * miss_rate, 0.5, 1.0)
    q = np.clip(1 - 2 * add_rate, 0.5, 1.0)
    return p[:, blocks], q[:, blocks]


def sp_band(
    masks: NDArray[Any], *, block: int = 32, strength: float = 400.0, rounds: int = 10, margin: float = BAND_MARGIN
) -> NDArray[np.bool_]:
    start = staple(masks, region="band", margin=margin)
    decisions = np.asarray(masks, np.float64).reshape(len(masks), -1)
    shape = np.asarray(masks).shape[1:]
    blocks, count = _block_ids(shape, block)
    weights = _band_pixel_weights(decisions, blocks, count, margin)
    posterior = start.probability.ravel()
    for _ in range(rounds):
        p, q = _block_rates(decisions, posterior, weights, blocks, count, strength)
        posterior = expit(_log_odds(decisions, p, q))
    return np.asarray(posterior > 0.5).reshape(shape)


def band_mrf(masks: NDArray[Any], *, beta: float = 0.3, rounds: int = 5) -> NDArray[np.bool_]:
    """The band's posterior has prior 1/2, so its log-odds are the raters' evidence alone."""
    start = staple(masks, region="band").probability
    floor = np.clip(start, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    evidence = np.log(floor) - np.log1p(-floor)
    posterior = start
    for _ in range(rounds):
        spins = 2 * posterior - 1
        neighbours = 3**posterior.ndim * uniform_filter(spins, size=3, mode="nearest") - spins
        posterior = expit(evidence + beta * neighbours)
    return np.asarray(posterior > 0.5)


def _classification_log_likelihood(decisions: Floats, labels: NDArray[np.bool_]) -> float:
    """max over p, q and the prior of log P(D, T = labels): the complete-data likelihood with T fixed."""
    fg = labels.astype(np.float64)
    total_fg, total_bg = fg.sum(), (1 - fg).sum()
    if total_fg == 0 or total_bg == 0:
        return -np.inf
    p = np.clip(decisions @ fg / total_fg, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    q = np.clip((1 - decisions) @ (1 - fg) / total_bg, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    g = total_fg / labels.size

    def entropy_term(rate: Floats, mass: float) -> float:
        return float(mass * (rate * np.log(rate) + (1 - rate) * np.log1p(-rate)).sum())

    return entropy_term(p, total_fg) + entropy_term(q, total_bg) + total_fg * np.log(g) + total_bg * np.log1p(-g)


def likelihood_choice(masks: NDArray[Any]) -> NDArray[np.bool_]:
    """The estimate (band, whole-image or union STAPLE, majority vote) whose labels make the raters'
    decisions most likely, each with its own best rates (a classification-likelihood choice)."""
    stack = np.asarray(masks, bool)
    decisions = stack.reshape(len(stack), -1).astype(np.float64)
    estimates = [staple(stack, region=region).consensus() for region in ("band", "image", "union")]
    estimates.append(stack.mean(axis=0) > 0.5)
    scores = [_classification_log_likelihood(decisions, e.ravel()) for e in estimates]
    return estimates[int(np.argmax(scores))]
