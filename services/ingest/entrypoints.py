"""HTTP routes of tasks, images and tutorials."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from crowdseg.access import managed_task, manages, sees, visible_image, visible_task
from crowdseg.counters import counters_of
from crowdseg.domain import Image, Screening, Shape, Task, TaskLabel
from crowdseg.errors import InvalidInput, PayloadTooLarge
from crowdseg.http import BlobsDep, CurrentUser, RuntimeDep, StoreDep
from crowdseg.paging import PAGED_RESPONSES, PagingDep, filtered_page
from crowdseg.services.ingest import handlers
from crowdseg.services.ingest.archives import ArchiveLimits
from crowdseg.services.ingest.handlers import AddMember, CreateTask, UpdateTask, UploadedFile
from crowdseg.services.ingest.imaging import ImageLimits
from fastapi import APIRouter, Depends, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile

SHAPES = TypeAdapter(list[Shape])
EXCLUSION_404 = "no such task visible to the caller, or no account with an id in excluded_users or admitted_users"


class TaskOut(BaseModel):
    id: str
    owner_id: str
    title: str
    instructions: str
    tool: str
    replicates: int
    min_replicates: int
    """Adaptive replicates: submissions after which an image may retire (``replicates``: fixed coverage)."""
    confidence: float
    """The certainty at which an image with ``min_replicates`` submissions retires (see the README)."""
    order: str
    unseen_first: bool
    metric: str
    pass_threshold: float
    reveal_reference: str
    visibility: str
    max_shapes: int
    status: str
    lease_seconds: int
    labels: list[TaskLabel]
    labels_exclusive: bool
    interpolate_frames: bool = False
    screening: Screening | None = None
    excluded_users: list[str] = []
    admitted_users: list[str] = []
    gold_rate: float = 0.0
    """The share of ``next`` answers that are reference images at an annotator's start (falls with their count)."""
    gold_feedback: bool = False
    """A gold answer's response shows the reference's shapes."""
    members: list[str]
    images: int | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, task: Task, images: int | None = None) -> TaskOut:
        return cls(**{**task.model_dump(), "min_replicates": task.retire_after}, images=images)


class ImageOut(BaseModel):
    id: str
    name: str
    width: int
    height: int
    submissions: int = 0
    tutorial: bool = False
    reference: bool = False
    """The image has an expert reference (``GET /images/{id}/reference``)."""
    frames: int = 1
    """Frames of a stack (``GET /images/{id}/file?frame=k``); 1 for a plain image."""
    # Lists, not tuples: a tuple's schema (prefixItems) comes out of FastAPI as an invalid `items` array.
    spacing: Annotated[list[float], Field(min_length=3, max_length=3)] | None = None
    """Voxel spacing ``[z, y, x]`` in mm, where the file says so."""
    window: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    """Default ``[center, width]`` for ``?window=``; null when the image has no raw values to window."""
    windows: list[Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(default_factory=list)
    """The DICOM file's own windows (every Window Center/Width pair, the default first), as presets."""


class Rejection(BaseModel):
    name: str
    reason: str


class UploadOut(BaseModel):
    accepted: list[ImageOut]
    rejected: list[Rejection]


async def upload_budget(request: Request, runtime: RuntimeDep) -> None:
    """Refuse an oversized upload from its declared length, before reading a byte of it."""
    limit = runtime.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the upload is {int(declared)} bytes; the limit is {limit}")


UploadBudget = Annotated[None, Depends(upload_budget)]


async def _read_capped(upload: UploadFile, limit: int) -> UploadedFile:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{upload.filename} is larger than the {limit} bytes left of the upload limit")
    return UploadedFile(upload.filename or "unnamed", data)


def _image_limits(runtime: RuntimeDep) -> ImageLimits:
    settings = runtime.settings
    return ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)


