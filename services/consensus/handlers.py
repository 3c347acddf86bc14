"""Consensus per image and the performance of every annotator. Knows nothing about HTTP or Kafka."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from statistics import fmean
from typing import Any

import numpy as np
from crowdseg import metrics
from crowdseg.consensus import cluster_points, staple
from crowdseg.domain import Consensus, Image, RaterScore, Submission, Task
from crowdseg.errors import NotFound
from crowdseg.events import ConsensusUpdated
from crowdseg.geometry import mask_to_png, probability_to_png, rasterize
from crowdseg.ports import BlobStore, Store

log = logging.getLogger(__name__)
Notify = Callable[[], None]


@dataclass(frozen=True)
class StapleOptions:
    max_iter: int = 100
    tol: float = 1e-7


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
    else:
        consensus = await asyncio.to_thread(_point_consensus, task, image, submissions)
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
        result = staple(masks, max_iter=options.max_iter, tol=options.tol)
        raters = [
            RaterScore(user_id=s.user_id, submission_id=s.id, sensitivity=float(p), specificity=float(q))
            for s, p, q in zip(submissions, result.sensitivity, result.specificity, strict=True)
        ]
        consensus = _base(task, image, submissions, "staple", raters)
        consensus.prior, consensus.iterations = float(result.prior), result.iterations
        return consensus, mask_to_png(result.consensus()), probability_to_png(result.probability)

    consensus, mask_png, probability_png = await asyncio.to_thread(compute)
    prefix = f"consensus/{task.id}/{image.id}/v{consensus.version}"
    consensus.mask_key, consensus.probability_key = f"{prefix}/mask.png", f"{prefix}/probability.png"
    await blobs.put(consensus.mask_key, mask_png, "image/png")
    await blobs.put(consensus.probability_key, probability_png, "image/png")
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


def _point_consensus(task: Task, image: Image, submissions: list[Submission]) -> Consensus:
    points = [
        np.asarray([p for shape in s.shapes for p in shape.points], dtype=np.float64).reshape(-1, 2)
        for s in submissions
    ]
    radius = click_radius(points, image.width, image.height)
    clustering = cluster_points(points, radius=radius)
    raters = [
        RaterScore(
            user_id=s.user_id,
            submission_id=s.id,
            precision=score.precision,
            recall=score.recall,
            quality=score.quality,
            sensitivity=score.recall,
        )
        for s, score in zip(submissions, clustering.raters, strict=True)
    ]
    consensus = _base(task, image, submissions, "point-clustering", raters)
    consensus.points = [
        {"x": float(x), "y": float(y), "support": int(n)}
        for (x, y), n in zip(clustering.centres, clustering.support, strict=True)
    ]
    return consensus


async def stale_images(store: Store) -> list[str]:
    """Images whose consensus is missing or older than their submissions (for reconciliation)."""
    stale: list[str] = []
    for task in await store.tasks.all():
        counts = await store.submissions.count_by_image(task.id)
        done = {c.image_id: c.submissions for c in await store.consensus.list_for_task(task.id)}
        stale.extend(image_id for image_id, n in counts.items() if done.get(image_id, 0) < n)
    return stale


async def reconcile(store: Store, blobs: BlobStore, *, options: StapleOptions, notify: Notify) -> int:
    """Catch up on every image whose consensus lags its submissions; returns how many were redone."""
    redone = 0
    for image_id in await stale_images(store):
        try:
            if await recompute(store, blobs, image_id, options=options, notify=notify) is not None:
                redone += 1
        except Exception:
            log.exception("reconciling the consensus of image %s failed; the next event retries it", image_id)
    return redone


@dataclass
class RaterTally:
    submissions: int = 0
    sensitivity: list[float] | None = None
    specificity: list[float] | None = None
    quality: list[float] | None = None
    seconds: list[float] | None = None

    def add(self, score: RaterScore) -> None:
        for name in ("sensitivity", "specificity", "quality"):
            value = getattr(score, name)
            if value is not None:
                bucket = getattr(self, name) or []
                bucket.append(float(value))
                setattr(self, name, bucket)


def _mean(values: list[float] | None) -> float | None:
    return round(fmean(values), 6) if values else None


async def rater_tallies(store: Store, task_id: str) -> dict[str, RaterTally]:
    """Running per-user performance over every image of a task."""
    tallies: dict[str, RaterTally] = defaultdict(RaterTally)
    for submission in await store.submissions.list_for_task(task_id):
        tally = tallies[submission.user_id]
        tally.submissions += 1
        if submission.duration_ms is not None:
            tally.seconds = [*(tally.seconds or []), submission.duration_ms / 1000]
    for consensus in await store.consensus.list_for_task(task_id):
        for score in consensus.raters:
            tallies[score.user_id].add(score)
    return tallies


async def task_stats(store: Store, task: Task) -> dict[str, Any]:
    images = await store.images.list_for_task(task.id)
    coverage = await store.submissions.count_by_image(task.id)
    tallies = await rater_tallies(store, task.id)
    names = {u.id: u.name for u in await store.users.all() if u.id in tallies}
    consensus = await store.consensus.list_for_task(task.id)
    return {
        "images": len(images),
        "submissions": sum(coverage.values()),
        "replicates": task.replicates,
        "complete_images": sum(1 for image in images if coverage.get(image.id, 0) >= task.replicates),
        "consensus_images": len(consensus),
        "coverage": {image.id: coverage.get(image.id, 0) for image in images},
        "matrix": {image.id: sorted(image.submitted_by) for image in images},
        "users": [
            {
                "user_id": user_id,
                "name": names.get(user_id, ""),
                "submissions": tally.submissions,
                "sensitivity": _mean(tally.sensitivity),
                "specificity": _mean(tally.specificity),
                "quality": _mean(tally.quality),
                "mean_seconds": _mean(tally.seconds),
            }
            for user_id, tally in sorted(tallies.items())
        ],
    }


async def user_quality(store: Store, user_id: str) -> float | None:
    """The user's mean agreement with the consensus (sensitivity) over everything they did."""
    values: list[float] = []
    for task_id in {s.task_id for s in await store.submissions.list_for_user(user_id)}:
        tally = (await rater_tallies(store, task_id)).get(user_id)
        if tally and tally.sensitivity:
            values.extend(tally.sensitivity)
    return fmean(values) if values else None


async def user_stats(store: Store, user_id: str) -> dict[str, Any]:
    from crowdseg.progress import experience

    submissions = await store.submissions.list_for_user(user_id)
    per_day: dict[str, int] = defaultdict(int)
    for submission in submissions:
        per_day[submission.created_at.date().isoformat()] += 1
    per_task, sensitivities, specificities = [], [], []
    for task_id in sorted({s.task_id for s in submissions}):
        task = await store.tasks.get(task_id)
        tally = (await rater_tallies(store, task_id)).get(user_id, RaterTally())
        sensitivities.extend(tally.sensitivity or [])
        specificities.extend(tally.specificity or [])
        per_task.append(
            {
                "task_id": task_id,
                "title": task.title if task else "",
                "submissions": tally.submissions,
                "images": len(await store.images.list_for_task(task_id)),
                "sensitivity": _mean(tally.sensitivity),
                "specificity": _mean(tally.specificity),
            }
        )
    level, xp = experience(len(submissions), fmean(sensitivities) if sensitivities else None)
    return {
        "submissions": len(submissions),
        "per_task": per_task,
        "per_day": dict(sorted(per_day.items())),
        "sensitivity": _mean(sensitivities),
        "specificity": _mean(specificities),
        "level": level,
        "xp": xp,
    }
