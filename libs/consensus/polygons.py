"""Object polygon consensus: group the raters' polygons into objects, fuse each group by STAPLE.

Polygons of different raters overlapping by at least ``min_iou`` (intersection over union) can
be one object. Each group is rasterised on a grid around the group (pixel centres at integer
coordinates, even-odd rule, as ``skimage.draw.polygon``; finer than the image for small
objects), fused by binary STAPLE (Warfield, Zou & Wells 2004, see ``staple.py``), traced back
to a polygon along the 0.5 level of the posterior (``skimage.measure.find_contours``) and
simplified (Douglas-Peucker via shapely, ``tolerance`` in image pixels). Raters are scored
per object as for points: precision, recall and the crowd-only quality; ``rmse`` is the root
mean square distance between a member's centroid and the fused polygon's centroid. Each
rater's STAPLE sensitivity and specificity are averaged over the objects they drew.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from crowdseg.consensus._instances import group_instances, pool_instances
from crowdseg.consensus.points import RaterPointScore, default_min_raters, score_raters
from crowdseg.consensus.staple import staple
from numpy.typing import NDArray
from shapely import make_valid
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from skimage.draw import polygon as draw_polygon
from skimage.measure import find_contours

MIN_GRID = 64  # a group's raster has at least this many cells across its larger side
PADDING = 2  # empty cells around the group's raster, so every contour closes


@dataclass(frozen=True)
class PolygonFusion:
    """Consensus polygons ((n, 2) x, y rings, not repeating the first vertex), support, members,
    per-rater object scores and mean STAPLE sensitivity/specificity (nan if the rater is in no group)."""

    polygons: list[NDArray[np.float64]]
    support: NDArray[np.int64]
    members: list[list[tuple[int, int]]]
    raters: list[RaterPointScore]
    sensitivity: NDArray[np.float64]
    specificity: NDArray[np.float64]


@dataclass(frozen=True)
class Grid:
    """A raster frame: cell (i, j) has its centre at image point (x0 + j / scale, y0 + i / scale)."""

    x0: float
    y0: float
    scale: float
    shape: tuple[int, int]

    def to_grid(self, xy: NDArray[np.float64]) -> NDArray[np.float64]:
        return (xy - [self.x0, self.y0]) * self.scale

    def to_image(self, xy: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(xy / self.scale + [self.x0, self.y0], np.float64)


def as_polygon(points: NDArray[Any]) -> BaseGeometry:
    """A valid shapely geometry for an (n, 2) ring (self-intersections repaired)."""
    ring = np.asarray(points, np.float64).reshape(-1, 2)
    return make_valid(Polygon(ring)) if len(ring) >= 3 else Polygon()


def iou_matrix(geometries: Sequence[BaseGeometry]) -> NDArray[np.float64]:
    """Pairwise intersection over union (n, n); bounding boxes that miss skip the exact test."""
    n = len(geometries)
    iou = np.eye(n)
    bounds = np.array([g.bounds if not g.is_empty else (0, 0, -1, -1) for g in geometries]).reshape(-1, 4)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = bounds[i], bounds[j]
            if a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]:
                continue
            union = geometries[i].union(geometries[j]).area
            iou[i, j] = iou[j, i] = geometries[i].intersection(geometries[j]).area / union if union else 0.0
    return iou


def group_grid(rings: Sequence[NDArray[np.float64]]) -> Grid:
    """A grid over the rings' bounding box with `PADDING` empty cells around it."""
    corners = np.concatenate(rings)
    low, high = corners.min(axis=0), corners.max(axis=0)
    scale = max(1.0, MIN_GRID / max(float((high - low).max()), 1e-9))
    origin = low - PADDING / scale
    cells = np.ceil((high - origin) * scale).astype(int) + PADDING + 1
    return Grid(float(origin[0]), float(origin[1]), scale, (int(cells[1]), int(cells[0])))


def rasterize_ring(ring: NDArray[np.float64], grid: Grid) -> NDArray[np.bool_]:
    mask = np.zeros(grid.shape, np.bool_)
    xy = grid.to_grid(ring)
    rows, cols = draw_polygon(xy[:, 1], xy[:, 0], shape=grid.shape)
    mask[rows, cols] = True
    return mask