def router() -> APIRouter:
    api = APIRouter(tags=["tasks and images"])

    @api.post("/tasks", status_code=201)
    async def create_task(body: CreateTask, user: CurrentUser, store: StoreDep) -> TaskOut:
        return TaskOut.of(await handlers.create_task(store, user, body))

    @api.get("/tasks", responses=PAGED_RESPONSES)
    async def list_tasks(user: CurrentUser, store: StoreDep, paging: PagingDep) -> list[TaskOut]:
        """The tasks the caller may see, by creation; ``images`` from the task's counters."""
        page = await filtered_page(
            lambda limit, after: store.tasks.page(limit=limit, after=after),
            lambda task: sees(task, user),
            paging.limit,
            paging.after("tasks"),
        )
        paging.finish("tasks", page)
        counters = await counters_of(store, [task.id for task in page.items])
        return [TaskOut.of(task, counters[task.id].images) for task in page.items]

    @api.get("/tasks/{task_id}", responses={404: {"description": "no such task visible to the caller"}})
    async def get_task(task_id: str, user: CurrentUser, store: StoreDep) -> TaskOut:
        task = await visible_task(store, task_id, user)
        return TaskOut.of(task, (await counters_of(store, [task.id]))[task.id].images)

    @api.patch(
        "/tasks/{task_id}",
        responses={
            404: {"description": EXCLUSION_404},
            409: {
                "description": "the task has submissions and the change renames, reorders or removes labels, or"
                " changes labels_exclusive or interpolate_frames"
            },
            422: {"description": "a field out of range, or min_replicates above replicates"},
        },
    )
    async def update_task(task_id: str, body: UpdateTask, user: CurrentUser, store: StoreDep) -> TaskOut:
        return TaskOut.of(await handlers.update_task(store, user, task_id, body))

    @api.post("/tasks/{task_id}/members")
    async def add_member(task_id: str, body: AddMember, user: CurrentUser, store: StoreDep) -> TaskOut:
        return TaskOut.of(await handlers.add_member(store, user, task_id, body))

    @api.delete(
        "/tasks/{task_id}/members/{user_id}",
        responses={404: {"description": "no such task visible to the caller, or the user is not a member"}},
    )
    async def remove_member(task_id: str, user_id: str, user: CurrentUser, store: StoreDep) -> TaskOut:
        """Take a member off the task; a private task then answers them 404 like any task they may not see."""
        return TaskOut.of(await handlers.remove_member(store, user, task_id, user_id))

    @api.post("/tasks/{task_id}/images", status_code=202, openapi_extra=_multipart_body(UPLOAD_FORM))
    async def upload_images(
        task_id: str, _: UploadBudget, user: CurrentUser, runtime: RuntimeDep, request: Request
    ) -> UploadOut:
        """Upload images (PNG, JPEG, TIFF, DICOM, NIfTI) or ZIP archives of them, as the multipart field ``files``.

        The caller's credentials and right to the task are checked before the body is read."""
        await managed_task(runtime.store, task_id, user)
        files = _files(await _form(request, "files"), "files")
        limit = runtime.settings.max_upload_bytes
        uploads: list[UploadedFile] = []
        for upload in files:
            # The budget is for the whole request, also when no Content-Length announced its size.
            uploads.append(await _read_capped(upload, limit - sum(len(u.data) for u in uploads)))
        report = await handlers.upload_images(
            runtime.store,
            runtime.blobs,
            user,
            task_id,
            uploads,
            image_limits=_image_limits(runtime),
            archive_limits=ArchiveLimits(max_total_bytes=limit),
            notify=runtime.relay.poke,
        )
        rejected = [Rejection(name=name, reason=reason) for name, reason in report.rejected]
        if not report.accepted:
            # Nothing was stored: that is the caller's mistake, so a 4xx that still lists every reason.
            reasons = "; ".join(f"{r.name}: {r.reason}" for r in rejected[:5]) or "the upload holds no files"
            more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
            raise InvalidInput(
                f"no image was accepted: {reasons}{more}",
                accepted=[],
                rejected=[r.model_dump() for r in rejected],
            )
        return UploadOut(
            accepted=[_image_out(image, 0) for image in report.accepted],
            rejected=rejected,
        )

    @api.get(
        "/tasks/{task_id}/images",
        responses={
            **PAGED_RESPONSES,
            403: {"description": "only the task's owner or an admin may list its images"},
            404: {"description": "no such task visible to the caller"},
        },
    )
    async def list_images(
        task_id: str, user: CurrentUser, store: StoreDep, paging: PagingDep, tutorial: bool = False
    ) -> list[ImageOut]:
        """The task's images by name; ``submissions``: how many annotators have submitted each."""
        await managed_task(store, task_id, user)
        scope = f"images:{task_id}:{int(tutorial)}"
        after = paging.after(scope)
        page = await store.images.page_for_task(task_id, tutorial=tutorial, limit=paging.limit, after=after)
        paging.finish(scope, page)
        return [_image_out(image, len(image.submitted_by)) for image in page.items]

    @api.post("/tasks/{task_id}/tutorial", status_code=201, openapi_extra=_multipart_body(TUTORIAL_FORM))
    async def add_tutorial(
        task_id: str, _: UploadBudget, user: CurrentUser, runtime: RuntimeDep, request: Request
    ) -> ImageOut:
        """A tutorial image (multipart field ``file``) with its reference shapes (field ``shapes``, JSON).

        The caller's credentials and right to the task are checked before the body is read."""
        await managed_task(runtime.store, task_id, user)
        form = await _form(request, "file")
        file = _files(form, "file")[0]
        shapes = form.get("shapes")
        if not isinstance(shapes, str):
            raise InvalidInput("send the tutorial image's reference shapes as the form field 'shapes' (JSON)")
        try:
            reference = SHAPES.validate_json(shapes)
        except ValidationError as exc:
            raise InvalidInput(f"shapes: {exc.errors()[0]['msg']}") from exc
        upload = await _read_capped(file, runtime.settings.max_image_bytes)
        image = await handlers.add_tutorial(
            runtime.store,
            runtime.blobs,
            user,
            task_id,
            upload,
            reference,
            image_limits=_image_limits(runtime),
            max_points=runtime.settings.max_points_per_shape,
        )
        return _image_out(image, 0)

    @api.get("/images/{image_id}", responses={404: {"description": "no such image visible to the caller"}})
    async def get_image(image_id: str, user: CurrentUser, store: StoreDep) -> ImageOut:
        """One image: its size, ``frames``, ``spacing`` and default ``window``; ``submissions`` for its task's owner."""
        image, task = await visible_image(store, image_id, user)
        return _image_out(image, len(image.submitted_by) if manages(task, user) else 0)

    @api.get("/images/{image_id}/file", response_class=Response, responses=FRAME_RESPONSES)
    async def image_file(
        image_id: str,
        user: CurrentUser,
        store: StoreDep,
        blobs: BlobsDep,
        frame: FrameQuery = 0,
        window: WindowQuery = None,
    ) -> Response:
        """Frame ``frame`` of the image (0 for a plain image), under ``window=center,width`` if given."""
        image, _task = await visible_image(store, image_id, user)
        rendition = await handlers.frame_rendition(blobs, image, frame, window=window)
        return _image_response(rendition.data, rendition.media_type)

    @api.get("/images/{image_id}/thumbnail", response_class=Response, responses=FRAME_RESPONSES)
    async def thumbnail(
        image_id: str, user: CurrentUser, store: StoreDep, blobs: BlobsDep, frame: FrameQuery = 0
    ) -> Response:
        image, _task = await visible_image(store, image_id, user)
        rendition = await handlers.frame_rendition(blobs, image, frame, thumbnail=True)
        return _image_response(rendition.data, rendition.media_type)

    return api


