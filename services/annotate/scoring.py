"""Scoring a qualification attempt or a gold answer against the image's reference annotation."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
from crowdseg.consensus import boundary_points, dice, jaccard, modified_hausdorff
from crowdseg.consensus.quality import click_radius, line_qualities, line_radius, mask_qualities, point_qualities
from crowdseg.domain import GoldScore, Metric, Shape, Tool
from crowdseg.geometry import rasterize
from skimage.draw import disk, line

MARK_RADIUS = 5  # points and lines are compared as 5-pixel-wide marks


def score(metric: Metric, tool: Tool, drawn: list[Shape], reference: list[Shape], width: int, height: int) -> float:
    if metric is Metric.MHD:
        return _mhd(tool, drawn, reference, width, height)
    mine, theirs = _marks(tool, drawn, width, height), _marks(tool, reference, width, height)
    return dice(mine, theirs) if metric is Metric.DICE else jaccard(mine, theirs)


def gold_score(
    metric: Metric, tool: Tool, drawn: list[Shape], reference: list[Shape], width: int, height: int
) -> GoldScore:
    """A gold answer's score in the task's metric, and its quality: the agreement in 0–1 that a
    consensus would give it against the same reference (crowdseg.consensus.quality), so that gold
    answers and reference-scored consensus images pool into one ``quality``."""
    value = score(metric, tool, drawn, reference, width, height)
    return GoldScore(metric=metric, score=round(value, 6), quality=_quality(tool, drawn, reference, width, height))


def _quality(tool: Tool, drawn: list[Shape], reference: list[Shape], width: int, height: int) -> float | None:
    if tool.makes_masks:
        masks = rasterize(drawn, width, height)[None]
        return mask_qualities(masks, rasterize(reference, width, height))[0]
    lines = [np.asarray(shape.points, dtype=np.float64).reshape(-1, 2) for shape in reference]
    mine = [np.asarray(shape.points, dtype=np.float64).reshape(-1, 2) for shape in drawn]
    if tool is Tool.POLYLINE:
        return line_qualities([mine], line_radius(width, height), lines)[0]
    truth = _point_cloud(reference).reshape(-1, 2)
    return point_qualities([_point_cloud(drawn).reshape(-1, 2)], click_radius([truth], width, height), truth)[0]


def passes(metric: Metric, value: float, threshold: float) -> bool:
    """Overlap metrics pass at or above the threshold; a distance passes at or below it (pixels)."""
    return value <= threshold if metric is Metric.MHD else value >= threshold


def _marks(tool: Tool, shapes: list[Shape], width: int, height: int) -> npt.NDArray[np.bool_]:
    if tool.makes_masks:
        return rasterize(shapes, width, height)
    mask = np.zeros((height, width), dtype=np.bool_)
    for shape in shapes:
        points = np.asarray(shape.points)
        if tool is Tool.POLYLINE:
            for (x0, y0), (x1, y1) in itertools.pairwise(points):
                rows, cols = line(round(y0), round(x0), round(y1), round(x1))
                keep = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
                mask[rows[keep], cols[keep]] = True
        for x, y in points if tool is Tool.POINT else []:
            rows, cols = disk((y, x), MARK_RADIUS, shape=(height, width))
            mask[rows, cols] = True
    if tool is Tool.POLYLINE:
        from scipy.ndimage import binary_dilation

        mask = binary_dilation(mask, iterations=MARK_RADIUS // 2)
    return mask


def _mhd(tool: Tool, drawn: list[Shape], reference: list[Shape], width: int, height: int) -> float:
    if tool.makes_masks:
        mine, theirs = (
            boundary_points(rasterize(drawn, width, height)),
            boundary_points(rasterize(reference, width, height)),
        )
    else:
        mine, theirs = _point_cloud(drawn), _point_cloud(reference)
    # Nothing against something is as far apart as the image allows (an outline too small to cover a
    # pixel centre rasterises to nothing), never an infinite distance.
    if not len(mine) or not len(theirs):
        return float(np.hypot(width, height)) if len(mine) or len(theirs) else 0.0
    return modified_hausdorff(mine, theirs)


def _point_cloud(shapes: list[Shape]) -> npt.NDArray[np.float64]:
    return np.asarray([point for shape in shapes for point in shape.points], dtype=np.float64)
