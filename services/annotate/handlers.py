"""Submissions and qualification attempts. Knows nothing about HTTP or Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated

from crowdseg.access import managed_image, managed_task, visible_task
from crowdseg.domain import (
    GOLD_SLOTS,
    GoldScore,
    Image,
    JsonInt,
    QualificationAttempt,
    RevealReference,
    Review,
    ReviewDecision,
    Shape,
    Submission,
    Task,
    TaskStatus,
    User,
    is_gold_image,
    json_number,
    utcnow,
)
from crowdseg.errors import Conflict, InvalidInput, NotFound
from crowdseg.events import SubmissionAccepted
from crowdseg.geometry import validate_shapes
from crowdseg.ports import Store
from crowdseg.qualification import QualificationState, ensure_qualified, qualification_state
from crowdseg.services.annotate import scoring
from crowdseg.watermark import Watermark
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Notify = Callable[[], None]
COVERAGE_RECONCILED = "annotate.coverage-reconciled"
ALREADY_ANNOTATED = "you have already annotated this image; ask for the next one"
# Submissions with at most this many points are validated on the event loop (see _validated).
INLINE_VALIDATION_POINTS = 2000
ClientId = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class SubmitShapes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = ClientId
    image_id: str = Field(min_length=1, max_length=64)
    shapes: list[Shape] = Field(max_length=1000)
    started_at: datetime | None = None
    # strict: `false` is not a duration or a click time (issue 9: the document says integer)
    duration_ms: Annotated[int, Field(ge=0, le=7 * 24 * 3600 * 1000), BeforeValidator(json_number)] | None = None
    click_times: list[JsonInt] | None = Field(default=None, max_length=100_000)


class Attempt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_id: str = Field(min_length=1, max_length=64)
    shapes: list[Shape] = Field(max_length=1000)


class ReviewCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: ReviewDecision
    reason: str | None = Field(default=None, max_length=2000)


async def submit(
    store: Store,
    user: User,
    task_id: str,
    command: SubmitShapes,
    *,
    max_points: int,
    notify: Notify,
    now: datetime | None = None,
) -> tuple[Submission, bool]:
    """Accept a submission once; the same client id again returns the stored one unchanged.

    A fixed number of store round trips whatever the task's size (task, submission id, image, the
    image's submissions, qualification, slot, insert) and no blob write: the shapes are the record, and
    whoever needs a rater's mask (the consensus, the export) rasterises them. Validation of a large
    submission runs in a worker thread, off the event loop.
    """
    task = await visible_task(store, task_id, user)
    stored = await store.submissions.get(command.id)
    if stored is not None:
        return _same_submission(stored, user, task_id)
    try:
        return await _accept(store, user, task, command, max_points=max_points, notify=notify, now=now)
    except Conflict:
        # A replay of this id that raced the first copy finds the image done by this user, or its slot
        # taken, or loses the insert: if the first copy is stored now, it gets that record (issue 9:
        # on the cluster two of ten simultaneous replays answered 409).
        stored = await store.submissions.get(command.id)
        if stored is None:
            raise
        return _same_submission(stored, user, task_id)


async def _accept(
    store: Store,
    user: User,
    task: Task,
    command: SubmitShapes,
    *,
    max_points: int,
    notify: Notify,
    now: datetime | None,
) -> tuple[Submission, bool]:
    image = await _work_image(store, task, command.image_id)
    # A stored submission, not the image's `submitted_by`, tells whether the user is done: a crash between
    # claiming the slot and storing the submission leaves the slot claimed, and the retry must get in.
    if any(other.user_id == user.id for other in await store.submissions.list_for_image(image.id)):
        raise Conflict(ALREADY_ANNOTATED)
    if task.status is not TaskStatus.OPEN:
        raise Conflict(f"the task is {task.status.value}, not open")
    await ensure_qualified(store, task, user)
    shapes = await _validated(command.shapes, task, image, max_points)
    gold = await _gold_score(task, image, shapes)
    slots = task.replicates if gold is None else GOLD_SLOTS
    if not await store.images.claim_slot(image.id, user.id, replicates=slots, now=now or utcnow()):
        raise Conflict("this image already has all the annotations it needs; ask for the next one")
    submission = Submission(
        gold=gold,
        id=command.id,
        task_id=task.id,
        image_id=image.id,
        user_id=user.id,
        shapes=shapes,
        started_at=command.started_at,
        duration_ms=command.duration_ms,
        click_times=command.click_times,
    )
    event = SubmissionAccepted(task_id=task.id, image_id=image.id, submission_id=submission.id, user_id=user.id)
    submission.outbox = [event.pending()]
    # Racing requests (replays of one id, two tabs with fresh ids, two annotate replicas) may all get
    # here; the store's unique indexes let exactly one of them in. A loser removes the mask it wrote.
    stored, created = await store.submissions.add(submission)
    if not created:
        stored, created = _same_submission(stored, user, task.id)
    notify()
    return stored, created


def is_gold(task: Task, image: Image) -> bool:
    """With ``gold_rate``, a plain image with an expert reference is gold: ``next`` mixes it into
    anyone's stream, and every answer is scored against the reference instead of fused."""
    return task.gold_rate > 0 and is_gold_image(image)


