"""Consensus per image and the performance of every annotator. Knows nothing about HTTP or Kafka."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import fmean
from typing import Any, TypeVar

import numpy as np
from crowdseg import metrics
from crowdseg.access import managed_image
from crowdseg.consensus import (
    Counts,
    Performance,
    PerformanceTracker,
    RaterPointScore,
    cluster_points,
    fuse_polygons,
    fuse_polylines,
    object_counts,
    staple,
    staple_counts,
)
from crowdseg.consensus.certainty import agreement_certainty, retires
from crowdseg.consensus.metrics import dice, jaccard, modified_hausdorff, sensitivity_specificity
from crowdseg.consensus.quality import (
    SCORING,
    FlagRule,
    Matching,
    click_radius,
    flagged,
    line_qualities,
    line_radius,
    mask_qualities,
    match_line_sets,
    match_point_sets,
    point_qualities,
)
from crowdseg.consensus.quality import screened_out as screen
from crowdseg.consensus.staple import Region
from crowdseg.counters import Tally, counters_of
from crowdseg.domain import Consensus, Image, RaterScore, Shape, Submission, Task, Tool, User, utcnow
from crowdseg.errors import NotFound
from crowdseg.events import ConsensusUpdated, ImageReferenced
from crowdseg.geometry import label_map_to_png, mask_to_png, probability_to_png, rasterize, validate_shapes
from crowdseg.migrations import CONSENSUS_RECONCILED
from crowdseg.ports import BlobStore, Store
from crowdseg.services.consensus import labels
from crowdseg.volumes import (
    NIFTI_MEDIA_TYPE,
    image_mask,
    is_stack,
    nifti_bytes,
    rater_volume,
    shapes_by_frame,
    stored_mask,
)
from crowdseg.watermark import Watermark

log = logging.getLogger(__name__)
RECONCILED = CONSENSUS_RECONCILED
# Consensus compute has threads of its own: in the embedded profile it shares the process with the
# request path, whose short CPU hops (validating and rasterising a submission) must not queue behind
# a backlog of recomputations in the default pool.
_COMPUTE = ThreadPoolExecutor(2, thread_name_prefix="consensus")
T = TypeVar("T")


async def _computed(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_COMPUTE, function, *args)


Notify = Callable[[], None]


@dataclass(frozen=True)
class StapleOptions:
    max_iter: int = 100
    tol: float = 1e-7
    # Rates estimated over the disagreement band with a margin: crowd outlines carry boundary noise,
    # under which whole-image STAPLE over-segments and union STAPLE under-segments; over the band a
    # crowd of good raters gets its majority and bad raters little say (crowdseg.consensus.staple,
    # bench/consensus_accuracy). Reported sensitivity and specificity are over the whole image.
    region: Region = "band"
    concurrency: int = 2  # images of a batch computed at once (crowdseg.services.consensus.recompute_many)


async def recompute(
    store: Store, blobs: BlobStore, image_id: str, *, options: StapleOptions, notify: Notify
) -> Consensus | None:
    """Recompute one image's consensus from all its submissions; idempotent.

    Returns the new consensus, or None when the stored one already includes every submission.
    """
    outcome = (await recompute_many(store, blobs, [image_id], options=options, notify=notify))[image_id]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


async def recompute_many(
    store: Store, blobs: BlobStore, image_ids: Iterable[str], *, options: StapleOptions, notify: Notify
) -> dict[str, Consensus | BaseException | None]:
    """Recompute several images' consensus, each once (a burst of events for one image is one
    recomputation with all its submissions), as :func:`recompute` does one: the outcome per image.

    Up to ``options.concurrency`` images are computed at once. Their blobs are written together, in one
    store call (one sync of the files in the embedded profile), before any consensus that names them is
    saved; should that write fail, every image of the batch fails with it.
    """
    wanted = list(dict.fromkeys(image_ids))
    staged = _StagedBlobs(blobs)
    limit = asyncio.Semaphore(options.concurrency)

    async def draft(image_id: str) -> _Draft | None:
        async with limit:
            return await _draft(store, staged, image_id, options)

    drafts = await asyncio.gather(*(draft(image_id) for image_id in wanted), return_exceptions=True)
    outcomes: dict[str, Consensus | BaseException | None] = {}
    try:
        await staged.write()
    except Exception as exc:
        return {image_id: exc if isinstance(d, _Draft) else d for image_id, d in zip(wanted, drafts, strict=True)}
    for image_id, drafted in zip(wanted, drafts, strict=True):
        if not isinstance(drafted, _Draft):
            outcomes[image_id] = drafted
            continue
        try:
            outcomes[image_id] = await _persist(store, drafted)
        except Exception as exc:
            outcomes[image_id] = exc
    if any(isinstance(outcome, Consensus) for outcome in outcomes.values()):
        notify()
    return outcomes


@dataclass
class _Draft:
    """A consensus computed, its blobs staged, not yet saved."""

    image: Image
    consensus: Consensus


async def _draft(store: Store, blobs: BlobStore, image_id: str, options: StapleOptions) -> _Draft | None:
    image = await store.images.get(image_id)
    if image is None:
        raise NotFound(f"image {image_id} not found")
    task = await store.tasks.get(image.task_id)
    if task is None:
        raise NotFound(f"task {image.task_id} not found")
    every = await store.submissions.list_for_image(image_id)
    submissions = counted_submissions(every)
    reviews = review_revisions(every)
    stored = await store.consensus.get(image_id)
    if not submissions or (
        stored is not None
        and stored.reviews >= reviews
        and stored.submissions >= len(submissions)
        and stored.reference_version >= image.reference_version
        and stored.scoring >= SCORING
        and stored.screening_revision >= task.screening_revision
    ):
        return None
    fused = fused_submissions(submissions, await screened_out(store, task))
    started = time.perf_counter()
    if is_stack(image):
        from crowdseg.services.consensus.volumes import stack_consensus  # it builds on this module

        consensus = await stack_consensus(blobs, task, image, fused, options)
    elif task.tool.makes_masks:
        consensus = await _mask_consensus(blobs, task, image, fused, options)
    elif task.tool is Tool.POLYLINE:
        consensus = await _computed(_line_consensus, task, image, fused)
    else:
        consensus = await _computed(_point_consensus, task, image, fused)
    if task.labels and (task.tool.makes_masks or not is_stack(image)):  # points per label per frame: not yet
        await _add_label_consensus(blobs, task, image, fused, consensus, options)
    metrics.CONSENSUS_SECONDS.labels(consensus.method).observe(time.perf_counter() - started)
    if len(fused) == len(submissions):  # nobody screened out: nothing to compute, no thread hop
        consensus = _with_screened_out(task, image, consensus, submissions, fused)
    else:
        consensus = await _computed(_with_screened_out, task, image, consensus, submissions, fused)
    consensus.reviews = reviews
    _retire_if_certain(task, consensus, len(submissions))
    event = ConsensusUpdated(
        task_id=task.id,
        image_id=image.id,
        version=consensus.version,
        submissions=consensus.submissions,
        method=consensus.method,
        mask_key=consensus.mask_key,
        probability_key=consensus.probability_key,
        certainty=consensus.certainty,
        retired=consensus.retired,
    )
    consensus.outbox = [event.pending()]
    return _Draft(image, consensus)


async def _persist(store: Store, draft: _Draft) -> Consensus | None:
    image, consensus = draft.image, draft.consensus
    if not await store.consensus.save_if_newer(consensus):
        return None
    # After the consensus: a crash in between leaves an image open that could have retired, never the reverse.
    # Only recomputations write these two fields, so an unchanged pair needs no read and no write.
    if (image.certainty, image.retired) != (consensus.certainty, consensus.retired):
        await store.images.set_certainty(image.id, consensus.certainty, retired=consensus.retired)
    return consensus


class _StagedBlobs:
    """The blob store as a batch of recomputations sees it: what they put is kept back and written in
    one call by :meth:`write`; everything else goes straight to the store."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._staged: list[tuple[str, bytes, str]] = []

    async def write(self) -> None:
        staged, self._staged = self._staged, []
        if staged:
            await self._blobs.put_many(staged)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        self._staged.append((key, data, content_type))

    async def put_many(self, objects: Sequence[tuple[str, bytes, str]]) -> None:
        self._staged.extend(objects)

    async def open(self) -> None:
        await self._blobs.open()

    async def ping(self) -> None:
        await self._blobs.ping()

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        await self._blobs.put_file(key, path, content_type)

    async def get(self, key: str) -> bytes:
        return await self._blobs.get(key)

    def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        return self._blobs.stream(key, chunk_size)

    async def size(self, key: str) -> int | None:
        return await self._blobs.size(key)

    async def delete(self, key: str) -> None:
        await self._blobs.delete(key)

    async def close(self) -> None:
        await self._blobs.close()


