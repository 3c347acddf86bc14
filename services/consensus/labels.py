"""Consensus per label of a task whose shapes carry labels (issue 11). Knows nothing of Kafka or HTTP.

Mask tools with exclusive labels: multi-label STAPLE over every rater's label map (0 background, i the
task's i-th label, 1-based; where one rater's shapes of two labels overlap, the later label wins).
Overlapping labels: one binary STAPLE per label. Points and polylines: clustering per label. Every
label's entry carries its raters' scores on that label; the image's overall consensus stays that of
all shapes whatever their label.

Stacks: the same on the ``(frames, H, W)`` volume (3-D STAPLE, multi-label or per label), each rater's
label volumes filled between their drawn frames where the task interpolates.
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
from crowdseg.volumes import is_stack, rater_volume
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


Raster = Callable[[list[Shape]], tuple[Mask, list[int]]]
"""Shapes to their mask, and the frames filled by interpolation (a stack's volume; none on a plain image)."""


def raster_of(image: Image, *, interpolate: bool = False) -> Raster:
    """A plain image's 2-D rasteriser, or a stack's ``(frames, H, W)`` one (filled between drawn frames
    where ``interpolate``)."""
    if is_stack(image):
        return lambda shapes: rater_volume(shapes, image, interpolate=interpolate)
    return lambda shapes: (rasterize(shapes, image.width, image.height), [])


def rater_label_map(
    shapes: list[Shape], names: list[str], raster: Raster
) -> tuple[NDArray[np.uint8], dict[str, list[int]]]:
    """A rater's label map (where their labels overlap, the later wins) and each label's interpolated frames."""
    masks = {name: raster(labelled(shapes, name)) for name in names}
    label_map = label_map_of({name: mask for name, (mask, _) in masks.items()}, names)
    return label_map, {name: frames for name, (_, frames) in masks.items()}


def label_map_of(masks: dict[str, Mask], names: list[str]) -> NDArray[np.uint8]:
    """Label indices of binary masks; where overlapping labels meet, the later label is shown."""
    label_map = np.zeros(masks[names[0]].shape, dtype=np.uint8)
    for index, name in enumerate(names, start=1):
        label_map[masks[name]] = index
    return label_map


def _reference_mask(image: Image, name: str, reference: bool) -> Mask | None:
    return raster_of(image)(labelled(image.reference_shapes, name))[0] if reference else None


def _rater(submission: Submission, quality: float | None, **scores: float | None) -> dict[str, Any]:
    rounded = {key: None if value is None else round(float(value), 6) for key, value in scores.items()}
    return {"user_id": submission.user_id, **rounded, "quality": None if quality is None else round(quality, 6)}


@dataclass(frozen=True)
class _Raters:
    """Every rater's masks of one label, their scores on it and the frames interpolated for it."""

    masks: Mask
    sensitivity: list[float | None]
    specificity: list[float | None]
    interpolated: list[list[int]] | None = None


def _mask_entry(
    name: str, index: int, consensus: Mask, raters: _Raters, submissions: list[Submission], reference: Mask | None
) -> dict[str, Any]:
    qualities = mask_qualities(raters.masks, reference)
    entries = [
        _rater(s, quality, sensitivity=p, specificity=q)
        for s, quality, p, q in zip(submissions, qualities, raters.sensitivity, raters.specificity, strict=True)
    ]
    if raters.interpolated is not None:
        for entry, frames in zip(entries, raters.interpolated, strict=True):
            entry["interpolated_frames"] = frames
    return {"label": name, "index": index, "pixels": int(consensus.sum()), "raters": entries}


def _grid(image: Image) -> tuple[int, ...]:
    return (image.frames, image.height, image.width) if is_stack(image) else (image.height, image.width)


def exclusive_masks(
    task: Task,
    image: Image,
    submissions: list[Submission],
    settings: StapleSettings,
    reference: bool,
    *,
    interpolate: bool = False,
) -> LabelConsensus:
    names, raster = task.label_names, raster_of(image, interpolate=interpolate)
    maps = [rater_label_map(s.shapes, names, raster) for s in submissions]
    stack = np.stack([label_map for label_map, _ in maps])
    filled = interpolate and is_stack(image)
    drawn = int(stack.max())
    if drawn == 0:
        label_map = np.zeros(_grid(image), dtype=np.uint8)
        sensitivity = np.full((len(submissions), 1), np.nan)
    else:
        result = multilabel_staple(stack, max_iter=settings.max_iter, undecided_label=0)
        label_map = result.consensus().astype(np.uint8)
        sensitivity = result.sensitivity()
    found = LabelConsensus(entries=[], label_map=label_map)
    for index, name in enumerate(names, start=1):
        found.masks[name] = label_map == index
        per_rater = [float(p[index]) if index <= drawn else None for p in sensitivity]
        interpolated = [frames[name] for _, frames in maps] if filled else None
        raters = _Raters(stack == index, per_rater, [None] * len(submissions), interpolated)
        reference_mask = _reference_mask(image, name, reference)
        found.entries.append(_mask_entry(name, index, found.masks[name], raters, submissions, reference_mask))
    return found


def overlapping_masks(
    task: Task,
    image: Image,
    submissions: list[Submission],
    settings: StapleSettings,
    reference: bool,
    *,
    interpolate: bool = False,
) -> LabelConsensus:
    found = LabelConsensus(entries=[])
    raster = raster_of(image, interpolate=interpolate)
    for index, name in enumerate(task.label_names, start=1):
        drawn = [raster(labelled(s.shapes, name)) for s in submissions]
        rater_masks = np.stack([mask for mask, _ in drawn])
        sensitivity: list[float | None] = [None] * len(submissions)
        specificity: list[float | None] = [None] * len(submissions)
        consensus = np.zeros(_grid(image), dtype=np.bool_)
        if rater_masks.any():
            result = staple(rater_masks, max_iter=settings.max_iter, tol=settings.tol, region=settings.region)
            consensus = result.consensus()
            sensitivity, specificity = [float(p) for p in result.sensitivity], [float(q) for q in result.specificity]
        found.masks[name] = consensus
        interpolated = [frames for _, frames in drawn] if interpolate and is_stack(image) else None
        raters = _Raters(rater_masks, sensitivity, specificity, interpolated)
        reference_mask = _reference_mask(image, name, reference)
        found.entries.append(_mask_entry(name, index, consensus, raters, submissions, reference_mask))
    found.label_map = label_map_of(found.masks, task.label_names)
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