def trace(probability: NDArray[np.float64], grid: Grid, tolerance: float) -> NDArray[np.float64]:
    """The largest 0.5-level contour of a posterior as a simplified (n, 2) x, y ring in image space."""
    contours = find_contours(probability, 0.5)
    if not contours:
        return np.empty((0, 2))
    rings = [Polygon(c[:, ::-1]) for c in contours if len(c) >= 4]
    if not rings:
        return np.empty((0, 2))
    largest = max(rings, key=lambda ring: ring.area)
    simple = largest.simplify(tolerance * grid.scale, preserve_topology=True)
    return grid.to_image(np.asarray(simple.exterior.coords, np.float64)[:-1])


def fuse_group(
    rings: Sequence[NDArray[np.float64]], *, tolerance: float = 0.5, max_iter: int = 100
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """STAPLE of the rasterised rings; (fused ring, sensitivity, specificity)."""
    grid = group_grid(rings)
    result = staple(np.stack([rasterize_ring(ring, grid) for ring in rings]), max_iter=max_iter)
    return trace(result.probability, grid, tolerance), result.sensitivity, result.specificity


def _centroid_distance(ring: NDArray[np.float64], fused: BaseGeometry) -> float:
    a, b = as_polygon(ring).centroid, fused.centroid
    return math.dist((a.x, a.y), (b.x, b.y)) if not (a.is_empty or b.is_empty) else float("inf")


def _mean_rates(
    raters: int, members: list[list[tuple[int, int]]], rates: list[NDArray[np.float64]]
) -> NDArray[np.float64]:
    total, count = np.zeros(raters), np.zeros(raters)
    for group, values in zip(members, rates, strict=True):
        for (r, _), value in zip(group, values, strict=True):
            total[r] += value
            count[r] += 1
    return np.divide(total, count, out=np.full(raters, np.nan), where=count > 0)


def fuse_polygons(
    polygons: Sequence[Sequence[NDArray[Any]]],
    *,
    min_iou: float = 0.3,
    min_raters: int | None = None,
    tolerance: float = 0.5,
    k: float = 1.0,
) -> PolygonFusion:
    """Group all raters' object polygons and fuse each group into one consensus polygon.

    ``polygons[r]`` is rater r's list of (n_i, 2) x, y rings. A group needs ``min_raters``
    distinct raters (default ceil(R / 2)), holds at most one polygon per rater, and its
    members overlap the seed by at least ``min_iou``.
    """
    if not 0.0 < min_iou <= 1.0:
        raise ValueError("min_iou must be in (0, 1]")
    rings = [[np.asarray(p, np.float64).reshape(-1, 2) for p in shapes] for shapes in polygons]
    shapes, rater, index = pool_instances(rings)
    geometries = [as_polygon(ring) for ring in shapes]
    needed = default_min_raters(len(polygons)) if min_raters is None else min_raters
    groups = group_instances(iou_matrix(geometries), rater, threshold=min_iou, min_raters=needed)
    fusions = [fuse_group([shapes[i] for i in group], tolerance=tolerance) for group in groups]
    keep = [g for g, fusion in enumerate(fusions) if len(fusion[0]) >= 3]
    keep.sort(key=lambda g: tuple(fusions[g][0].mean(axis=0)[::-1]))
    groups, fusions = [groups[g] for g in keep], [fusions[g] for g in keep]
    members = [[(int(rater[i]), int(index[i])) for i in group] for group in groups]
    distances = [
        [_centroid_distance(shapes[i], Polygon(fused)) for i in group]
        for group, (fused, _, _) in zip(groups, fusions, strict=True)
    ]
    scores = score_raters([len(shapes) for shapes in rings], members, distances, k=k)
    return PolygonFusion(
        polygons=[fused for fused, _, _ in fusions],
        support=np.array([len(group) for group in groups], np.int64),
        members=members,
        raters=scores,
        sensitivity=_mean_rates(len(polygons), members, [p for _, p, _ in fusions]),
        specificity=_mean_rates(len(polygons), members, [q for _, _, q in fusions]),
    )