def _retire_if_certain(task: Task, consensus: Consensus, submissions: int) -> None:
    """Adaptive replicates: the consensus's certainty (the raters' median agreement) and whether the
    image retires with it."""
    consensus.certainty = agreement_certainty([r.quality for r in consensus.raters if not r.excluded])
    consensus.retired = task.adaptive_confidence is not None and retires(
        consensus.certainty, submissions, min_replicates=task.retire_after, confidence=task.confidence
    )


def _label_consensus(
    task: Task, image: Image, submissions: list[Submission], consensus: Consensus, options: StapleOptions
) -> labels.LabelConsensus:
    reference = has_reference(image)
    if task.tool.makes_masks:
        settings = labels.StapleSettings(options.max_iter, options.tol, options.region)
        per_label = labels.exclusive_masks if task.labels_exclusive else labels.overlapping_masks
        return per_label(task, image, submissions, settings, reference, interpolate=task.interpolate_frames)
    radius = consensus.radius or line_radius(image.width, image.height)
    per_object = labels.line_labels if task.tool is Tool.POLYLINE else labels.point_labels
    return per_object(task, image, submissions, radius, reference)


async def _add_label_consensus(
    blobs: BlobStore,
    task: Task,
    image: Image,
    submissions: list[Submission],
    consensus: Consensus,
    options: StapleOptions,
) -> None:
    """A labelled task's consensus per label; masks stored beside the overall consensus mask (PNG, or
    on a stack NIfTI-1 volumes: the label map's voxels are label indices)."""
    found = await _computed(_label_consensus, task, image, submissions, consensus, options)
    consensus.labels = found.entries
    if found.label_map is None:
        return
    label_map = found.label_map
    stack = is_stack(image)
    extension, media_type = ("nii.gz", NIFTI_MEDIA_TYPE) if stack else ("png", "image/png")

    def encoded() -> tuple[bytes, dict[str, bytes]]:
        if stack:
            return nifti_bytes(label_map, image), {n: nifti_bytes(m, image) for n, m in found.masks.items()}
        return label_map_to_png(label_map), {n: mask_to_png(m) for n, m in found.masks.items()}

    map_data, mask_data = await _computed(encoded)
    prefix = f"consensus/{task.id}/{image.id}/v{consensus.version}"
    consensus.label_map_key = f"{prefix}/labels.{extension}"
    consensus.label_mask_keys = {n: f"{prefix}/label-{i}.{extension}" for i, n in enumerate(found.masks, start=1)}
    await blobs.put_many(
        [
            (consensus.label_map_key, map_data, media_type),
            *((consensus.label_mask_keys[n], data, media_type) for n, data in mask_data.items()),
        ]
    )