async def _gold_score(task: Task, image: Image, shapes: list[Shape]) -> GoldScore | None:
    if not is_gold(task, image):
        return None
    return await asyncio.to_thread(
        scoring.gold_score, task.metric, task.tool, shapes, image.reference_shapes, image.width, image.height
    )


async def gold_reference(store: Store, submission: Submission) -> list[Shape] | None:
    """The reference a gold answer is shown with, when its task's ``gold_feedback`` allows; else None."""
    if submission.gold is None:
        return None
    task = await store.tasks.get(submission.task_id)
    image = await store.images.get(submission.image_id)
    if task is None or image is None or not task.gold_feedback:
        return None
    return image.reference_shapes


def _same_submission(stored: Submission, user: User, task_id: str) -> tuple[Submission, bool]:
    if stored.user_id != user.id or stored.task_id != task_id:
        raise Conflict("this submission id is already used by another submission")
    return stored, False


async def _validated(shapes: list[Shape], task: Task, image: Image, max_points: int) -> list[Shape]:
    """The validated shapes; a submission of many points is validated in a worker thread (a
    contour of a few dozen points costs ~50 µs, less than the hop to a thread and back)."""
    if sum(len(shape.points) for shape in shapes) <= INLINE_VALIDATION_POINTS:
        return _validate(shapes, task, image, max_points)
    return await asyncio.to_thread(_validate, shapes, task, image, max_points)


def _validate(shapes: list[Shape], task: Task, image: Image, max_points: int) -> list[Shape]:
    return validate_shapes(
        shapes,
        tool=task.tool,
        width=image.width,
        height=image.height,
        frames=image.frames,
        max_shapes=task.max_shapes,
        max_points=max_points,
        labels=task.label_names,
    )


async def _work_image(store: Store, task: Task, image_id: str) -> Image:
    image = await store.images.get(image_id)
    if image is None or image.task_id != task.id:
        raise NotFound(f"image {image_id} not found in this task")
    if image.tutorial:
        raise InvalidInput("tutorial images are answered through the qualification, not as submissions")
    return image


async def review(store: Store, user: User, submission_id: str, command: ReviewCommand, *, notify: Notify) -> Submission:
    """Give a submission the task master's verdict. A rejected one leaves its image's consensus and
    coverage (the image needs one more; its rater is not given it again); accepting it reverses that.
    The same verdict again changes nothing."""
    stored = await store.submissions.get(submission_id)
    if stored is None:
        raise NotFound(f"submission {submission_id} not found")
    await managed_task(store, stored.task_id, user)
    verdict = Review(decision=command.decision, reason=command.reason, by=user.id, at=utcnow())
    event = SubmissionAccepted(
        task_id=stored.task_id,
        image_id=stored.image_id,
        submission_id=stored.id,
        user_id=stored.user_id,
        review=command.decision,
    )
    reviewed, changed = await store.submissions.review(submission_id, verdict, event.pending())
    if reviewed is None:
        raise NotFound(f"submission {submission_id} not found")
    # The image follows the submission's verdict as stored now, also after an unchanged verdict: a
    # request racing this one (a reject and an accept) may have left it behind.
    current = await store.submissions.get(submission_id) or reviewed
    await store.images.set_rejected(current.image_id, current.user_id, rejected=current.rejected)
    if changed:
        notify()
    return reviewed


