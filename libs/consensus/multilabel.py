"""Multi-label STAPLE.

Warfield S.K., Zou K.H., Wells W.M. (2004), "Simultaneous truth and performance level
estimation (STAPLE)", IEEE TMI 23(7):903-921, section on multiple labels; Rohlfing T., Russakoff
D.B., Maurer C.R. (2004), "Performance-based classifier combination in atlas-based image
segmentation using expectation-maximization parameter estimation", IEEE TMI 23(8):983-994.

Each rater r has a confusion matrix theta[r, j, c] = P(rater says j | true label c). The
conventions follow ITK's ``MultiLabelSTAPLEImageFilter`` (as wrapped by SimpleITK):

* labels are 0 .. max label found; the prior is the label frequency over all raters, fixed;
* theta starts from each rater's agreement with label voting, rows normalised (pixels where
  the vote is tied are left out here; ITK writes them past the end of a matrix row);
* each iteration is an E-step then an M-step; it stops once no entry of theta moved by ``tol``
  or more (ITK's TerminationUpdateThreshold, default 1e-5);
* the consensus is the most probable label, or ``undecided_label`` (default: number of labels)
  where the maximum is tied.

The EM runs over distinct rater-decision patterns weighted by pixel counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from crowdseg.consensus._patterns import group_keys
from numpy.typing import NDArray
from scipy.special import logsumexp

_TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class MultiLabelStapleResult:
    """Outcome of multi-label STAPLE.

    ``probability`` has shape (*image, labels); ``confusion[r, j, c]`` = P(rater r says j | true c);
    ``history`` holds the observed-data log-likelihood after every iteration.
    """

    probability: NDArray[np.float64]
    label_map: NDArray[np.int64]
    confusion: NDArray[np.float64]
    prior: NDArray[np.float64]
    undecided_label: int
    iterations: int
    converged: bool
    history: list[float] = field(default_factory=list)

    def consensus(self) -> NDArray[np.int64]:
        """The consensus label map (``undecided_label`` where the most probable label is tied)."""
        return self.label_map

    def sensitivity(self) -> NDArray[np.float64]:
        """(raters, labels): P(rater says c | true c), the diagonal of each confusion matrix."""
        return np.diagonal(self.confusion, axis1=1, axis2=2).copy()


@dataclass(frozen=True)
class LabelPatterns:
    """Distinct label-decision rows; rows 0 .. L-1 are the unanimous patterns (label l everywhere)."""

    decisions: NDArray[np.intp]  # (patterns, raters)
    counts: NDArray[np.float64]  # (patterns,)
    first_rater: NDArray[np.intp]  # (pixels,) rater 0's labels: the row of every unanimous pixel
    positions: NDArray[np.intp]  # (mixed pixels,)
    position_pattern: NDArray[np.intp]  # (mixed pixels,)

    def expand(self, per_pattern: NDArray[Any]) -> NDArray[Any]:
        values = np.asarray(per_pattern)
        pixels = values[self.first_rater]
        pixels[self.positions] = values[self.position_pattern]
        return pixels


def as_label_stack(label_maps: NDArray[Any]) -> NDArray[np.intp]:
    """Validate a (raters, ...) stack of non-negative integer label maps."""
    try:
        stack = np.asarray(label_maps)
    except ValueError as error:
        raise ValueError(f"label maps must be a regular (raters, ...) array: {error}") from error
    if stack.dtype == object or stack.ndim < 2 or stack.shape[0] == 0 or stack[0].size == 0:
        raise ValueError(f"expected a non-empty (raters, H, W[, D]) integer stack, got shape {stack.shape}")
    if stack.dtype != np.bool_ and not np.issubdtype(stack.dtype, np.integer):
        raise ValueError("label maps must hold integers")
    if stack.min() < 0:
        raise ValueError("labels must be non-negative")
    return stack.astype(np.intp, copy=False)


def label_patterns(stack: NDArray[np.intp], labels: int) -> LabelPatterns:
    """Group pixels of a (raters, ...) label stack by their pattern of label decisions."""
    raters = stack.shape[0]
    flat = stack.reshape(raters, -1)
    unanimous = np.ones(flat.shape[1], np.bool_)
    for r in range(1, raters):
        unanimous &= flat[r] == flat[0]
    mixed = np.flatnonzero(~unanimous)
    bits = max(1, (labels - 1).bit_length())
    rows = flat[:, mixed].T
    if raters * bits <= 64:
        keys = np.zeros(len(mixed), np.uint64)
        for r in range(raters):
            keys |= rows[:, r].astype(np.uint64) << np.uint64(r * bits)
        unique_keys, counts, order, group = group_keys(keys, raters * bits)
        shifts = (np.arange(raters) * bits).astype(np.uint64)
        unique_rows = ((unique_keys[:, None] >> shifts) & np.uint64((1 << bits) - 1)).astype(np.intp)
    else:
        unique_rows, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        order, group = np.arange(len(mixed), dtype=np.intp), inverse.reshape(-1)
    unanimous_rows = np.repeat(np.arange(labels, dtype=np.intp)[:, None], raters, axis=1)
    unanimous_counts = np.bincount(flat[0][unanimous], minlength=labels)
    return LabelPatterns(
        decisions=np.concatenate([unanimous_rows, unique_rows.reshape(-1, raters)]),
        counts=np.concatenate([unanimous_counts, counts]).astype(np.float64),
        first_rater=flat[0].copy(),
        positions=mixed[order],
        position_pattern=group + labels,
    )


def _vote_counts(decisions: NDArray[np.intp], labels: int) -> NDArray[np.float64]:
    """(patterns, labels) number of raters voting for each label."""
    votes = np.zeros((len(decisions), labels))
    for r in range(decisions.shape[1]):
        votes[np.arange(len(decisions)), decisions[:, r]] += 1.0
    return votes


def initial_confusion(decisions: NDArray[np.intp], counts: NDArray[np.float64], labels: int) -> NDArray[np.float64]:
    """ITK's start: each rater's (own label, voted label) counts, normalised over voted labels."""
    votes = _vote_counts(decisions, labels)
    winner = votes.argmax(axis=1)
    decided = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) == 1
    confusion = np.zeros((decisions.shape[1], labels, labels))
    for r in range(decisions.shape[1]):
        np.add.at(confusion[r], (decisions[decided, r], winner[decided]), counts[decided])
    totals = confusion.sum(axis=2, keepdims=True)
    return np.divide(confusion, totals, out=confusion, where=totals > 0)


def multilabel_e_step(
    decisions: NDArray[np.intp], confusion: NDArray[np.float64], prior: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Posterior P(true c | decisions) per pattern (patterns, labels), and log P(decisions) per pattern.

    A pattern that is impossible under the current confusion matrices (every label has
    probability 0) gets an all-zero posterior, so it drops out of the next M-step, as in ITK.
    """
    with np.errstate(divide="ignore"):
        log_joint = np.tile(np.log(prior), (len(decisions), 1))
        log_confusion = np.log(confusion)
    for r in range(decisions.shape[1]):
        log_joint += log_confusion[r, decisions[:, r]]
    log_evidence = np.asarray(logsumexp(log_joint, axis=1), np.float64)
    possible = np.isfinite(log_evidence)
    posterior = np.zeros_like(log_joint)
    posterior[possible] = np.exp(log_joint[possible] - log_evidence[possible, None])
    return posterior, log_evidence