def counted_submissions(submissions: list[Submission]) -> list[Submission]:
    """The submissions a consensus is made of: all but the rejected ones and the gold answers (scored
    against the reference when they were made), oldest first."""
    return sorted((s for s in submissions if not s.rejected and s.gold is None), key=lambda s: (s.created_at, s.id))


def review_revisions(submissions: list[Submission]) -> int:
    """How many review changes the image's submissions have seen: it only grows, so a consensus after
    a review is newer than one before it, although it has fewer submissions."""
    return sum(s.review_revision for s in submissions)


async def screened_out(store: Store, task: Task) -> frozenset[str]:
    """The raters left out of the task's consensus: those the screening leaves out (task-wide quality
    below ``min_quality``, with at least as many images behind it as a flag needs:
    crowdseg.consensus.quality.screened_out) and those excluded by hand, less those admitted by hand."""
    screened: set[str] = set()
    if task.screening is not None:
        tallies = await store.counters.tallies_for_task(task.id)
        qualities = {t.user_id: (t.quality, t.quality_images) for t in tallies}
        screened = screen(qualities, task.screening.min_quality, FLAG_RULE)
    return frozenset((screened | set(task.excluded_users)) - set(task.admitted_users))


def fused_submissions(submissions: list[Submission], excluded: frozenset[str]) -> list[Submission]:
    """The submissions the consensus fuses: all but the screened-out raters' (all of them, should
    screening leave none)."""
    kept = [s for s in submissions if s.user_id not in excluded]
    return kept or submissions


def _with_screened_out(
    task: Task, image: Image, consensus: Consensus, submissions: list[Submission], fused: list[Submission]
) -> Consensus:
    """The consensus of ``fused`` with the screened-out raters added as ``excluded`` raters. Their
    quality is their agreement with all the other raters, as without screening, so that leaving
    them out never changes the evidence that left them out."""
    consensus.screening_revision = task.screening_revision
    kept = {s.id for s in fused}
    if len(kept) == len(submissions):
        return consensus
    qualities = _all_qualities(task, image, submissions, consensus.radius)
    basis = "reference" if has_reference(image) else "crowd"
    consensus.raters = consensus.raters + [
        RaterScore(user_id=s.user_id, submission_id=s.id, quality=q, quality_basis=basis, excluded=True)
        for s, q in zip(submissions, qualities, strict=True)
        if s.id not in kept
    ]
    consensus.submissions = len(submissions)  # how many it saw: a later one with as many is no newer
    return consensus


def _all_qualities(task: Task, image: Image, submissions: list[Submission], radius: float | None) -> list[float | None]:
    """Every rater's quality among all of ``submissions`` (or against the image's reference)."""
    reference = has_reference(image)
    if task.tool.makes_masks:
        # a stack's raters as its consensus sees them: volumes (filled where the task interpolates)
        masks = np.stack([rater_mask(s.shapes, image, task) for s in submissions])
        truth = image_mask(image.reference_shapes, image) if reference else None
        return mask_qualities(masks, truth)
    if task.tool is Tool.POLYLINE:
        lines = [_shape_points(s) for s in submissions]
        line_truth = reference_lines(image) if reference else None
        return line_qualities(lines, radius or line_radius(image.width, image.height), line_truth)
    points = [np.concatenate([*_shape_points(s), np.empty((0, 2))]) for s in submissions]
    radius = radius or click_radius(points, image.width, image.height)
    return point_qualities(points, radius, reference_points(image) if reference else None)


def rater_mask(shapes: list[Shape], image: Image, task: Task) -> np.ndarray[Any, Any]:
    """A rater's mask: a plain image's, or a stack's volume (filled between drawn frames if the task says so)."""
    if is_stack(image):
        return rater_volume(shapes, image, interpolate=task.interpolate_frames)[0]
    return rasterize(shapes, image.width, image.height)


