"""The consensus service's consumer (the worker pool) and its HTTP routes."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any

from crowdseg.access import managed_image, managed_task
from crowdseg.dicom_seg import SEG_MEDIA_TYPE
from crowdseg.domain import Image, Shape, User, utcnow
from crowdseg.errors import NotFound, Unavailable
from crowdseg.events import SubmissionAccepted
from crowdseg.http import API_PREFIX, BlobsDep, CurrentUser, RuntimeDep, StoreDep
from crowdseg.paging import PAGED_RESPONSES, PagingDep
from crowdseg.ports import Store
from crowdseg.runtime import Runtime
from crowdseg.services.consensus import handlers, volumes
from crowdseg.volumes import NIFTI_MEDIA_TYPE, is_stack
from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

LabelQuery = Annotated[str | None, Query(max_length=64, description="one of the task's labels: its binary mask")]
GROUP = "consensus"
log = logging.getLogger(__name__)
MANAGED: dict[int | str, dict[str, Any]] = {
    403: {"description": "only the task's owner or an admin may see this"},
    404: {"description": "no such task visible to the caller"},
}
IMAGE_MANAGED: dict[int | str, dict[str, Any]] = {
    403: {"description": "only the task's owner or an admin may do this"},
    404: {"description": "no such image visible to the caller"},
}


CONSENSUS_FILE: dict[int | str, dict[str, Any]] = {
    **IMAGE_MANAGED,
    404: {"description": "no such image visible to the caller, or no consensus mask yet"},
    409: {"description": "the task's tool makes points or lines, not masks"},
}
CONSENSUS_PNG: dict[int | str, dict[str, Any]] = {
    **CONSENSUS_FILE,
    422: {"description": "a stack without ?frame=k, a frame outside it, or a frame of a plain image"},
}
CONSENSUS_NIFTI: dict[int | str, dict[str, Any]] = {
    **CONSENSUS_FILE,
    409: {"description": "the image is not a stack (its consensus is mask.png), or the tool makes no masks"},
}
CONSENSUS_SEG: dict[int | str, dict[str, Any]] = {
    **CONSENSUS_FILE,
    409: {"description": "the image's source is not DICOM (its consensus is at mask.png), or the tool makes no masks"},
    422: {"description": "the source DICOM cannot be referenced by a SEG (legacy multi-frame: no per-frame positions)"},
}
NO_CACHE = {"Cache-Control": "no-cache"}
FrameQuery = Annotated[
    int | None, Query(ge=0, le=100_000, description="The frame of a stack (0-based); required on stacks.")
]


class ReferenceIn(BaseModel):
    """An expert's reference annotation of one image: shapes of the task's tool, as a submission's."""

    model_config = ConfigDict(extra="forbid")
    shapes: list[Shape] = Field(min_length=1)


class ReferenceOut(BaseModel):
    image_id: str
    shapes: list[Shape]
    version: int
    """How many times the reference was set (the consensus records the version its scores used)."""
    updated_by: str | None
    updated_at: datetime | None


class CoverageOut(BaseModel):
    image_id: str
    name: str
    submissions: int
    """Annotators who have submitted the image."""
    leased: int
    """Unexpired leases on it."""
    complete: bool
    """At least the task's ``replicates`` submissions, or retired."""
    users: list[str]
    """The submitters' user ids."""
    retired: bool = False
    """Retired early by adaptive replicates (certain enough with ``min_replicates`` submissions)."""


def options(runtime: Runtime) -> handlers.StapleOptions:
    settings = runtime.settings
    return handlers.StapleOptions(
        max_iter=settings.staple_max_iter, tol=settings.staple_tol, concurrency=settings.consensus_workers
    )


def subscribe(runtime: Runtime) -> None:
    """Accepted submissions recompute their images, a batch of events at once: each image among them
    once. Keyed by image id, one image stays on one worker."""

    async def on_submissions_accepted(events: list[SubmissionAccepted]) -> list[BaseException | None]:
        outcomes = await handlers.recompute_many(
            runtime.store,
            runtime.blobs,
            [event.image_id for event in events],
            options=options(runtime),
            notify=runtime.relay.poke,
        )
        return [_failure(outcomes[event.image_id]) for event in events]

    runtime.subscribe_batch(
        SubmissionAccepted, GROUP, on_submissions_accepted, max_records=runtime.settings.consensus_batch
    )


def _failure(outcome: object) -> BaseException | None:
    return outcome if isinstance(outcome, BaseException) else None


