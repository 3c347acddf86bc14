"""HTTP routes of assignment, and the events that keep its selection structures current."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from crowdseg.domain import utcnow
from crowdseg.events import ImageIngested, SubmissionAccepted
from crowdseg.http import CurrentUser, RuntimeDep, StoreDep
from crowdseg.runtime import Runtime
from crowdseg.services.assign import handlers
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

COMPONENT = "assign.selections"


class AssignedImage(BaseModel):
    id: str
    name: str
    width: int
    height: int


class WorkerProgress(BaseModel):
    """A study link's worker: images done before this one, of the link's quota."""

    link_id: str
    images: int
    quota: int


class NextOut(BaseModel):
    image: AssignedImage
    lease_expires_at: datetime
    progress: WorkerProgress | None = None


def selections_of(runtime: Runtime) -> handlers.Selections:
    selections: handlers.Selections = runtime.components[COMPONENT]
    return selections


async def get_selections(runtime: RuntimeDep) -> handlers.Selections:
    return selections_of(runtime)


SelectionsDep = Annotated[handlers.Selections, Depends(get_selections)]


def subscribe(runtime: Runtime) -> None:
    """The selection structures follow new images and accepted submissions, in every replica."""
    selections = runtime.components.setdefault(COMPONENT, handlers.Selections(runtime.store))

    async def on_image_ingested(event: ImageIngested) -> None:
        selections.image_added(event.task_id, event.image_id, event.name, event.width, event.height)

    async def on_submission_accepted(event: SubmissionAccepted) -> None:
        selections.submitted(event.task_id, event.image_id, event.user_id)

    runtime.broadcast(ImageIngested, "assign", on_image_ingested)
    runtime.broadcast(SubmissionAccepted, "assign", on_submission_accepted)


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
            204: {"description": "nothing is left for this user (a study link's worker: also past the quota)"},
            403: {"description": "qualify first"},
            404: {"description": "no such task visible to the caller"},
            409: {"description": "the task is not open, or the caller's study link has been closed"},
            503: {"description": "the store is unreachable, or the task's images changed too fast; retry"},
        },
    )
    async def next_image(task_id: str, user: CurrentUser, store: StoreDep, selections: SelectionsDep) -> Any:
        assignment = await handlers.next_image(store, selections, user, task_id, utcnow())
        if assignment is None:
            return Response(status_code=204)
        return NextOut(
            image=AssignedImage(
                id=assignment.image_id, name=assignment.name, width=assignment.width, height=assignment.height
            ),
            lease_expires_at=assignment.lease_expires_at,
            progress=None
            if assignment.progress is None
            else WorkerProgress(
                link_id=assignment.progress.link.id,
                images=assignment.progress.images,
                quota=assignment.progress.link.quota,
            ),
        )

    return api
