"""HTTP routes of assignment."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crowdseg.domain import utcnow
from crowdseg.http import CurrentUser, StoreDep
from crowdseg.services.assign import handlers
from fastapi import APIRouter, Response
from pydantic import BaseModel


class AssignedImage(BaseModel):
    id: str
    name: str
    width: int
    height: int


class NextOut(BaseModel):
    image: AssignedImage
    lease_expires_at: datetime


def router() -> APIRouter:
    api = APIRouter(tags=["work"])

    @api.get(
        "/tasks/{task_id}/next",
        response_model=NextOut,
        responses={204: {"description": "nothing is left for this user"}, 403: {"description": "qualify first"}},
    )
    async def next_image(task_id: str, user: CurrentUser, store: StoreDep) -> Any:
        assignment = await handlers.next_image(store, user, task_id, utcnow())
        if assignment is None:
            return Response(status_code=204)
        image = assignment.image
        return NextOut(
            image=AssignedImage(id=image.id, name=image.name, width=image.width, height=image.height),
            lease_expires_at=assignment.lease_expires_at,
        )

    return api