async def reconcile_on_start(runtime: Runtime) -> None:
    """Reconcile now, then every ``reconcile_seconds`` (each pass from the watermark of the last)."""
    while True:
        try:
            await handlers.reconcile(runtime.store, runtime.blobs, options=options(runtime), notify=runtime.relay.poke)
        except Unavailable as exc:
            log.warning("reconciliation postponed: %s", exc)
        except Exception:
            log.exception("reconciliation failed; the next pass tries again")
        await asyncio.sleep(runtime.settings.reconcile_seconds)


def router() -> APIRouter:
    api = APIRouter(tags=["results"])

    @api.get("/images/{image_id}/consensus")
    async def consensus(image_id: str, user: CurrentUser, store: StoreDep) -> JSONResponse:
        image, _task = await managed_image(store, image_id, user)
        found = await store.consensus.get(image.id)
        if found is None:
            return JSONResponse({"detail": "no consensus yet: the image has no submissions"}, status_code=404)
        body = handlers.consensus_body(found, await handlers.flagged_in_task(store, found.task_id))
        if found.mask_key:
            extension = "nii.gz" if is_stack(image) else "png"
            body["mask_url"] = f"{API_PREFIX}/images/{image.id}/consensus/mask.{extension}"
            body["probability_url"] = f"{API_PREFIX}/images/{image.id}/consensus/probability.{extension}"
        return JSONResponse(body)

    @api.get(
        "/images/{image_id}/consensus/mask.png",
        response_class=Response,
        responses={**CONSENSUS_PNG, 404: {"description": "no consensus mask yet, or the task has no such label"}},
    )
    async def mask(
        image_id: str,
        user: CurrentUser,
        store: StoreDep,
        blobs: BlobsDep,
        frame: FrameQuery = None,
        label: LabelQuery = None,
    ) -> Response:
        """The consensus mask, 0/255; of a stack, one frame (``?frame=k``, required there). For a task
        with labels, the label map (0 background, i the task's i-th label, 1-based), or with ``label``
        that label's mask, 0/255."""
        await _known_label(store, user, image_id, label)
        png = await volumes.consensus_png(store, blobs, user, image_id, probability=False, frame=frame, label=label)
        return Response(png, media_type="image/png", headers=NO_CACHE)

    @api.get("/images/{image_id}/consensus/probability.png", response_class=Response, responses=CONSENSUS_PNG)
    async def probability(
        image_id: str, user: CurrentUser, store: StoreDep, blobs: BlobsDep, frame: FrameQuery = None
    ) -> Response:
        """The posterior probability of foreground, 0–255; of a stack, one frame (``?frame=k``)."""
        png = await volumes.consensus_png(store, blobs, user, image_id, probability=True, frame=frame)
        return Response(png, media_type="image/png", headers=NO_CACHE)

    @api.get(
        "/images/{image_id}/consensus/mask.nii.gz",
        response_class=Response,
        responses={**CONSENSUS_NIFTI, 404: {"description": "no consensus mask yet, or the task has no such label"}},
    )
    async def mask_volume(
        image_id: str, user: CurrentUser, store: StoreDep, blobs: BlobsDep, label: LabelQuery = None
    ) -> Response:
        """A stack's consensus volume as NIfTI-1 (gzipped): voxels 0/1, nibabel's array ``(x, y, z)``,
        ``pixdim`` the spacing in mm, the affine the source's orientation where it has one. For a task
        with labels the voxels are label indices (1-based, 0 background), or with ``label`` that
        label's mask, 0/1."""
        await _known_label(store, user, image_id, label)
        data = await volumes.consensus_nifti(store, blobs, user, image_id, probability=False, label=label)
        return Response(data, media_type=NIFTI_MEDIA_TYPE, headers=NO_CACHE)

    @api.get("/images/{image_id}/consensus/seg.dcm", response_class=Response, responses=CONSENSUS_SEG)
    async def mask_seg(image_id: str, user: CurrentUser, store: StoreDep, blobs: BlobsDep) -> Response:
        """The consensus of an image uploaded as DICOM (a series, a multi-frame file, one slice) as a
        binary DICOM Segmentation (highdicom): one segment per label (else one, "consensus"), frame k
        referencing the source instance (or frame) shown as frame k, in its frame of reference."""
        data = await volumes.consensus_seg(store, blobs, user, image_id)
        return Response(data, media_type=SEG_MEDIA_TYPE, headers=NO_CACHE)

    @api.get("/images/{image_id}/consensus/probability.nii.gz", response_class=Response, responses=CONSENSUS_NIFTI)
    async def probability_volume(image_id: str, user: CurrentUser, store: StoreDep, blobs: BlobsDep) -> Response:
        """A stack's posterior probability of foreground (0–255) as NIfTI-1, as ``mask.nii.gz``."""
        data = await volumes.consensus_nifti(store, blobs, user, image_id, probability=True)
        return Response(data, media_type=NIFTI_MEDIA_TYPE, headers=NO_CACHE)

    @api.put(
        "/images/{image_id}/reference",
        tags=["quality"],
        responses={**IMAGE_MANAGED, 422: {"description": "shapes that do not fit the task's tool or the image"}},
    )
    async def put_reference(image_id: str, body: ReferenceIn, user: CurrentUser, runtime: RuntimeDep) -> ReferenceOut:
        """Set (or replace) the expert reference of any image of the task. The image's raters are then
        scored against it (``quality``) and it counts in ``GET /tasks/{id}/evaluation``."""
        image = await handlers.set_reference(
            runtime.store,
            runtime.blobs,
            user,
            image_id,
            body.shapes,
            max_points=runtime.settings.max_points_per_shape,
            options=options(runtime),
            notify=runtime.relay.poke,
        )
        return _reference_out(image)

    @api.get(
        "/images/{image_id}/reference",
        tags=["quality"],
        responses={**IMAGE_MANAGED, 404: {"description": "no such image visible to the caller, or no reference"}},
    )
    async def get_reference(image_id: str, user: CurrentUser, store: StoreDep) -> ReferenceOut:
        image, _task = await managed_image(store, image_id, user)
        if not image.reference_shapes:
            raise NotFound(f"image {image_id} has no reference")
        return _reference_out(image)

    @api.get("/tasks/{task_id}/evaluation", tags=["quality"], responses=MANAGED)
    async def evaluation(task_id: str, user: CurrentUser, store: StoreDep, blobs: BlobsDep) -> JSONResponse:
        """The consensus and every rater against the expert references of the task's images (images
        with a reference and a consensus): for masks ``consensus: {dice, jaccard, mhd, pixel_error}``
        and per rater ``{dice, jaccard, sensitivity, specificity}``, means over the images; for points
        and polylines ``{precision, recall, rmse}`` of the one-to-one matches within the task's radius,
        pooled over the images. ``per_image`` has the consensus's figures image by image."""
        task = await managed_task(store, task_id, user)
        return JSONResponse(await handlers.evaluation(store, blobs, task))

    @api.get("/tasks/{task_id}/stats", responses=MANAGED)
    async def task_stats(task_id: str, user: CurrentUser, store: StoreDep) -> JSONResponse:
        """Progress (``coverage``: images by number of submissions) and every annotator's running
        performance, from counters kept as work arrives."""
        task = await managed_task(store, task_id, user)
        return JSONResponse(await handlers.task_stats(store, task))

    @api.get("/tasks/{task_id}/coverage", responses={**PAGED_RESPONSES, **MANAGED})
    async def coverage(task_id: str, user: CurrentUser, store: StoreDep, paging: PagingDep) -> list[CoverageOut]:
        """One row per image (tutorial images aside) by name: who submitted it, how many leases are out."""
        task = await managed_task(store, task_id, user)
        scope = f"coverage:{task.id}"
        page = await store.images.page_for_task(task.id, limit=paging.limit, after=paging.after(scope))
        paging.finish(scope, page)
        return [CoverageOut(**vars(row)) for row in handlers.coverage_rows(task, page.items, utcnow())]

    @api.get("/me/stats")
    async def my_stats(user: CurrentUser, store: StoreDep) -> JSONResponse:
        return JSONResponse(await handlers.user_stats(store, user.id))

    return api


def _reference_out(image: Image) -> ReferenceOut:
    return ReferenceOut(
        image_id=image.id,
        shapes=image.reference_shapes,
        version=image.reference_version,
        updated_by=image.reference_by,
        updated_at=image.reference_at,
    )


async def _known_label(store: Store, user: User, image_id: str, label: str | None) -> None:
    _image, task = await managed_image(store, image_id, user)
    if label is not None and label not in task.label_names:
        known = ", ".join(task.label_names)
        detail = f"the task has no label {label!r}; its labels are {known}" if known else "the task has no labels"
        raise NotFound(detail)
