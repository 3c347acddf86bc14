"""Consensus per image and the performance of every annotator. Knows nothing about HTTP or Kafka."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from statistics import fmean
from typing import Any, TypeVar

import numpy as np
from crowdseg import metrics
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
from crowdseg.consensus.staple import Region
from crowdseg.counters import Tally, counters_of
from crowdseg.domain import Consensus, Image, RaterScore, Submission, Task, Tool, utcnow
from crowdseg.errors import NotFound
from crowdseg.events import ConsensusUpdated
from crowdseg.geometry import mask_to_png, probability_to_png, rasterize
from crowdseg.ports import BlobStore, Store
from crowdseg.watermark import Watermark

log = logging.getLogger(__name__)
RECONCILED = "consensus.reconciled"
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


async def recompute(
    store: Store, blobs: BlobStore, image_id: str, *, options: StapleOptions, notify: Notify
) -> Consensus | None:
    """Recompute one image's consensus from all its submissions; idempotent.

    Returns the new consensus, or None when the stored one already includes every submission.
    """
    image = await store.images.get(image_id)
    if image is None:
        raise NotFound(f"image {image_id} not found")
    task = await store.tasks.get(image.task_id)
    if task is None:
        raise NotFound(f"task {image.task_id} not found")
    submissions = sorted(await store.submissions.list_for_image(image_id), key=lambda s: (s.created_at, s.id))
    stored = await store.consensus.get(image_id)
    if not submissions or (stored is not None and stored.submissions >= len(submissions)):
        return None
    started = time.perf_counter()
    if task.tool.makes_masks:
        consensus = await _mask_consensus(blobs, task, image, submissions, options)
    elif task.tool is Tool.POLYLINE:
        consensus = await _computed(_line_consensus, task, image, submissions)
    else:
        consensus = await _computed(_point_consensus, task, image, submissions)
    metrics.CONSENSUS_SECONDS.labels(consensus.method).observe(time.perf_counter() - started)
    event = ConsensusUpdated(
        task_id=task.id,
        image_id=image.id,
        version=consensus.version,
        submissions=consensus.submissions,
        method=consensus.method,
        mask_key=consensus.mask_key,
        probability_key=consensus.probability_key,
    )
    consensus.outbox = [event.pending()]
    if not await store.consensus.save_if_newer(consensus):
        return None
    notify()
    return consensus


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
    )


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
    await asyncio.gather(
        blobs.put(consensus.mask_key, mask_png, "image/png"),
        blobs.put(consensus.probability_key, probability_png, "image/png"),
    )
    return consensus


def click_radius(points: list[np.ndarray[Any, Any]], width: int, height: int) -> float:
    """Half the typical spacing between one rater's clicks (objects do not overlap), within bounds."""
    spacings = []
    for clicks in points:
        if len(clicks) > 1:
            gaps = np.linalg.norm(clicks[:, None, :] - clicks[None, :, :], axis=-1)
            np.fill_diagonal(gaps, np.inf)
            spacings.append(float(np.median(gaps.min(axis=1))))
    ceiling = 0.05 * min(width, height)
    if not spacings:
        return max(3.0, 0.5 * ceiling)
    return float(np.clip(0.5 * np.median(spacings), 3.0, max(3.0, ceiling)))