FrameQuery = Annotated[int, Query(description="the frame of a stack, from 0")]
WindowQuery = Annotated[
    str | None,
    Query(description="`center,width` of the raw values (greyscale DICOM and NIfTI); the default is the image's"),
]
FRAME_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such image visible to the caller"},
    422: {"description": "the frame is out of range, or the window is malformed or not available for this image"},
}

UPLOAD_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "format": "binary"},
            "description": "images (PNG, JPEG, TIFF, DICOM, NIfTI) or ZIP archives (a DICOM series becomes one image)",
        }
    },
}
TUTORIAL_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["file", "shapes"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "shapes": {"type": "string", "description": "JSON list of shapes"},
    },
}


def _multipart_body(schema: dict[str, Any]) -> dict[str, Any]:
    """The request body's description: the routes read it themselves, after authentication (issue 9:
    a body parameter made FastAPI read a whole anonymous upload before the 401)."""
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


async def _form(request: Request, field: str) -> FormData:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidInput(f"send the upload as multipart/form-data, the file(s) in the field {field!r}")
    return await request.form()


def _files(form: FormData, field: str) -> list[UploadFile]:
    files = [value for value in form.getlist(field) if isinstance(value, StarletteUploadFile)]
    if not files:
        raise InvalidInput(f"the upload has no file in the field {field!r}")
    return files  # type: ignore[return-value]


def _image_out(image: Image, submissions: int) -> ImageOut:
    return ImageOut(
        id=image.id,
        name=image.name,
        width=image.width,
        height=image.height,
        submissions=submissions,
        reference=bool(image.reference_shapes),
        tutorial=image.tutorial,
        frames=image.frames,
        spacing=None if image.spacing is None else list(image.spacing),
        window=None if image.window is None else list(image.window),
        windows=[list(w) for w in image.windows],
    )


def _image_response(data: bytes, media_type: str) -> Response:
    headers = {"Cache-Control": "private, max-age=3600", "Content-Disposition": "inline"}
    return Response(data, media_type=media_type, headers=headers)
