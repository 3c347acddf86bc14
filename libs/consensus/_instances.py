"""Grouping of shape instances (polylines, polygons) drawn by several raters into objects.

The same greedy scheme as point clustering (``points.group_by_distance``): instances that many
distinct raters agree with seed first; a group takes at most one instance per rater (the one
most similar to the seed) and needs ``min_raters`` distinct raters.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def _links(affinity: NDArray[np.float64], rater: NDArray[np.intp], threshold: float) -> NDArray[np.bool_]:
    """Which pairs may share a group: similar enough and drawn by different raters."""
    return np.asarray((affinity >= threshold) & (rater[:, None] != rater[None, :]))


def _seed_order(links: NDArray[np.bool_], affinity: NDArray[np.float64], rater: NDArray[np.intp]) -> NDArray[np.intp]:
    """Instances by the number of distinct raters they link to (then by summed affinity), descending."""
    raters = int(rater.max()) + 1
    reach = np.zeros((len(rater), raters), np.bool_)
    rows, cols = np.nonzero(links)
    reach[rows, rater[cols]] = True
    density = reach.sum(axis=1)
    strength = np.where(links, affinity, 0.0).sum(axis=1)
    return np.lexsort((-strength, -density)).astype(np.intp)


def _best_per_rater(
    seed: int, links: NDArray[np.bool_], affinity: NDArray[np.float64], rater: NDArray[np.intp], free: NDArray[np.bool_]
) -> NDArray[np.intp]:
    """The seed and, for every other rater, their free instance most similar to it."""
    candidates = np.flatnonzero(links[seed] & free)
    order = candidates[np.lexsort((-affinity[seed, candidates], rater[candidates]))]
    first = np.r_[True, rater[order][1:] != rater[order][:-1]] if len(order) else np.empty(0, np.bool_)
    return np.concatenate([[seed], order[first]]).astype(np.intp)


def group_instances(
    affinity: NDArray[np.float64], rater: NDArray[np.intp], *, threshold: float, min_raters: int
) -> list[NDArray[np.intp]]:
    """Groups (indices into the instances) of a symmetric ``affinity`` matrix, higher = more alike.

    Two instances can share a group when their affinity is at least ``threshold``.
    """
    if len(rater) == 0:
        return []
    links = _links(affinity, rater, threshold)
    free = np.ones(len(rater), np.bool_)
    groups: list[NDArray[np.intp]] = []
    for seed in _seed_order(links, affinity, rater):
        if not free[seed]:
            continue
        members = _best_per_rater(int(seed), links, affinity, rater, free)
        if len(members) >= min_raters:
            free[members] = False
            groups.append(members)
    return groups


def pool_instances(
    per_rater: list[list[NDArray[np.float64]]],
) -> tuple[list[NDArray[np.float64]], NDArray[np.intp], NDArray[np.intp]]:
    """All instances in one list, with each one's rater and its index within that rater."""
    shapes = [shape for shapes in per_rater for shape in shapes]
    rater = np.array([r for r, shapes in enumerate(per_rater) for _ in shapes], np.intp)
    index = np.array([i for shapes in per_rater for i in range(len(shapes))], np.intp)
    return shapes, rater, index
