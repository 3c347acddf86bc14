"""Consensus on stacks (``frames > 1``). Knows nothing about HTTP or Kafka.

Masks: every rater's shapes rasterised frame by frame into one ``(frames, H, W)`` volume, fused by the
same STAPLE as a plain image's masks, in 3-D; the consensus and its probability are stored as NIfTI-1
(crowdseg.volumes). Points and polylines: clustered or fused frame by frame; every consensus object
carries its ``frame``, and consensus points a ``track`` linking them across consecutive frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any

import numpy as np
from crowdseg.access import managed_image
from crowdseg.consensus import RaterPointScore, cluster_points, fuse_polylines, staple, staple_counts
from crowdseg.consensus.points import crowd_quality
from crowdseg.consensus.quality import line_qualities, mask_qualities, point_qualities
from crowdseg.dicom_seg import SEG_MEDIA_TYPE, SegUnavailable, consensus_seg_bytes
from crowdseg.domain import Consensus, Image, RaterScore, Shape, Submission, Task, Tool, User
from crowdseg.errors import Conflict, InvalidInput, NotFound
from crowdseg.geometry import label_map_to_png, mask_to_png, probability_to_png
from crowdseg.ports import BlobStore, Store
from crowdseg.services.consensus import handlers
from crowdseg.volumes import (
    NIFTI_MEDIA_TYPE,
    is_stack,
    link_tracks,
    nifti_bytes,
    nifti_volume,
    rasterize_image,
    rater_volume,
    shapes_by_frame,
)

TRACK_LINK_RADII = 3.0  # a point moves at most this many click radii from one frame to the next


async def stack_consensus(
    blobs: BlobStore, task: Task, image: Image, submissions: list[Submission], options: handlers.StapleOptions
) -> Consensus:
    if task.tool.makes_masks:
        return await _volume_consensus(blobs, task, image, submissions, options)
    if task.tool is Tool.POLYLINE:
        return await handlers._computed(_frame_line_consensus, task, image, submissions)
    return await handlers._computed(_frame_point_consensus, task, image, submissions)


async def _volume_consensus(
    blobs: BlobStore, task: Task, image: Image, submissions: list[Submission], options: handlers.StapleOptions
) -> Consensus:
    def compute() -> tuple[Consensus, bytes, bytes]:
        drawn = [rater_volume(s.shapes, image, interpolate=task.interpolate_frames) for s in submissions]
        masks = np.stack([volume for volume, _ in drawn])
        result = staple(masks, max_iter=options.max_iter, tol=options.tol, region=options.region)
        raters = [
            handlers._with_counts(
                RaterScore(
                    user_id=s.user_id,
                    submission_id=s.id,
                    sensitivity=float(p),
                    specificity=float(q),
                    interpolated_frames=frames if task.interpolate_frames else None,
                ),
                counts,
            )
            for s, p, q, counts, (_, frames) in zip(
                submissions, result.sensitivity, result.specificity, staple_counts(result), drawn, strict=True
            )
        ]
        reference = rasterize_image(image.reference_shapes, image) if handlers.has_reference(image) else None
        raters = handlers._with_qualities(raters, mask_qualities(masks, reference), image)
        consensus = handlers._base(task, image, submissions, "staple-3d", raters)
        consensus.prior, consensus.iterations = float(result.prior), result.iterations
        probability = np.clip(np.rint(result.probability * 255.0), 0, 255)
        return consensus, nifti_bytes(result.consensus(), image), nifti_bytes(probability, image)

    consensus, mask, probability = await handlers._computed(compute)
    prefix = f"consensus/{task.id}/{image.id}/v{consensus.version}"
    consensus.mask_key, consensus.probability_key = f"{prefix}/mask.nii.gz", f"{prefix}/probability.nii.gz"
    await blobs.put_many(
        [(consensus.mask_key, mask, NIFTI_MEDIA_TYPE), (consensus.probability_key, probability, NIFTI_MEDIA_TYPE)]
    )
    return consensus


def _frames_drawn(image: Image, submissions: list[Submission]) -> list[int]:
    drawn = {frame for s in submissions for frame in shapes_by_frame(s.shapes)}
    drawn |= set(shapes_by_frame(image.reference_shapes)) if handlers.has_reference(image) else set()
    return sorted(drawn)


def _points(shapes: Sequence[Shape]) -> np.ndarray[Any, Any]:
    return np.asarray([p for shape in shapes for p in shape.points], dtype=np.float64).reshape(-1, 2)


def _lines(shapes: Sequence[Shape]) -> list[np.ndarray[Any, Any]]:
    return [np.asarray(shape.points, dtype=np.float64).reshape(-1, 2) for shape in shapes]


def _on(frame: int, shapes: Sequence[Shape]) -> list[Shape]:
    return [shape for shape in shapes if (shape.frame or 0) == frame]


def _pooled_scores(per_frame: list[list[RaterPointScore]], raters: int) -> list[RaterPointScore]:
    """Every rater's matches summed over the frames, scored as one image's."""
    scores = []
    for r in range(raters):
        tp, fp, fn = (sum(getattr(frame[r], name) for frame in per_frame) for name in ("tp", "fp", "fn"))
        scores.append(
            RaterPointScore(
                precision=tp / (tp + fp) if tp + fp else 1.0,
                recall=tp / (tp + fn) if tp + fn else 1.0,
                rmse=float("nan"),
                quality=crowd_quality(tp, fp, fn),
                tp=tp,
                fp=fp,
                fn=fn,
            )
        )
    return scores


def _mean_qualities(per_frame: list[list[float | None]], raters: int) -> list[float | None]:
    means: list[float | None] = []
    for r in range(raters):
        values = [frame[r] for frame in per_frame if frame[r] is not None]
        means.append(fmean(v for v in values if v is not None) if values else None)
    return means


def _scored(
    task: Task,
    image: Image,
    submissions: list[Submission],
    method: str,
    scores: list[list[RaterPointScore]],
    qualities: list[list[float | None]],
) -> Consensus:
    raters = handlers._object_scores(submissions, _pooled_scores(scores, len(submissions)))
    raters = handlers._with_qualities(raters, _mean_qualities(qualities, len(submissions)), image)
    return handlers._base(task, image, submissions, method, raters)


def _frame_point_consensus(task: Task, image: Image, submissions: list[Submission]) -> Consensus:
    frames = _frames_drawn(image, submissions)
    drawn = {f: [_points(_on(f, s.shapes)) for s in submissions] for f in frames}
    radius = handlers.click_radius([p for f in frames for p in drawn[f]], image.width, image.height)
    scores: list[list[RaterPointScore]] = []
    qualities: list[list[float | None]] = []
    points: list[dict[str, Any]] = []
    for frame in frames:
        clustering = cluster_points(drawn[frame], radius=radius)
        scores.append(clustering.raters)
        reference = _points(_on(frame, image.reference_shapes)) if handlers.has_reference(image) else None
        qualities.append(point_qualities(drawn[frame], radius, reference))
        points.extend(
            {"x": float(x), "y": float(y), "support": int(n), "frame": frame}
            for (x, y), n in zip(clustering.centres, clustering.support, strict=True)
        )
    centres = np.asarray([(p["x"], p["y"]) for p in points], dtype=np.float64)
    tracks = link_tracks([p["frame"] for p in points], centres, TRACK_LINK_RADII * radius)
    consensus = _scored(task, image, submissions, "point-clustering-per-frame", scores, qualities)
    consensus.radius = radius
    consensus.points = [{**point, "track": track} for point, track in zip(points, tracks, strict=True)]
    return consensus


def _frame_line_consensus(task: Task, image: Image, submissions: list[Submission]) -> Consensus:
    radius = handlers.line_radius(image.width, image.height)
    scores: list[list[RaterPointScore]] = []
    qualities: list[list[float | None]] = []
    lines: list[dict[str, Any]] = []
    for frame in _frames_drawn(image, submissions):
        drawn = [_lines(_on(frame, s.shapes)) for s in submissions]
        fusion = fuse_polylines(drawn, radius=radius)
        scores.append(fusion.raters)
        reference = _lines(_on(frame, image.reference_shapes)) if handlers.has_reference(image) else None
        qualities.append(line_qualities(drawn, radius, reference))
        lines.extend(
            {**handlers._outline(line, int(n)), "frame": frame}
            for line, n in zip(fusion.lines, fusion.support, strict=True)
        )
    centroids = np.asarray([np.mean(line["points"], axis=0) for line in lines], dtype=np.float64)
    tracks = link_tracks([line["frame"] for line in lines], centroids, TRACK_LINK_RADII * radius)
    consensus = _scored(task, image, submissions, "polyline-fusion-per-frame", scores, qualities)
    consensus.radius = radius
    consensus.lines = [{**line, "track": track} for line, track in zip(lines, tracks, strict=True)]
    return consensus


async def consensus_png(
    store: Store,
    blobs: BlobStore,
    user: User,
    image_id: str,
    *,
    probability: bool,
    frame: int | None,
    label: str | None = None,
) -> bytes:
    """The consensus mask (0/255) or probability as PNG: a plain image's as stored, one frame of a stack's.
    For a task with labels the mask is the label map (0 background, i the i-th label), or with ``label``
    that label's mask."""
    image, task, key = await _consensus_key(store, user, image_id, probability=probability, label=label)
    if not is_stack(image):
        if frame:
            raise InvalidInput(f"frame {frame} asked for, but the image is not a stack (no frames)")
        return await blobs.get(key)
    if frame is None:
        raise InvalidInput(
            f"the image is a stack of {image.frames} frames: ask for one with ?frame=k (0 to {image.frames - 1}),"
            " or for the whole volume at mask.nii.gz"
        )
    if frame >= image.frames:
        raise InvalidInput(f"frame {frame} is outside the stack's {image.frames} frames (0 to {image.frames - 1})")
    data = await blobs.get(key)
    label_map = bool(task.labels) and not probability and label is None

    def render() -> bytes:
        pixels = nifti_volume(data)[frame]
        if probability:
            return probability_to_png(pixels / 255.0)
        return label_map_to_png(pixels.astype(np.uint8)) if label_map else mask_to_png(pixels > 0)

    return await handlers._computed(render)