def _with_counts(score: RaterScore, counts: Counts) -> RaterScore:
    """The score carrying this image's counts, which the running performance pools across images."""
    return score.model_copy(update={"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "tn": counts.tn})


def _object_scores(submissions: list[Submission], scores: list[RaterPointScore]) -> list[RaterScore]:
    """Rater scores against consensus objects (points, lines): precision, recall, crowd-only quality."""
    return [
        _with_counts(
            RaterScore(
                user_id=s.user_id,
                submission_id=s.id,
                precision=score.precision,
                recall=score.recall,
                quality=score.quality,
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
    consensus = _base(task, image, submissions, "point-clustering", _object_scores(submissions, clustering.raters))
    consensus.points = [
        {"x": float(x), "y": float(y), "support": int(n)}
        for (x, y), n in zip(clustering.centres, clustering.support, strict=True)
    ]
    return consensus


def line_radius(width: int, height: int) -> float:
    """How far apart (mean distance along the line) two raters' lines of one object may lie."""
    return max(3.0, 0.03 * min(width, height))


def _shape_points(submission: Submission) -> list[np.ndarray[Any, Any]]:
    return [np.asarray(shape.points, dtype=np.float64).reshape(-1, 2) for shape in submission.shapes]


def _outline(points: np.ndarray[Any, Any], support: int) -> dict[str, Any]:
    return {"points": [[round(float(x), 3), round(float(y), 3)] for x, y in points], "support": support}


def _line_consensus(task: Task, image: Image, submissions: list[Submission]) -> Consensus:
    fusion = fuse_polylines([_shape_points(s) for s in submissions], radius=line_radius(image.width, image.height))
    consensus = _base(task, image, submissions, "polyline-fusion", _object_scores(submissions, fusion.raters))
    consensus.lines = [_outline(line, int(n)) for line, n in zip(fusion.lines, fusion.support, strict=True)]
    return consensus


def _add_object_polygons(consensus: Consensus, submissions: list[Submission]) -> None:
    """Object polygons fused one by one (STAPLE per object), with each rater's object precision and
    recall; the pixel-level sensitivity and specificity stay those of the whole-image STAPLE."""
    fusion = fuse_polygons([_shape_points(s) for s in submissions])
    consensus.polygons = [_outline(ring, int(n)) for ring, n in zip(fusion.polygons, fusion.support, strict=True)]
    consensus.raters = [
        rater.model_copy(update={"precision": score.precision, "recall": score.recall, "quality": score.quality})
        for rater, score in zip(consensus.raters, fusion.raters, strict=True)
    ]


async def stale_images(store: Store) -> list[str]:
    """Images whose consensus is missing or older than their submissions (for reconciliation)."""
    stale: list[str] = []
    for task in await store.tasks.all():
        counts = await store.submissions.count_by_image(task.id)
        done = {c.image_id: c.submissions for c in await store.consensus.list_for_task(task.id)}
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
        """The crowd-only score over pooled object counts (points, lines); otherwise (polygons,
        whose counts are pixels) the mean of the per-image scores; None for pure masks."""
        if not self.qualities:
            return None
        pooled = self.performance.quality()
        if pooled is not None and self.performance.counts.tn == 0:
            return pooled
        return fmean(self.qualities)


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


def coverage_rows(task: Task, images: Iterable[Image], now: datetime) -> list[CoverageRow]:
    """Who has done each image and how many leases are out on it (from the image documents alone)."""
    return [
        CoverageRow(
            image_id=image.id,
            name=image.name,
            submissions=len(image.submitted_by),
            leased=len(image.active_leases(now)),
            complete=len(image.submitted_by) >= task.replicates,
            users=list(image.submitted_by),
        )
        for image in images
    ]


def _user_row(tally: Tally, name: str) -> dict[str, Any]:
    return {
        "user_id": tally.user_id,
        "name": name,
        "submissions": tally.submissions,
        "sensitivity": _round(tally.sensitivity),
        "specificity": _round(tally.specificity),
        "quality": _round(tally.quality),
        "mean_seconds": _round(tally.mean_seconds),
    }


async def task_stats(store: Store, task: Task) -> dict[str, Any]:
    """The task's progress and every annotator's running performance, from the counters the store
    keeps as work arrives (never from the task's images, submissions or consensus documents)."""
    counters = (await counters_of(store, [task.id]))[task.id]
    tallies = [t for t in await store.counters.tallies_for_task(task.id) if not t.empty]
    names = {u.id: u.name for u in await store.users.get_many([t.user_id for t in tallies])}
    complete = counters.complete(task.replicates)
    return {
        "images": counters.images,
        "submissions": counters.submissions,
        "replicates": task.replicates,
        "complete": complete,
        "complete_images": complete,
        "consensus_images": counters.consensus_images,
        "coverage": counters.histogram(task.replicates),
        "users": [_user_row(tally, names.get(tally.user_id, "")) for tally in tallies],
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
            }
        )
    submissions = sum(t.submissions for t in tallies)
    level, xp = experience(submissions, fmean(sensitivities) if sensitivities else None)
    return {
        "submissions": submissions,
        "per_task": per_task,
        "per_day": dict(sorted(per_day.items())),
        "sensitivity": _mean(sensitivities),
        "specificity": _mean(specificities),
        "level": level,
        "xp": xp,
    }
