"""Point (click) consensus by spatial clustering of all raters' clicks.

A cluster is a place where enough distinct raters clicked within ``radius`` of a common
centre; its centre is the consensus point. Each rater is scored against the crowd's own
clusters, no expert needed: a click in a cluster is a true positive, a click outside every
cluster a false positive, a cluster without the rater's click a false negative, and the
crowd-only quality score is ``1 - (fp + k·fn) / (2·tp)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

_REFINEMENTS = 3


@dataclass(frozen=True)
class RaterPointScore:
    """One rater's agreement with the crowd clusters (``rmse`` is nan without any true positive)."""

    precision: float
    recall: float
    rmse: float
    quality: float
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True)
class PointClustering:
    """Consensus points: centres (m, 2) as x, y; distinct-rater support; members; rater scores."""

    centres: NDArray[np.float64]
    support: NDArray[np.int64]
    members: list[list[tuple[int, int]]]
    raters: list[RaterPointScore]


def default_min_raters(raters: int) -> int:
    """A strict-or-tied majority of raters, ceil(R / 2), at least 1."""
    return max(1, math.ceil(raters / 2))


def _pool(points: Sequence[NDArray[Any]]) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.intp]]:
    """All clicks in one (n, 2) array, with each click's rater and its index within that rater."""
    per_rater = [np.asarray(p, np.float64).reshape(-1, 2) for p in points]
    pooled = np.concatenate(per_rater) if per_rater else np.empty((0, 2))
    rater = np.concatenate([np.full(len(p), r, np.intp) for r, p in enumerate(per_rater)] or [np.empty(0, np.intp)])
    index = np.concatenate([np.arange(len(p), dtype=np.intp) for p in per_rater] or [np.empty(0, np.intp)])
    return pooled, rater, index


def _nearest_per_rater(
    centre: NDArray[np.float64],
    candidates: NDArray[np.intp],
    pooled: NDArray[np.float64],
    rater: NDArray[np.intp],
) -> NDArray[np.intp]:
    """Of the candidate clicks, each rater's closest one to ``centre``."""
    if len(candidates) == 0:
        return candidates
    distance = np.linalg.norm(pooled[candidates] - centre, axis=1)
    by_rater_then_distance = np.lexsort((distance, rater[candidates]))
    ordered = candidates[by_rater_then_distance]
    first_of_rater = np.r_[True, rater[ordered][1:] != rater[ordered][:-1]]
    return ordered[first_of_rater]


def _grow_cluster(
    seed: int,
    tree: cKDTree,
    pooled: NDArray[np.float64],
    rater: NDArray[np.intp],
    assigned: NDArray[np.bool_],
    radius: float,
) -> NDArray[np.intp]:
    """Members around a seed click: one free click per rater near a centre refined as their mean."""
    centre = pooled[seed]
    members = np.array([seed], np.intp)
    for _ in range(_REFINEMENTS):
        near = np.asarray(tree.query_ball_point(centre, radius), np.intp)
        members = _nearest_per_rater(centre, near[~assigned[near]], pooled, rater)
        if len(members) == 0:
            break
        centre = pooled[members].mean(axis=0)
    return members


def group_by_distance(
    pooled: NDArray[np.float64], rater: NDArray[np.intp], *, radius: float, min_raters: int
) -> list[NDArray[np.intp]]:
    """Greedy clustering of labelled points: densest seeds first (most distinct raters within
    ``radius``), at most one point per rater per cluster, clusters need ``min_raters`` raters."""
    if len(pooled) == 0:
        return []
    tree = cKDTree(pooled)
    neighbourhoods = tree.query_ball_point(pooled, radius)
    density = np.array([len(set(rater[n].tolist())) for n in neighbourhoods])
    assigned = np.zeros(len(pooled), np.bool_)
    clusters: list[NDArray[np.intp]] = []
    for seed in np.argsort(-density, kind="stable"):
        if assigned[seed] or density[seed] < min_raters:
            continue
        members = _grow_cluster(int(seed), tree, pooled, rater, assigned, radius)
        if len(members) >= min_raters:
            assigned[members] = True
            clusters.append(members)
    return clusters


def crowd_quality(tp: int, fp: int, fn: int, k: float = 1.0) -> float:
    """Crowd-only quality ``1 - (fp + k·fn) / (2·tp)``; tp = 0 is treated as 1 to stay finite."""
    return 1.0 - (fp + k * fn) / (2.0 * max(tp, 1))


def score_raters(
    n_points: Sequence[int],
    clusters: Sequence[Sequence[tuple[int, int]]],
    distances: Sequence[Sequence[float]],
    *,
    k: float = 1.0,
) -> list[RaterPointScore]:
    """Score every rater against the clusters; ``distances[c][i]`` is member i's distance to centre c."""
    hits = [0] * len(n_points)
    squared = [0.0] * len(n_points)
    for members, member_distances in zip(clusters, distances, strict=True):
        for (r, _), d in zip(members, member_distances, strict=True):
            hits[r] += 1
            squared[r] += d * d
    scores = []
    for r, n in enumerate(n_points):
        tp, fp, fn = hits[r], n - hits[r], len(clusters) - hits[r]
        scores.append(
            RaterPointScore(
                precision=tp / n if n else 1.0,
                recall=tp / len(clusters) if clusters else 1.0,
                rmse=math.sqrt(squared[r] / tp) if tp else float("nan"),
                quality=crowd_quality(tp, fp, fn, k),
                tp=tp,
                fp=fp,
                fn=fn,
            )
        )
    return scores


def cluster_points(
    points: Sequence[NDArray[Any]], *, radius: float, min_raters: int | None = None, k: float = 1.0
) -> PointClustering:
    """Cluster all raters' clicks into consensus points and score each rater against them.

    ``points[r]`` is rater r's (n_r, 2) array of x, y clicks. A cluster needs at least
    ``min_raters`` distinct raters (default ceil(R / 2)); a rater contributes at most one click
    per cluster. ``k`` weighs missed clusters in the quality score.
    """
    if radius <= 0:
        raise ValueError("radius must be positive")
    needed = default_min_raters(len(points)) if min_raters is None else min_raters
    pooled, rater, index = _pool(points)
    groups = group_by_distance(pooled, rater, radius=radius, min_raters=needed)
    groups.sort(key=lambda g: tuple(pooled[g].mean(axis=0)[::-1]))  # reading order: y, then x
    centres = np.array([pooled[g].mean(axis=0) for g in groups]).reshape(-1, 2)
    members = [[(int(rater[i]), int(index[i])) for i in g] for g in groups]
    distances = [np.linalg.norm(pooled[g] - c, axis=1).tolist() for g, c in zip(groups, centres, strict=True)]
    scores = score_raters([len(np.asarray(p).reshape(-1, 2)) for p in points], members, distances, k=k)
    support = np.array([len(g) for g in groups], np.int64)
    return PointClustering(centres, support, members, scores)
