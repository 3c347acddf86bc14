"""The export service's consumer and HTTP routes."""

from __future__ import annotations

from datetime import datetime

from crowdseg.domain import Export
from crowdseg.errors import Conflict
from crowdseg.events import ExportRequested
from crowdseg.http import BlobsDep, CurrentUser, RuntimeDep, StoreDep
from crowdseg.runtime import Runtime
from crowdseg.services.export import handlers
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

GROUP = "export"


class ExportCreated(BaseModel):
    id: str


class ExportOut(BaseModel):
    id: str
    task_id: str
    status: str
    progress: float
    error: str | None
    size_bytes: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, export: Export) -> ExportOut:
        return cls(**export.model_dump(exclude={"outbox"}))


def subscribe(runtime: Runtime) -> None:
    async def on_export_requested(event: ExportRequested) -> None:
        await handlers.build_export(runtime.store, runtime.blobs, event.export_id, runtime.relay.poke)

    runtime.subscribe(ExportRequested, GROUP, on_export_requested)


async def resume_on_start(runtime: Runtime) -> None:
    """Exports interrupted by a stop are built again (their events may be gone with the broker)."""
    for export in await runtime.store.exports.unfinished():
        await handlers.build_export(runtime.store, runtime.blobs, export.id, runtime.relay.poke)


def router() -> APIRouter:
    api = APIRouter(tags=["results"])

    @api.post("/tasks/{task_id}/exports", status_code=202)
    async def request_export(task_id: str, user: CurrentUser, runtime: RuntimeDep) -> ExportCreated:
        export = await handlers.request_export(runtime.store, user, task_id, runtime.relay.poke)
        return ExportCreated(id=export.id)

    @api.get("/exports/{export_id}")
    async def export_status(export_id: str, user: CurrentUser, store: StoreDep) -> ExportOut:
        return ExportOut.of(await handlers.visible_export(store, user, export_id))

    @api.get("/exports/{export_id}/download", response_class=StreamingResponse)
    async def download(export_id: str, user: CurrentUser, store: StoreDep, blobs: BlobsDep) -> StreamingResponse:
        export = await handlers.visible_export(store, user, export_id)
        if export.status != "done" or export.archive_key is None:
            raise Conflict(f"the export is {export.status}; download it once it is done")
        headers = {"Content-Disposition": f'attachment; filename="crowdseg-{export.task_id}-{export.id}.zip"'}
        if export.size_bytes is not None:
            headers["Content-Length"] = str(export.size_bytes)
        return StreamingResponse(blobs.stream(export.archive_key), media_type="application/zip", headers=headers)

    return api