async def consensus_nifti(
    store: Store, blobs: BlobStore, user: User, image_id: str, *, probability: bool, label: str | None = None
) -> bytes:
    """A stack's consensus volume (voxels 0/1; label indices for a task with labels, or with ``label``
    that label's 0/1) or its probability (0–255) as gzipped NIfTI-1."""
    image, _task, key = await _consensus_key(store, user, image_id, probability=probability, label=label)
    if not is_stack(image):
        raise Conflict("the image is not a stack: its consensus is a 2-D mask, at mask.png")
    return await blobs.get(key)


async def _consensus_key(
    store: Store, user: User, image_id: str, *, probability: bool, label: str | None
) -> tuple[Image, Task, str]:
    image, task = await managed_image(store, image_id, user)
    if not task.tool.makes_masks:
        raise Conflict(f"the task's tool is {task.tool.value}: its consensus is points or lines, not a mask")
    found = await store.consensus.get(image.id)
    key = None if found is None else _key(found, task, probability=probability, label=label)
    if key is None:
        raise NotFound("no consensus mask for this image yet")
    return image, task, key


def _key(found: Consensus, task: Task, *, probability: bool, label: str | None) -> str | None:
    if probability:
        return found.probability_key
    if label is not None:
        return (found.label_mask_keys or {}).get(label)
    return found.label_map_key if task.labels else found.mask_key


async def consensus_seg(store: Store, blobs: BlobStore, user: User, image_id: str) -> bytes:
    """The consensus of a DICOM image as a DICOM SEG, made on its first request and then kept beside
    the consensus mask (its UIDs come from the consensus, so racing requests store the same bytes)."""
    image, _ = await managed_image(store, image_id, user)
    if image.source_format != "DICOM":
        raise Conflict(f"the image's source is {image.source_format}, not DICOM: its consensus is at mask.nii.gz")
    _, _, key = await _consensus_key(store, user, image_id, probability=False, label=None)
    found = await store.consensus.get(image.id)
    if found is None:
        raise NotFound("no consensus mask for this image yet")
    seg_key = f"{key.rsplit('/', 1)[0]}/seg.dcm"
    if await blobs.size(seg_key) is not None:
        return await blobs.get(seg_key)
    try:
        data = await consensus_seg_bytes(blobs, image, found)
    except SegUnavailable as exc:
        raise InvalidInput(exc.reason) from exc
    await blobs.put(seg_key, data, SEG_MEDIA_TYPE)
    return data
