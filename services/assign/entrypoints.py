"""HTTP routes of assignment, and the events that keep its selection structures current."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from crowdseg.domain import utcnow
from crowdseg.events import ConsensusUpdated, ImageIngested, ImageReferenced, SubmissionAccepted
from crowdseg.http import CurrentUser, RuntimeDep, StoreDep
from crowdseg.runtime import Runtime
from crowdseg.services.assign import handlers
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

COMPONENT = "assign.selections"
MAX_SKIPPED = 100


class AssignedImage(BaseModel):
    id: str
    name: str
    width: int
    height: int
    frames: int = 1
    """Frames of a stack (``GET /images/{id}/file?frame=k``); 1 for a plain image."""
    # A list, not a tuple: a tuple's schema (prefixItems) comes out of FastAPI as an invalid `items` array.
    window: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    """The stack's default ``[center, width]`` for ``?window=``; null where it has no raw values."""


class WorkerProgress(BaseModel):
    """How far the caller is: ``images`` submitted on the task before this one, of ``quota``. For a
    study link's worker (``link_id`` set) the quota is the link's; for everyone else (``link_id``
    null) it is the task's number of images, each of which a person annotates at most once."""

    link_id: str | None
    images: int
    quota: int


class NextOut(BaseModel):
    image: AssignedImage
    lease_expires_at: datetime
    progress: WorkerProgress | None = None
    """Always set by this version; optional for clients of older servers."""


def selections_of(runtime: Runtime) -> handlers.Selections:
    selections: handlers.Selections = runtime.components[COMPONENT]
    return selections


async def get_selections(runtime: RuntimeDep) -> handlers.Selections:
    return selections_of(runtime)


SelectionsDep = Annotated[handlers.Selections, Depends(get_selections)]


def subscribe(runtime: Runtime) -> None:
    """The selection structures follow new images, accepted submissions, expert references (the gold
    set) and consensus certainty (adaptive replicates), in every replica."""
    selections = runtime.components.setdefault(COMPONENT, handlers.Selections(runtime.store))

    async def on_image_ingested(event: ImageIngested) -> None:
        selections.image_added(
            event.task_id, event.image_id, event.name, event.width, event.height, event.frames, event.window
        )

    async def on_submission_accepted(event: SubmissionAccepted) -> None:
        if event.review is None:
            selections.submitted(event.task_id, event.image_id, event.user_id)
        else:
            selections.reviewed(event.task_id, event.image_id, event.user_id, rejected=event.review == "reject")

    async def on_image_referenced(event: ImageReferenced) -> None:
        gold = event.reference and not event.tutorial and event.frames <= 1  # as domain.is_gold_image
        selections.referenced(event.task_id, event.image_id, gold=gold)

    runtime.broadcast(ImageIngested, "assign", on_image_ingested)

    async def on_consensus_updated(event: ConsensusUpdated) -> None:  # adaptive replicates: retirement
        selections.certain(event.task_id, event.image_id, event.certainty, retired=event.retired)

    runtime.broadcast(ImageReferenced, "assign", on_image_referenced)
    runtime.broadcast(SubmissionAccepted, "assign", on_submission_accepted)
    runtime.broadcast(ConsensusUpdated, "assign", on_consensus_updated)


async def listen_on_start(runtime: Runtime) -> None:
    try:
        await runtime.consuming()
    finally:  # consumers that failed to start fail /readyz; `next` must not wait for them forever
        selections_of(runtime).listening.set()


def router() -> APIRouter:
    api = APIRouter(tags=["work"])

    @api.get(
        "/tasks/{task_id}/next",
        response_model=NextOut,
        responses={
            204: {
                "description": "nothing is left for this user but the skipped images (a study link's worker:"
                " also past the quota)"
            },
            403: {"description": "qualify first"},
            404: {"description": "no such task visible to the caller"},
            422: {"description": "more than 100 skipped images, or a malformed image id"},
            409: {"description": "the task is not open, or the caller's study link has been closed"},
            503: {"description": "the store is unreachable, or the task's images changed too fast; retry"},
        },
    )
    async def next_image(
        task_id: str,
        user: CurrentUser,
        store: StoreDep,
        selections: SelectionsDep,
        skip: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]],
            Query(
                max_length=MAX_SKIPPED,
                description="images the caller passed over without submitting (the workbench's Skip): not"
                " answered now, and the caller's leases on them are given back",
            ),
        ] = [],  # noqa: B006 -- FastAPI copies a query list's default per request
    ) -> Any:
        assignment = await handlers.next_image(store, selections, user, task_id, utcnow(), skip=frozenset(skip))
        if assignment is None:
            return Response(status_code=204)
        progress = assignment.progress
        out = NextOut(
            image=AssignedImage(
                id=assignment.image_id,
                name=assignment.name,
                width=assignment.width,
                height=assignment.height,
                frames=assignment.frames,
                window=None if assignment.window is None else list(assignment.window),
            ),
            lease_expires_at=assignment.lease_expires_at,
            progress=None
            if progress is None
            else WorkerProgress(link_id=progress.link_id, images=progress.images, quota=progress.quota),
        )
        # Serialised once (issue 8): a returned model would be validated against NextOut and serialised again.
        return Response(out.model_dump_json(), media_type="application/json")

    return api
