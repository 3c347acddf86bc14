"""Polyline consensus: group the raters' lines into objects and fuse each group into one line.

Every line is resampled at ``samples`` points equally spaced along its arc length, so two lines
compare point by point; a line drawn the other way round is reversed first. Lines closer than
``radius`` (mean distance between corresponding samples) can be one object; a group is fused
into the mean of its aligned, resampled members (the "consensus outline" of the crowd-worker
portal in DESIGN.md's second paper). Raters are scored as for points (``points.score_raters``):
a line in a group is a true positive, a line in none a false positive, a group without the
rater's line a false negative; ``rmse`` is the root mean square of the member-to-fused distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from crowdseg.consensus._instances import group_instances, pool_instances
from crowdseg.consensus.points import RaterPointScore, default_min_raters, score_raters
from numpy.typing import NDArray

DEFAULT_SAMPLES = 64


@dataclass(frozen=True)
class LineFusion:
    """Consensus lines ((samples, 2) arrays of x, y), distinct-rater support, members, rater scores."""

    lines: list[NDArray[np.float64]]
    support: NDArray[np.int64]
    members: list[list[tuple[int, int]]]
    raters: list[RaterPointScore]


def resample_polyline(points: NDArray[Any], samples: int = DEFAULT_SAMPLES) -> NDArray[np.float64]:
    """``samples`` points equally spaced along the polyline's arc length, both ends included."""
    line = np.asarray(points, np.float64).reshape(-1, 2)
    if len(line) == 0 or samples < 2:
        raise ValueError("a polyline needs at least one point, and at least two samples")
    steps = np.linalg.norm(np.diff(line, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    if arc[-1] == 0:
        return np.repeat(line[:1], samples, axis=0)
    keep = np.r_[True, steps > 0]  # np.interp needs increasing abscissae
    targets = np.linspace(0.0, arc[-1], samples)
    return np.column_stack([np.interp(targets, arc[keep], line[keep, axis]) for axis in (0, 1)])


def aligned(line: NDArray[np.float64], reference: NDArray[np.float64]) -> NDArray[np.float64]:
    """``line`` or its reverse, whichever runs the same way as ``reference`` (both resampled alike)."""
    forward = np.linalg.norm(line - reference, axis=1).mean()
    backward = np.linalg.norm(line[::-1] - reference, axis=1).mean()
    return line if forward <= backward else line[::-1]


def line_distance(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Mean distance between corresponding samples of two resampled lines, in the better direction."""
    return float(np.linalg.norm(aligned(a, b) - b, axis=1).mean())


def distance_matrix(lines: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
    """Pairwise `line_distance` of resampled lines (n, n), vectorised over both directions."""
    if not lines:
        return np.empty((0, 0))
    stack = np.stack(lines)
    forward = np.linalg.norm(stack[:, None] - stack[None], axis=-1).mean(axis=-1)
    backward = np.linalg.norm(stack[:, None, ::-1] - stack[None], axis=-1).mean(axis=-1)
    return np.asarray(np.minimum(forward, backward), np.float64)


def fuse_lines(lines: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
    """Mean of resampled lines after aligning each with the first."""
    reference = lines[0]
    return np.mean([aligned(line, reference) for line in lines], axis=0)


def fuse_polylines(
    polylines: Sequence[Sequence[NDArray[Any]]],
    *,
    radius: float,
    min_raters: int | None = None,
    samples: int = DEFAULT_SAMPLES,
    k: float = 1.0,
) -> LineFusion:
    """Group all raters' polylines into objects and fuse each group into one consensus line.

    ``polylines[r]`` is rater r's list of (n_i, 2) x, y polylines. Lines whose mean distance
    is at most ``radius`` may be grouped; a group needs ``min_raters`` distinct raters
    (default ceil(R / 2)) and holds at most one line per rater. ``k`` weighs misses in the
    crowd-only quality score.
    """
    if radius <= 0:
        raise ValueError("radius must be positive")
    resampled = [[resample_polyline(line, samples) for line in lines] for lines in polylines]
    shapes, rater, index = pool_instances(resampled)
    distance = distance_matrix(shapes)
    needed = default_min_raters(len(polylines)) if min_raters is None else min_raters
    groups = group_instances(-distance, rater, threshold=-radius, min_raters=needed)
    fused = [fuse_lines([shapes[i] for i in group]) for group in groups]
    order = sorted(range(len(groups)), key=lambda g: tuple(fused[g].mean(axis=0)[::-1]))
    groups, fused = [groups[g] for g in order], [fused[g] for g in order]
    members = [[(int(rater[i]), int(index[i])) for i in group] for group in groups]
    distances = [[line_distance(shapes[i], line) for i in group] for group, line in zip(groups, fused, strict=True)]
    scores = score_raters([len(lines) for lines in polylines], members, distances, k=k)
    support = np.array([len(group) for group in groups], np.int64)
    return LineFusion(fused, support, members, scores)