async def image_submissions(store: Store, user: User, image_id: str) -> list[Submission]:
    """Every submission of an image of a task the user manages, rejected ones too, oldest first."""
    image, _ = await managed_image(store, image_id, user)
    return sorted(await store.submissions.list_for_image(image.id), key=lambda s: (s.created_at, s.id))


@dataclass(frozen=True)
class AttemptResult:
    attempt: QualificationAttempt
    threshold: float
    reference: list[Shape]  # empty unless the task's reveal_reference allows showing it now


async def qualification(store: Store, user: User, task_id: str) -> QualificationState:
    """The gate's state; with ``after_each_attempt`` only the tutorial images the user has not spent."""
    task = await visible_task(store, task_id, user)
    state = await qualification_state(store, task, user)
    if task.reveal_reference is RevealReference.AFTER_EACH_ATTEMPT and not state.passed:
        spent = {attempt.image_id for attempt in await store.attempts.list_for(task.id, user.id)}
        state = replace(state, images=[image for image in state.images if image.id not in spent])
    return state


async def attempt_qualification(
    store: Store, user: User, task_id: str, command: Attempt, *, max_points: int
) -> AttemptResult:
    """Score an attempt on a tutorial image. The reference is part of the answer only as the task's
    ``reveal_reference`` allows (issue 9: shown after any attempt, it was the answer key)."""
    task = await visible_task(store, task_id, user)
    image = await store.images.get(command.image_id)
    if image is None or image.task_id != task.id or not image.tutorial:
        raise NotFound(f"tutorial image {command.image_id} not found in this task")
    earlier = await store.attempts.list_for(task.id, user.id)
    passed_before = any(attempt.passed for attempt in earlier)
    if (
        task.reveal_reference is RevealReference.AFTER_EACH_ATTEMPT
        and not passed_before
        and any(attempt.image_id == image.id for attempt in earlier)
    ):
        raise Conflict("you have seen this tutorial image's reference; make your next attempt on another one")
    shapes = validate_shapes(
        command.shapes,
        tool=task.tool,
        width=image.width,
        height=image.height,
        frames=image.frames,
        max_shapes=task.max_shapes,
        max_points=max_points,
        labels=task.label_names,
    )
    value = await asyncio.to_thread(
        scoring.score, task.metric, task.tool, shapes, image.reference_shapes, image.width, image.height
    )
    attempt = QualificationAttempt(
        task_id=task.id,
        user_id=user.id,
        image_id=image.id,
        shapes=shapes,
        metric=task.metric,
        score=round(value, 6),
        passed=scoring.passes(task.metric, value, task.pass_threshold),
    )
    await store.attempts.add(attempt)
    reveal = {
        RevealReference.AFTER_PASSING: attempt.passed or passed_before,
        RevealReference.AFTER_EACH_ATTEMPT: True,
        RevealReference.NEVER: False,
    }[task.reveal_reference]
    return AttemptResult(attempt, task.pass_threshold, image.reference_shapes if reveal else [])


async def reconcile_coverage(store: Store) -> int:
    """Every stored submission counts in its image's coverage (repairs documents written before the
    slot was claimed first); looks at the submissions since the last clean pass (crowdseg.watermark)."""
    began = utcnow()
    watermark = Watermark(store, COVERAGE_RECONCILED)
    recent = await watermark.recent_submissions()
    if recent is None:
        recent = [s for task in await store.tasks.all() for s in await store.submissions.list_for_task(task.id)]
    repaired = 0
    images: dict[str, Image | None] = {}
    for submission in recent:
        if submission.image_id not in images:
            images[submission.image_id] = await store.images.get(submission.image_id)
        image = images[submission.image_id]
        if submission.rejected or image is None:
            continue
        if submission.user_id not in image.submitted_by:
            await store.images.record_submitter(image.id, submission.user_id)
            repaired += 1
    await watermark.advance(began)
    return repaired