async def set_reference(
    store: Store,
    blobs: BlobStore,
    user: User,
    image_id: str,
    shapes: list[Shape],
    *,
    max_points: int,
    options: StapleOptions,
    notify: Notify,
) -> Image:
    """Store an expert reference for an image of a task the user manages, then rescore the image's
    consensus against it (its raters' ``quality`` becomes agreement with the reference)."""
    image, task = await managed_image(store, image_id, user)
    valid = validate_shapes(
        shapes,
        tool=task.tool,
        width=image.width,
        height=image.height,
        frames=image.frames,
        max_shapes=task.max_shapes,
        max_points=max_points,
        labels=task.label_names,
    )
    referenced = ImageReferenced(
        task_id=task.id, image_id=image.id, reference=bool(valid), tutorial=image.tutorial, frames=image.frames
    )
    stored = await store.images.set_reference(image.id, valid, by=user.id, at=utcnow(), event=referenced.pending())
    notify()
    if stored is None:
        raise NotFound(f"image {image_id} not found")
    if not stored.tutorial:
        await recompute(store, blobs, stored.id, options=options, notify=notify)
    return stored


def _base(task: Task, image: Image, submissions: list[Submission], method: str, raters: list[RaterScore]) -> Consensus:
    return Consensus(
        image_id=image.id,
        task_id=task.id,
        version=len(submissions),
        submissions=len(submissions),
        submission_ids=[s.id for s in submissions],
        method=method,
        tool=task.tool,
        raters=raters,
        reference_version=image.reference_version,
        scoring=SCORING,
    )


def _with_qualities(raters: list[RaterScore], qualities: list[float | None], image: Image) -> list[RaterScore]:
    basis = "reference" if has_reference(image) else "crowd"
    return [
        rater if quality is None else rater.model_copy(update={"quality": quality, "quality_basis": basis})
        for rater, quality in zip(raters, qualities, strict=True)
    ]


def has_reference(image: Image) -> bool:
    """An expert reference the image's raters are scored against (tutorial images are not in the stream)."""
    return not image.tutorial and bool(image.reference_shapes)


async def _mask_consensus(
    blobs: BlobStore, task: Task, image: Image, submissions: list[Submission], options: StapleOptions
) -> Consensus:
    def compute() -> tuple[Consensus, bytes, bytes]:
        masks = np.stack([rasterize(s.shapes, image.width, image.height) for s in submissions])
        result = staple(masks, max_iter=options.max_iter, tol=options.tol, region=options.region)
        raters = [
            _with_counts(
                RaterScore(user_id=s.user_id, submission_id=s.id, sensitivity=float(p), specificity=float(q)), counts
            )
            for s, p, q, counts in zip(
                submissions, result.sensitivity, result.specificity, staple_counts(result), strict=True
            )
        ]
        reference = rasterize(image.reference_shapes, image.width, image.height) if has_reference(image) else None
        raters = _with_qualities(raters, mask_qualities(masks, reference), image)
        consensus = _base(task, image, submissions, "staple", raters)
        consensus.prior, consensus.iterations = float(result.prior), result.iterations
        if task.tool is Tool.POLYGON:
            try:
                _add_object_polygons(consensus, submissions)
            except Exception:  # the pixel consensus stands on its own; object outlines are an extra
                log.exception("fusing the object polygons of image %s failed", image.id)
        return consensus, mask_to_png(result.consensus()), probability_to_png(result.probability)

    consensus, mask_png, probability_png = await _computed(compute)
    prefix = f"consensus/{task.id}/{image.id}/v{consensus.version}"
    consensus.mask_key, consensus.probability_key = f"{prefix}/mask.png", f"{prefix}/probability.png"
    await blobs.put_many(
        [(consensus.mask_key, mask_png, "image/png"), (consensus.probability_key, probability_png, "image/png")]
    )
    return consensus