def multilabel_m_step(
    decisions: NDArray[np.intp], counts: NDArray[np.float64], posterior: NDArray[np.float64]
) -> NDArray[np.float64]:
    """theta[r, j, c] = sum over pixels with D_r = j of W_c, over the sum of W_c (ITK's update)."""
    raters, labels = decisions.shape[1], posterior.shape[1]
    mass = counts[:, None] * posterior
    confusion = np.zeros((raters, labels, labels))
    for r in range(raters):
        np.add.at(confusion[r], decisions[:, r], mass)
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=confusion, where=totals > 0)


def most_probable_label(probability: NDArray[np.float64], undecided_label: int) -> NDArray[np.int64]:
    """Argmax over the last axis, ``undecided_label`` where the maximum is shared."""
    best = probability.argmax(axis=-1)
    top = np.take_along_axis(probability, best[..., None], axis=-1)
    tied = (probability >= top * (1.0 - _TIE_TOLERANCE)).sum(axis=-1) > 1
    return np.where(tied, undecided_label, best).astype(np.int64)


def multilabel_staple(
    label_maps: NDArray[Any],
    *,
    max_iter: int = 100,
    tol: float = 1e-5,
    prior: NDArray[np.float64] | None = None,
    undecided_label: int | None = None,
) -> MultiLabelStapleResult:
    """Multi-label STAPLE of a (raters, H, W) or (raters, D, H, W) stack of label maps 0 .. L-1.

    ``prior`` (labels,) defaults to the label frequencies over all raters. Raises ValueError on
    empty, ragged or negative input.
    """
    stack = as_label_stack(label_maps)
    labels = int(stack.max()) + 1
    patterns = label_patterns(stack, labels)
    g = _label_prior(patterns, labels) if prior is None else _checked_prior(prior, labels)
    confusion = initial_confusion(patterns.decisions, patterns.counts, labels)
    history: list[float] = []
    converged, iterations = False, 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is part of the result
        posterior, log_evidence = multilabel_e_step(patterns.decisions, confusion, g)
        possible = np.isfinite(log_evidence)
        history.append(float(patterns.counts[possible] @ log_evidence[possible]))
        updated = multilabel_m_step(patterns.decisions, patterns.counts, posterior)
        change = float(np.abs(updated - confusion).max())
        confusion = updated
        if change < tol:
            converged = True
            break
    posterior, _ = multilabel_e_step(patterns.decisions, confusion, g)
    undecided = labels if undecided_label is None else undecided_label
    probability = patterns.expand(posterior).reshape(*stack.shape[1:], labels)
    label_map = patterns.expand(most_probable_label(posterior, undecided)).reshape(stack.shape[1:])
    return MultiLabelStapleResult(probability, label_map, confusion, g, undecided, iterations, converged, history)


def _label_prior(patterns: LabelPatterns, labels: int) -> NDArray[np.float64]:
    votes = patterns.counts @ _vote_counts(patterns.decisions, labels)
    return np.asarray(votes / votes.sum(), np.float64)


def _checked_prior(prior: NDArray[np.float64], labels: int) -> NDArray[np.float64]:
    g = np.asarray(prior, np.float64)
    if g.shape != (labels,) or np.any(g < 0) or not np.isclose(g.sum(), 1.0):
        raise ValueError(f"prior must be {labels} non-negative probabilities summing to 1")
    return g
