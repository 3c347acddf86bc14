"""HTTP routes of submissions and qualification attempts."""

from __future__ import annotations

from datetime import datetime

from crowdseg.domain import GoldScore, Review, Shape, Submission
from crowdseg.http import CurrentUser, RuntimeDep, StoreDep
from crowdseg.services.annotate import handlers
from crowdseg.services.annotate.handlers import Attempt, ReviewCommand, SubmitShapes
from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel


class SubmissionOut(BaseModel):
    id: str
    task_id: str
    image_id: str
    user_id: str
    shapes: list[Shape]
    started_at: datetime | None
    duration_ms: int | None
    click_times: list[int] | None = None
    review: Review | None = None
    gold: GoldScore | None = None
    """Set on a gold answer (an image served from the task's references): its score against the
    reference; such a submission never enters a consensus."""
    reference: list[Shape] | None = None
    """A gold answer's reference shapes, in the submit answer when the task's ``gold_feedback`` is on."""
    created_at: datetime

    @classmethod
    def of(cls, submission: Submission, reference: list[Shape] | None = None) -> SubmissionOut:
        return cls(**submission.model_dump(exclude={"outbox", "mask_key"}), reference=reference)


class TutorialImage(BaseModel):
    id: str
    width: int
    height: int


class QualificationOut(BaseModel):
    required: bool
    passed: bool
    images: list[TutorialImage]


class AttemptOut(BaseModel):
    score: float
    metric: str
    passed: bool
    threshold: float
    reference: list[Shape]


def router() -> APIRouter:
    api = APIRouter(tags=["work"])

    @api.post("/tasks/{task_id}/submissions", status_code=201, responses={200: {"description": "already stored"}})
    async def submit(task_id: str, body: SubmitShapes, user: CurrentUser, runtime: RuntimeDep) -> SubmissionOut:
        submission, created = await handlers.submit(
            runtime.store,
            user,
            task_id,
            body,
            max_points=runtime.settings.max_points_per_shape,
            notify=runtime.relay.poke,
        )
        out = SubmissionOut.of(submission, await handlers.gold_reference(runtime.store, submission))
        # Serialised here, once: a returned model would be validated and serialised again (issue 8: the
        # work path's two routes answer hundreds of times a second).
        return Response(out.model_dump_json(), status_code=201 if created else 200, media_type="application/json")  # type: ignore[return-value]

    @api.post(
        "/submissions/{submission_id}/review",
        responses={
            403: {"description": "only the task's owner or an admin may review its submissions"},
            404: {"description": "no such submission visible to the caller"},
        },
    )
    async def review(submission_id: str, body: ReviewCommand, user: CurrentUser, runtime: RuntimeDep) -> SubmissionOut:
        """Accept or reject a submission. A rejected one leaves its image's consensus (recomputed) and
        its image needs one more annotator; its rater is not given that image again. Accepting it
        again reverses that. The same verdict again changes nothing."""
        submission = await handlers.review(runtime.store, user, submission_id, body, notify=runtime.relay.poke)
        return SubmissionOut.of(submission)

    @api.get(
        "/images/{image_id}/submissions",
        responses={
            403: {"description": "only the task's owner or an admin may list an image's submissions"},
            404: {"description": "no such image visible to the caller"},
        },
    )
    async def image_submissions(image_id: str, user: CurrentUser, store: StoreDep) -> list[SubmissionOut]:
        """Every submission of the image, rejected ones too (``review``), oldest first: the review page's list."""
        return [SubmissionOut.of(s) for s in await handlers.image_submissions(store, user, image_id)]

    @api.get("/tasks/{task_id}/qualification")
    async def qualification(task_id: str, user: CurrentUser, store: StoreDep) -> QualificationOut:
        state = await handlers.qualification(store, user, task_id)
        images = [TutorialImage(id=i.id, width=i.width, height=i.height) for i in state.images]
        return QualificationOut(required=state.required, passed=state.passed, images=images)

    @api.post(
        "/tasks/{task_id}/qualification/attempts",
        responses={409: {"description": "with reveal_reference after_each_attempt: this tutorial image is spent"}},
    )
    async def attempt(task_id: str, body: Attempt, user: CurrentUser, runtime: RuntimeDep) -> AttemptOut:
        """Score an attempt. ``reference`` (the expert's shapes) is empty unless the task's
        ``reveal_reference`` allows it: ``after_passing`` (default) once the caller has passed,
        ``after_each_attempt`` always, after which that tutorial image is spent for the caller (409)."""
        result = await handlers.attempt_qualification(
            runtime.store, user, task_id, body, max_points=runtime.settings.max_points_per_shape
        )
        return AttemptOut(
            score=result.attempt.score,
            metric=result.attempt.metric.value,
            passed=result.attempt.passed,
            threshold=result.threshold,
            reference=result.reference,
        )

    return api