def _with_counts(score: RaterScore, counts: Counts) -> RaterScore:
    """The score carrying this image's counts, which the running performance pools across images."""
    return score.model_copy(update={"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "tn": counts.tn})


def _object_scores(submissions: list[Submission], scores: list[RaterPointScore]) -> list[RaterScore]:
    """Rater scores against consensus objects (points, lines): precision and recall."""
    return [
        _with_counts(
            RaterScore(
                user_id=s.user_id,
                submission_id=s.id,
                precision=score.precision,
                recall=score.recall,
                sensitivity=score.recall,
            ),
            counts,
        )
        for s, score, counts in zip(submissions, scores, object_counts(scores), strict=True)
    ]


def _point_consensus(task: Task, image: Image, submissions: list[Submission]) -> Consensus:
    points = [
        np.asarray([p for shape in s.shapes for p in shape.points], dtype=np.float64).reshape(-1, 2)
        for s in submissions
    ]
    radius = click_radius(points, image.width, image.height)
    clustering = cluster_points(points, radius=radius)
    reference = reference_points(image) if has_reference(image) else None
    raters = _with_qualities(
        _object_scores(submissions, clustering.raters), point_qualities(points, radius, reference), image
    )
    consensus = _base(task, image, submissions, "point-clustering", raters)
    consensus.radius = radius
    consensus.points = [
        {"x": float(x), "y": float(y), "support": int(n)}
        for (x, y), n in zip(clustering.centres, clustering.support, strict=True)
    ]
    return consensus


def _shape_points(submission: Submission) -> list[np.ndarray[Any, Any]]:
    return [np.asarray(shape.points, dtype=np.float64).reshape(-1, 2) for shape in submission.shapes]


def _outline(points: np.ndarray[Any, Any], support: int) -> dict[str, Any]:
    return {"points": [[round(float(x), 3), round(float(y), 3)] for x, y in points], "support": support}


def reference_points(image: Image) -> np.ndarray[Any, Any]:
    return np.asarray([p for shape in image.reference_shapes for p in shape.points], dtype=np.float64).reshape(-1, 2)


def reference_lines(image: Image) -> list[np.ndarray[Any, Any]]:
    return [np.asarray(shape.points, dtype=np.float64).reshape(-1, 2) for shape in image.reference_shapes]


def _line_consensus(task: Task, image: Image, submissions: list[Submission]) -> Consensus:
    radius = line_radius(image.width, image.height)
    drawn = [_shape_points(s) for s in submissions]
    fusion = fuse_polylines(drawn, radius=radius)
    reference = reference_lines(image) if has_reference(image) else None
    raters = _with_qualities(
        _object_scores(submissions, fusion.raters), line_qualities(drawn, radius, reference), image
    )
    consensus = _base(task, image, submissions, "polyline-fusion", raters)
    consensus.radius = radius
    consensus.lines = [_outline(line, int(n)) for line, n in zip(fusion.lines, fusion.support, strict=True)]
    return consensus


def _add_object_polygons(consensus: Consensus, submissions: list[Submission]) -> None:
    """Object polygons fused one by one (STAPLE per object), with each rater's object precision and
    recall; the pixel-level sensitivity, specificity and quality stay those of the whole-image masks."""
    fusion = fuse_polygons([_shape_points(s) for s in submissions])
    consensus.polygons = [_outline(ring, int(n)) for ring, n in zip(fusion.polygons, fusion.support, strict=True)]
    consensus.raters = [
        rater.model_copy(update={"precision": score.precision, "recall": score.recall})
        for rater, score in zip(consensus.raters, fusion.raters, strict=True)
    ]


async def stale_images(store: Store) -> list[str]:
    """Images whose consensus is missing, older than their submissions or scored by an older
    :data:`~crowdseg.consensus.quality.SCORING` (for reconciliation)."""
    stale: list[str] = []
    for task in await store.tasks.all():
        counts = await store.submissions.count_by_image(task.id)
        done = {
            c.image_id: c.submissions if c.scoring >= SCORING else 0
            for c in await store.consensus.list_for_task(task.id)
        }
        stale.extend(image_id for image_id, n in counts.items() if done.get(image_id, 0) < n)
    return stale


async def reconcile(store: Store, blobs: BlobStore, *, options: StapleOptions, notify: Notify) -> int:
    """Catch up on every image whose consensus lags its submissions; returns how many were redone.

    Looks only at the images of submissions made since the last clean pass (:mod:`crowdseg.watermark`);
    the first pass, without a watermark, looks at every task.
    """
    began = utcnow()
    watermark = Watermark(store, RECONCILED)
    recent = await watermark.recent_submissions()
    image_ids = await stale_images(store) if recent is None else sorted({s.image_id for s in recent})
    redone, clean = 0, True
    for image_id in image_ids:
        try:
            if await recompute(store, blobs, image_id, options=options, notify=notify) is not None:
                redone += 1
        except Exception:
            clean = False
            log.exception("reconciling the consensus of image %s failed; the next event retries it", image_id)
    if clean:
        await watermark.advance(began)
    return redone + await rescreen(store, blobs, options=options, notify=notify)


def _screened_key(task_id: str) -> str:
    return f"consensus.screened:{task_id}"


async def rescreen(store: Store, blobs: BlobStore, *, options: StapleOptions, notify: Notify) -> int:
    """Rescore every image of the tasks whose screening changed since their last rescoring."""
    redone = 0
    for task in await store.tasks.all():
        done = int(await store.meta.get(_screened_key(task.id)) or 0)
        if task.screening_revision <= done:
            continue
        clean = True
        for image in await store.images.list_for_task(task.id):
            try:
                redone += await recompute(store, blobs, image.id, options=options, notify=notify) is not None
            except Exception:
                clean = False
                log.exception("rescreening the consensus of image %s failed; the next pass retries it", image.id)
        if clean:
            await store.meta.put(_screened_key(task.id), str(task.screening_revision))
    return redone


@dataclass
class RaterTally:
    """One user's running performance over a task: counts pooled across every image (see
    crowdseg.consensus.performance), or per-image rates averaged for documents without counts."""

    submissions: int = 0
    seconds: list[float] | None = None
    performance: Performance = field(default_factory=lambda: Performance(Counts(), 0))
    legacy: dict[str, list[float]] = field(default_factory=dict)
    qualities: list[float] = field(default_factory=list)

    def add_legacy(self, score: RaterScore) -> None:
        for name in ("sensitivity", "specificity"):
            value = getattr(score, name)
            if value is not None:
                self.legacy.setdefault(name, []).append(float(value))

    def rate(self, name: str) -> float | None:
        """The pooled ``sensitivity`` or ``specificity``, else the legacy mean."""
        pooled = getattr(self.performance, name)
        if pooled is not None:
            return float(pooled)
        values = self.legacy.get(name)
        return fmean(values) if values else None

    @property
    def sensitivity(self) -> float | None:
        return self.rate("sensitivity")

    @property
    def specificity(self) -> float | None:
        return self.rate("specificity")

    @property
    def quality(self) -> float | None:
        """The mean of the per-image qualities (crowdseg.consensus.quality); None without any."""
        return fmean(self.qualities) if self.qualities else None


def _counts(score: RaterScore) -> Counts | None:
    if score.tp is None or score.fp is None or score.fn is None:
        return None
    return Counts(score.tp, score.fp, score.fn, score.tn or 0.0)


def pool_scores(consensuses: Iterable[Consensus]) -> tuple[PerformanceTracker, dict[str, list[RaterScore]]]:
    """Every rater's counts over the images, and the scores stored without counts."""
    tracker = PerformanceTracker()
    legacy: dict[str, list[RaterScore]] = defaultdict(list)
    for consensus in consensuses:
        for score in consensus.raters:
            counts = _counts(score)
            if counts is None:
                legacy[score.user_id].append(score)
            else:
                tracker.add(score.user_id, counts)
    return tracker, legacy


def _round(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None


def _mean(values: list[float] | None) -> float | None:
    return round(fmean(values), 6) if values else None


@dataclass(frozen=True)
class CoverageRow:
    image_id: str
    name: str
    submissions: int
    leased: int
    complete: bool
    users: list[str]
    retired: bool = False


def coverage_rows(task: Task, images: Iterable[Image], now: datetime) -> list[CoverageRow]:
    """Who has done each image and how many leases are out on it (from the image documents alone)."""
    return [
        CoverageRow(
            image_id=image.id,
            name=image.name,
            submissions=len(image.submitted_by),
            leased=len(image.active_leases(now)),
            complete=image.retired or len(image.submitted_by) >= task.replicates,
            users=list(image.submitted_by),
            retired=image.retired,
        )
        for image in images
    ]


def _user_row(tally: Tally, name: str, flagged_users: set[str]) -> dict[str, Any]:
    return {
        "user_id": tally.user_id,
        "name": name,
        "submissions": tally.submissions,
        "sensitivity": _round(tally.sensitivity),
        "specificity": _round(tally.specificity),
        "quality": _round(tally.quality),
        "quality_images": tally.quality_images,
        "flagged": tally.user_id in flagged_users,
        "mean_seconds": _round(tally.mean_seconds),
    }


FLAG_RULE = FlagRule()


def flagged_raters(tallies: Iterable[Tally]) -> set[str]:
    """The task's raters whose quality is low with enough evidence (crowdseg.consensus.quality.flagged)."""
    return flagged({t.user_id: (t.quality, t.quality_images) for t in tallies}, FLAG_RULE)


async def flagged_in_task(store: Store, task_id: str) -> set[str]:
    return flagged_raters(await store.counters.tallies_for_task(task_id))


HIDDEN_CONSENSUS_FIELDS = {
    "outbox",
    "mask_key",
    "probability_key",
    "submission_ids",
    "label_map_key",
    "label_mask_keys",
}


def consensus_body(consensus: Consensus, flagged_users: set[str]) -> dict[str, Any]:
    """The consensus as the API answers it: every rater marked ``flagged`` by their task-wide quality."""
    body = consensus.model_dump(mode="json", exclude=HIDDEN_CONSENSUS_FIELDS)
    for rater in body["raters"]:
        rater["flagged"] = rater["user_id"] in flagged_users
    return body


async def task_stats(store: Store, task: Task) -> dict[str, Any]:
    """The task's progress and every annotator's running performance, from the counters the store
    keeps as work arrives (never from the task's images, submissions or consensus documents)."""
    counters = (await counters_of(store, [task.id]))[task.id]
    tallies = [t for t in await store.counters.tallies_for_task(task.id) if not t.empty]
    names = {u.id: u.name for u in await store.users.get_many([t.user_id for t in tallies])}
    complete = counters.complete(task.replicates)
    flagged_users = flagged_raters(tallies)
    excluded = await screened_out(store, task)
    return {
        "images": counters.images,
        "submissions": counters.submissions,
        "replicates": task.replicates,
        "complete": complete,
        "complete_images": complete,
        "consensus_images": counters.consensus_images,
        "coverage": counters.histogram(task.replicates),
        "users": [
            {**_user_row(tally, names.get(tally.user_id, ""), flagged_users), "excluded": tally.user_id in excluded}
            for tally in tallies
        ],
        "flag_rule": {
            "k": FLAG_RULE.k,
            "min_images": FLAG_RULE.min_images,
            "threshold": _round(FLAG_RULE.threshold([t.quality for t in tallies if t.quality is not None])),
        },
    }


def user_quality(tallies: Iterable[Tally]) -> float | None:
    """The user's mean agreement with the consensus (sensitivity) over the tasks they worked on."""
    values = [t.sensitivity for t in tallies if t.submissions and t.sensitivity is not None]
    return fmean(values) if values else None


async def user_stats(store: Store, user_id: str) -> dict[str, Any]:
    """The user's own record, from their per-task tallies (never from their submissions)."""
    from crowdseg.progress import experience

    tallies = [t for t in await store.counters.tallies_for_user(user_id) if t.submissions]
    counters = await counters_of(store, [t.task_id for t in tallies])
    per_day: dict[str, int] = defaultdict(int)
    per_task, sensitivities, specificities = [], [], []
    quality_sum, quality_images = 0.0, 0
    for tally in tallies:
        for day, count in tally.days.items():
            per_day[day] += count
        task = await store.tasks.get(tally.task_id)
        sensitivities.extend([] if tally.sensitivity is None else [tally.sensitivity])
        specificities.extend([] if tally.specificity is None else [tally.specificity])
        per_task.append(
            {
                "task_id": tally.task_id,
                "title": task.title if task else "",
                "submissions": tally.submissions,
                "images": counters[tally.task_id].images,
                "sensitivity": _round(tally.sensitivity),
                "specificity": _round(tally.specificity),
                "quality": _round(tally.quality),
                "quality_images": tally.quality_images,
                "flagged": tally.user_id in await flagged_in_task(store, tally.task_id),
            }
        )
        if tally.quality is not None:
            quality_sum += tally.quality_sum
            quality_images += tally.quality_images
    submissions = sum(t.submissions for t in tallies)
    level, xp = experience(submissions, fmean(sensitivities) if sensitivities else None)
    return {
        "submissions": submissions,
        "per_task": per_task,
        "per_day": dict(sorted(per_day.items())),
        "sensitivity": _mean(sensitivities),
        "specificity": _mean(specificities),
        "quality": _round(quality_sum / quality_images) if quality_images else None,
        "quality_images": quality_images,
        "level": level,
        "xp": xp,
    }


# ----------------------------------------------------------------------------- evaluation
@dataclass
class _Pooled:
    """Matches of objects (points, lines) pooled over images: precision, recall and RMSE of them all."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    squared: float = 0.0
    images: int = 0

    def add(self, matching: Matching) -> None:
        self.tp, self.fp, self.fn = self.tp + matching.tp, self.fp + matching.fp, self.fn + matching.fn
        self.squared += float((matching.distances**2).sum())
        self.images += 1

    def figures(self) -> dict[str, float | None]:
        return {
            "precision": _round(self.tp / (self.tp + self.fp)) if self.tp + self.fp else None,
            "recall": _round(self.tp / (self.tp + self.fn)) if self.tp + self.fn else None,
            "rmse": _round(math.sqrt(self.squared / self.tp)) if self.tp else None,
        }


def mask_figures(found: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> dict[str, float]:
    """Dice, Jaccard, modified Hausdorff distance (pixels, voxels on a stack; the image's diagonal when
    only one mask is empty) and pixel error (the share of the image's pixels on which the masks differ)."""
    mhd = modified_hausdorff(found, truth)
    if math.isinf(mhd):
        mhd = float(np.linalg.norm(truth.shape))
    sensitivity, specificity = sensitivity_specificity(found, truth)
    return {
        "dice": dice(found, truth),
        "jaccard": jaccard(found, truth),
        "mhd": mhd,
        "pixel_error": float(np.count_nonzero(found != truth)) / truth.size,
        "sensitivity": sensitivity,
        "specificity": specificity,
    }


def _mean_of(rows: list[dict[str, float]], names: Iterable[str]) -> dict[str, float | None]:
    return {name: _round(fmean(row[name] for row in rows)) if rows else None for name in names}


def object_matching(tool: Tool, drawn: list[Shape], truth: list[Shape], radius: float) -> Matching:
    """Matches frame by frame (a plain image is one frame), pooled: no object matches one on another frame."""
    drawn_by_frame, truth_by_frame = shapes_by_frame(drawn), shapes_by_frame(truth)
    matchings = [
        _matching_on_one_frame(tool, drawn_by_frame.get(frame, []), truth_by_frame.get(frame, []), radius)
        for frame in sorted(drawn_by_frame.keys() | truth_by_frame.keys()) or [0]
    ]
    return Matching(
        tp=sum(m.tp for m in matchings),
        fp=sum(m.fp for m in matchings),
        fn=sum(m.fn for m in matchings),
        distances=np.concatenate([m.distances for m in matchings]),
    )


def _matching_on_one_frame(tool: Tool, drawn: list[Shape], truth: list[Shape], radius: float) -> Matching:
    if tool is Tool.POINT:
        return match_point_sets(
            np.asarray([p for s in drawn for p in s.points], np.float64).reshape(-1, 2),
            np.asarray([p for s in truth for p in s.points], np.float64).reshape(-1, 2),
            radius,
        )
    return match_line_sets(
        [np.asarray(s.points, np.float64) for s in drawn], [np.asarray(s.points, np.float64) for s in truth], radius
    )


def _consensus_shapes(tool: Tool, consensus: Consensus) -> list[Shape]:
    if tool is Tool.POINT:
        return [Shape(type=Tool.POINT, points=[(p["x"], p["y"])], frame=p.get("frame")) for p in consensus.points or []]
    return [
        Shape(type=Tool.POLYLINE, points=[tuple(p) for p in line["points"]], frame=line.get("frame"))
        for line in consensus.lines or []
    ]


async def evaluation(store: Store, blobs: BlobStore, task: Task) -> dict[str, Any]:
    """The consensus and every rater against the expert references of the task's images (gold
    images, which have no consensus, count for their raters only).

    Masks: per image Dice, Jaccard, MHD and pixel error of the consensus mask, and Dice, Jaccard,
    sensitivity and specificity of each rater's mask, averaged over the images. Points and polylines:
    one-to-one matches within the radius the consensus used, pooled over the images into precision,
    recall and the RMSE of the matched distances.
    """
    images = [i for i in await store.images.list_for_task(task.id) if has_reference(i)]
    per_image: list[dict[str, Any]] = []
    consensus_rows: list[dict[str, float]] = []
    rater_rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    consensus_pool = _Pooled()
    rater_pools: defaultdict[str, _Pooled] = defaultdict(_Pooled)
    for image in images:
        consensus = await store.consensus.get(image.id)
        if consensus is None:
            await _add_gold_raters(store, task, image, rater_rows, rater_pools)
            continue
        submissions = await store.submissions.list_for_image(image.id)
        if task.tool.makes_masks:
            if consensus.mask_key is None:
                continue
            mask_png = await blobs.get(consensus.mask_key)

            def compute(
                image: Image = image, mask_png: bytes = mask_png, submissions: list[Submission] = submissions
            ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
                truth = image_mask(image.reference_shapes, image)
                found = stored_mask(mask_png, image)
                raters = {s.user_id: mask_figures(rater_mask(s.shapes, image, task), truth) for s in submissions}
                return mask_figures(found, truth), raters

            figures, raters = await _computed(compute)
            consensus_rows.append(figures)
            for user_id, row in raters.items():
                rater_rows[user_id].append(row)
            per_image.append({"image_id": image.id, "name": image.name, **_mean_of([figures], MASK_CONSENSUS)})
        else:
            radius = consensus.radius or (
                line_radius(image.width, image.height)
                if task.tool is Tool.POLYLINE
                else click_radius([reference_points(image)], image.width, image.height)
            )
            matching = object_matching(
                task.tool, _consensus_shapes(task.tool, consensus), image.reference_shapes, radius
            )
            consensus_pool.add(matching)
            for s in submissions:
                rater_pools[s.user_id].add(object_matching(task.tool, s.shapes, image.reference_shapes, radius))
            single = _Pooled()
            single.add(matching)
            per_image.append({"image_id": image.id, "name": image.name, "radius": _round(radius), **single.figures()})
    if task.tool.makes_masks:
        return {
            "images": len(consensus_rows),
            "consensus": _mean_of(consensus_rows, MASK_CONSENSUS),
            "raters": [
                {"user_id": user_id, "images": len(rows), **_mean_of(rows, MASK_RATER)}
                for user_id, rows in sorted(rater_rows.items())
            ],
            "per_image": per_image,
        }
    return {
        "images": consensus_pool.images,
        "consensus": consensus_pool.figures(),
        "raters": [
            {"user_id": user_id, "images": pool.images, **pool.figures()}
            for user_id, pool in sorted(rater_pools.items())
        ],
        "per_image": per_image,
    }


async def _add_gold_raters(
    store: Store,
    task: Task,
    image: Image,
    rater_rows: dict[str, list[dict[str, float]]],
    rater_pools: defaultdict[str, _Pooled],
) -> None:
    """A gold image has no consensus, but its gold answers still measure their raters against the reference."""
    gold = [s for s in await store.submissions.list_for_image(image.id) if s.gold is not None]
    if not gold:
        return
    if task.tool.makes_masks:

        def compute() -> list[tuple[str, dict[str, float]]]:
            truth = image_mask(image.reference_shapes, image)
            return [(s.user_id, mask_figures(image_mask(s.shapes, image), truth)) for s in gold]

        for user_id, row in await _computed(compute):
            rater_rows[user_id].append(row)
        return
    radius = (
        line_radius(image.width, image.height)
        if task.tool is Tool.POLYLINE
        else click_radius([reference_points(image)], image.width, image.height)
    )
    for s in gold:
        rater_pools[s.user_id].add(object_matching(task.tool, s.shapes, image.reference_shapes, radius))


MASK_CONSENSUS = ("dice", "jaccard", "mhd", "pixel_error")
MASK_RATER = ("dice", "jaccard", "sensitivity", "specificity")
