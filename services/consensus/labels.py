"""Consensus per label of a task whose shapes carry labels (issue 11). Knows nothing of Kafka or HTTP.

Mask tools with exclusive labels: multi-label STAPLE over every rater's label map (0 background, i the
task's i-th label, 1-based; where one rater's shapes of two labels overlap, the later label wins).
Overlapping labels: one binary STAPLE per label. Points and polylines: clustering per label. Every
label's entry carries its raters' scores on that label; the image's overall consensus stays that of
all shapes whatever their label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from crowdseg.consensus import cluster_points, fuse_polylines, multilabel_staple, staple
from crowdseg.consensus.quality import line_qualities, mask_qualities, point_qualities
from crowdseg.consensus.staple import Region
from crowdseg.domain import Image, Shape, Submission, Task
from crowdseg.geometry import rasterize
from numpy.typing import NDArray

Mask = NDArray[np.bool_]


@dataclass
class LabelConsensus:
    """Per-label entries for the consensus JSON, and for mask tools the label map and binary masks."""

    entries: list[dict[str, Any]]
    label_map: NDArray[np.uint8] | None = None
    masks: dict[str, Mask] = field(default_factory=dict)


@dataclass(frozen=True)
class StapleSettings:
    max_iter: int
    tol: float
    region: Region


def labelled(shapes: list[Shape], name: str) -> list[Shape]:
    return [shape for shape in shapes if shape.label == name]


def rater_label_map(shapes: list[Shape], names: list[str], width: int, height: int) -> NDArray[np.uint8]:
    label_map = np.zeros((height, width), dtype=np.uint8)
    for index, name in enumerate(names, start=1):
        label_map[rasterize(labelled(shapes, name), width, height)] = index
    return label_map


def label_map_of(masks: dict[str, Mask], names: list[str], width: int, height: int) -> NDArray[np.uint8]:
    """Label indices of binary masks; where overlapping labels meet, the later label is shown."""
    label_map = np.zeros((height, width), dtype=np.uint8)
    for index, name in enumerate(names, start=1):
        label_map[masks[name]] = index
    return label_map


def _reference_mask(image: Image, name: str, reference: bool) -> Mask | None:
    return rasterize(labelled(image.reference_shapes, name), image.width, image.height) if reference else None


def _rater(submission: Submission, quality: float | None, **scores: float | None) -> dict[str, Any]:
    rounded = {key: None if value is None else round(float(value), 6) for key, value in scores.items()}
    return {"user_id": submission.user_id, **rounded, "quality": None if quality is None else round(quality, 6)}


def _mask_entry(
    name: str,
    index: int,
    consensus: Mask,
    rater_masks: Mask,
    submissions: list[Submission],
    sensitivity: list[float | None],
    specificity: list[float | None],
    reference: Mask | None,
) -> dict[str, Any]:
    qualities = mask_qualities(rater_masks, reference)
    raters = [
        _rater(s, quality, sensitivity=p, specificity=q)
        for s, quality, p, q in zip(submissions, qualities, sensitivity, specificity, strict=True)
    ]
    return {"label": name, "index": index, "pixels": int(consensus.sum()), "raters": raters}


def exclusive_masks(
    task: Task, image: Image, submissions: list[Submission], settings: StapleSettings, reference: bool
) -> LabelConsensus:
    names = task.label_names
    stack = np.stack([rater_label_map(s.shapes, names, image.width, image.height) for s in submissions])
    drawn = int(stack.max())
    if drawn == 0:
        label_map = np.zeros((image.height, image.width), dtype=np.uint8)
        sensitivity = np.full((len(submissions), 1), np.nan)
    else:
        result = multilabel_staple(stack, max_iter=settings.max_iter, undecided_label=0)
        label_map = result.consensus().astype(np.uint8)
        sensitivity = result.sensitivity()
    found = LabelConsensus(entries=[], label_map=label_map)
    for index, name in enumerate(names, start=1):
        found.masks[name] = label_map == index
        per_rater = [float(p[index]) if index <= drawn else None for p in sensitivity]
        found.entries.append(
            _mask_entry(
                name,
                index,
                found.masks[name],
                stack == index,
                submissions,
                per_rater,
                [None] * len(submissions),
                _reference_mask(image, name, reference),
            )
        )
    return found


def overlapping_masks(
    task: Task, image: Image, submissions: list[Submission], settings: StapleSettings, reference: bool
) -> LabelConsensus:
    found = LabelConsensus(entries=[])
    for index, name in enumerate(task.label_names, start=1):
        rater_masks = np.stack([rasterize(labelled(s.shapes, name), image.width, image.height) for s in submissions])
        sensitivity: list[float | None] = [None] * len(submissions)
        specificity: list[float | None] = [None] * len(submissions)
        consensus = np.zeros((image.height, image.width), dtype=np.bool_)
        if rater_masks.any():
            result = staple(rater_masks, max_iter=settings.max_iter, tol=settings.tol, region=settings.region)
            consensus = result.consensus()
            sensitivity, specificity = [float(p) for p in result.sensitivity], [float(q) for q in result.specificity]
        found.masks[name] = consensus
        found.entries.append(
            _mask_entry(
                name,
                index,
                consensus,
                rater_masks,
                submissions,
                sensitivity,
                specificity,
                _reference_mask(image, name, reference),
            )
        )
    found.label_map = label_map_of(found.masks, task.label_names, image.width, image.height)
    return found


def _points(shapes: list[Shape]) -> NDArray[np.float64]:
    return np.asarray([p for shape in shapes for p in shape.points], dtype=np.float64).reshape(-1, 2)


def _lines(shapes: list[Shape]) -> list[NDArray[np.float64]]:
    return [np.asarray(shape.points, dtype=np.float64).reshape(-1, 2) for shape in shapes]


Fused = tuple[dict[str, list[dict[str, Any]]], list[Any], list[float | None]]
"""A label's objects (``points`` or ``lines``), its raters' precision and recall, and their quality."""


def _per_label(
    task: Task,
    image: Image,
    submissions: list[Submission],
    reference: bool,
    fuse: Callable[[list[list[Shape]], list[Shape] | None], Fused],
) -> LabelConsensus:
    found = LabelConsensus(entries=[])
    for index, name in enumerate(task.label_names, start=1):
        truth = labelled(image.reference_shapes, name) if reference else None
        objects, scores, qualities = fuse([labelled(s.shapes, name) for s in submissions], truth)
        raters = [
            _rater(s, quality, precision=score.precision, recall=score.recall)
            for s, score, quality in zip(submissions, scores, qualities, strict=True)
        ]
        found.entries.append({"label": name, "index": index, **objects, "raters": raters})
    return found


def point_labels(
    task: Task, image: Image, submissions: list[Submission], radius: float, reference: bool
) -> LabelConsensus:
    def fuse(drawn: list[list[Shape]], truth: list[Shape] | None) -> Fused:
        clicks = [_points(shapes) for shapes in drawn]
        clustering = cluster_points(clicks, radius=radius)
        points = [
            {"x": float(x), "y": float(y), "support": int(n)}
            for (x, y), n in zip(clustering.centres, clustering.support, strict=True)
        ]
        qualities = point_qualities(clicks, radius, None if truth is None else _points(truth))
        return {"points": points}, list(clustering.raters), qualities

    return _per_label(task, image, submissions, reference, fuse)


def line_labels(
    task: Task, image: Image, submissions: list[Submission], radius: float, reference: bool
) -> LabelConsensus:
    def fuse(drawn: list[list[Shape]], truth: list[Shape] | None) -> Fused:
        lines = [_lines(shapes) for shapes in drawn]
        fusion = fuse_polylines(lines, radius=radius)
        fused = [
            {"points": [[round(float(x), 3), round(float(y), 3)] for x, y in line], "support": int(n)}
            for line, n in zip(fusion.lines, fusion.support, strict=True)
        ]
        qualities = line_qualities(lines, radius, None if truth is None else _lines(truth))
        return {"lines": fused}, list(fusion.raters), qualities

    return _per_label(task, image, submissions, reference, fuse)
