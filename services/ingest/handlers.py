"""Tasks, images and tutorial references. Knows nothing about HTTP or Kafka."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from crowdseg.access import managed_task, sees
from crowdseg.domain import (
    Image,
    JsonFloat,
    JsonInt,
    Metric,
    Order,
    RevealReference,
    Role,
    Screening,
    Shape,
    Task,
    TaskLabels,
    TaskStatus,
    Tool,
    User,
    Visibility,
    json_number,
    utcnow,
)
from crowdseg.errors import Conflict, Forbidden, InvalidInput, NotFound
from crowdseg.events import ImageIngested
from crowdseg.geometry import validate_shapes
from crowdseg.ports import BlobStore, Store
from crowdseg.services.ingest.archives import ArchiveLimits, ArchiveRejected, is_zip, read_zip
from crowdseg.services.ingest.imaging import (
    DecodedImage,
    ImageLimits,
    ImageRejected,
    decode_image,
    decode_series,
    load_values,
    render_window,
)
from crowdseg.services.ingest.series import gather_series
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints, model_validator

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
RaterIds = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=100)]], Field(max_length=1000)]
MAX_INSTRUCTIONS = 50_000
Notify = Callable[[], None]


class TaskFields(BaseModel):
    # Numbers and flags are strict (issue 9: `false` was taken as a threshold of 0 and `"yes"` as true,
    # values the OpenAPI document rejects); `3.0` is still the integer 3.
    model_config = ConfigDict(extra="forbid")
    instructions: str = Field(default="", max_length=MAX_INSTRUCTIONS)
    replicates: JsonInt = Field(default=3, ge=1, le=1000)
    min_replicates: Annotated[int, Field(ge=1, le=1000), BeforeValidator(json_number)] | None = Field(
        default=None, description="adaptive replicates: at most `replicates`; null: `replicates` (fixed coverage)"
    )
    confidence: JsonFloat = Field(default=0.9, ge=0, le=1)
    order: Order = Order.NAME_ASC
    unseen_first: StrictBool = True
    metric: Metric = Metric.DICE
    pass_threshold: JsonFloat = Field(default=0.7, ge=0, le=1e6)
    reveal_reference: RevealReference = RevealReference.AFTER_PASSING
    visibility: Visibility = Visibility.PUBLIC
    max_shapes: JsonInt = Field(default=10, ge=1, le=1000)
    lease_seconds: JsonInt = Field(default=600, ge=10, le=7 * 24 * 3600)
    labels: TaskLabels | None = None
    labels_exclusive: StrictBool = True
    interpolate_frames: StrictBool = False
    """Stacks, contour and polygon tasks: fill each rater's volume between the frames they drew on."""

    screening: Screening | None = None
    gold_rate: JsonFloat = Field(default=0.0, ge=0, le=1)
    gold_feedback: StrictBool = False


class CreateTask(TaskFields):
    title: Title
    tool: Tool
    status: TaskStatus = TaskStatus.OPEN


class UpdateTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title | None = None
    instructions: str | None = Field(default=None, max_length=MAX_INSTRUCTIONS)
    replicates: Annotated[int, Field(ge=1, le=1000), BeforeValidator(json_number)] | None = None
    min_replicates: Annotated[int, Field(ge=1, le=1000), BeforeValidator(json_number)] | None = None
    """``null``: back to ``replicates`` (fixed coverage)."""
    confidence: Annotated[float, Field(ge=0, le=1), BeforeValidator(json_number)] | None = None
    order: Order | None = None
    unseen_first: StrictBool | None = None
    metric: Metric | None = None
    pass_threshold: Annotated[float, Field(ge=0, le=1e6), BeforeValidator(json_number)] | None = None
    reveal_reference: RevealReference | None = None
    visibility: Visibility | None = None
    max_shapes: Annotated[int, Field(ge=1, le=1000), BeforeValidator(json_number)] | None = None
    lease_seconds: Annotated[int, Field(ge=10, le=7 * 24 * 3600), BeforeValidator(json_number)] | None = None
    status: TaskStatus | None = None
    labels: TaskLabels | None = None
    labels_exclusive: StrictBool | None = None
    interpolate_frames: StrictBool | None = None

    screening: Screening | None = None
    """``null`` switches screening off."""
    excluded_users: RaterIds | None = None
    """Raters left out of every consensus by hand (the whole list: ``[]`` re-admits them all)."""
    admitted_users: RaterIds | None = None
    """Raters kept in every consensus by hand, whatever screening says (the whole list)."""

    @model_validator(mode="after")
    def _excluded_or_admitted(self) -> UpdateTask:
        both = set(self.excluded_users or []) & set(self.admitted_users or [])
        if both:
            raise ValueError(f"a rater cannot be both excluded and admitted: {', '.join(sorted(both))}")
        return self

    gold_rate: Annotated[float, Field(ge=0, le=1), BeforeValidator(json_number)] | None = None
    gold_feedback: StrictBool | None = None


class AddMember(BaseModel):
    """A member by id, or by email (a task master may not list every account to find the id)."""

    # The document says what the validator checks: exactly one of the two (issue 9).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["user_id"], "properties": {"user_id": {"type": "string"}, "email": {"type": "null"}}},
                {"required": ["email"], "properties": {"email": {"type": "string"}, "user_id": {"type": "null"}}},
            ]
        },
    )
    user_id: str | None = Field(default=None, min_length=1, max_length=100)
    email: str | None = Field(default=None, min_length=3, max_length=320)

    @model_validator(mode="after")
    def _one_of(self) -> AddMember:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give either user_id or email")
        return self


@dataclass(frozen=True)
class UploadedFile:
    name: str
    data: bytes
    # The files of a DICOM series, when this upload is one (``data`` is then their stored ZIP).
    slices: tuple[bytes, ...] = ()


@dataclass
class UploadReport:
    accepted: list[Image] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


async def create_task(store: Store, user: User, command: CreateTask) -> Task:
    if not user.has(Role.TASKMASTER):
        raise Forbidden("creating tasks needs the taskmaster role")
    task = Task(owner_id=user.id, **command.model_dump(exclude_none=True))
    check_replicates(task)
    _check_interpolation(task)
    await store.tasks.add(task)
    return task


async def update_task(store: Store, user: User, task_id: str, command: UpdateTask) -> Task:
    task = await managed_task(store, task_id, user)
    changes = command.model_dump(exclude_unset=True, exclude_none=True)
    if "labels" in changes:
        changes["labels"] = command.labels
    if _changes_labels(task, command) and await _has_submissions(store, task):
        _check_label_change(task, command)
    if _changes_interpolation(task, command) and await _has_submissions(store, task):
        raise Conflict("interpolate_frames cannot change once the task has submissions")
    changes.update(screening_changes(task, command))
    if "min_replicates" in command.model_fields_set and command.min_replicates is None:
        changes["min_replicates"] = None  # back to fixed coverage
    changes.update(await by_hand_changes(store, task, command))
    task = task.model_copy(update={**changes, "updated_at": utcnow()})
    check_replicates(task)
    _check_interpolation(task)
    await store.tasks.replace(task)
    return task


def _changes_labels(task: Task, command: UpdateTask) -> bool:
    return (command.labels is not None and command.labels != task.labels) or (
        command.labels_exclusive is not None and command.labels_exclusive != task.labels_exclusive
    )


def _changes_interpolation(task: Task, command: UpdateTask) -> bool:
    return command.interpolate_frames is not None and command.interpolate_frames != task.interpolate_frames


def _check_interpolation(task: Task) -> None:
    if task.interpolate_frames and not task.tool.makes_masks:
        raise InvalidInput(
            f"interpolate_frames fills masks between frames: it needs a contour or polygon task, not {task.tool.value}"
        )


async def _has_submissions(store: Store, task: Task) -> bool:
    return any((await store.submissions.count_by_image(task.id)).values())


def _check_label_change(task: Task, command: UpdateTask) -> None:
    """Once shapes carry labels, a label's name and index stay: labels may only be added at the end
    (and recoloured), and exclusivity stays as it is."""
    if command.labels_exclusive is not None and command.labels_exclusive != task.labels_exclusive:
        raise Conflict("labels_exclusive cannot change once the task has submissions")
    kept = [label.name for label in (command.labels or [])][: len(task.labels)]
    if kept != task.label_names:
        raise Conflict(
            "the task has submissions: its labels "
            f"({', '.join(task.label_names) or 'none'}) can only be kept in order, recoloured and added to"
        )


def check_replicates(task: Task) -> None:
    if task.min_replicates is not None and task.min_replicates > task.replicates:
        raise InvalidInput(f"min_replicates ({task.min_replicates}) must not exceed replicates ({task.replicates})")


async def by_hand_changes(store: Store, task: Task, command: UpdateTask) -> dict[str, object]:
    """Raters excluded or admitted by hand: one list replaced drops its ids from the other (re-admitting
    a rater takes them off ``excluded_users``), and any change makes the consensus service rescore."""
    excluded = _unique(command.excluded_users) if "excluded_users" in command.model_fields_set else None
    admitted = _unique(command.admitted_users) if "admitted_users" in command.model_fields_set else None
    for user_id in [*(excluded or []), *(admitted or [])]:
        if user_id not in task.excluded_users + task.admitted_users and await store.users.get(user_id) is None:
            raise NotFound(f"no account with the id {user_id}")
    if excluded is not None and admitted is None:
        admitted = [u for u in task.admitted_users if u not in excluded]
    if admitted is not None and excluded is None:
        excluded = [u for u in task.excluded_users if u not in admitted]
    if excluded is None or admitted is None or (excluded, admitted) == (task.excluded_users, task.admitted_users):
        return {}
    revision = task.screening_revision + 1
    return {"excluded_users": excluded, "admitted_users": admitted, "screening_revision": revision}


def _unique(ids: list[str] | None) -> list[str]:
    return list(dict.fromkeys(ids or []))


def screening_changes(task: Task, command: UpdateTask) -> dict[str, object]:
    """A new screening (``null`` included) and the revision that makes the consensus service rescore."""
    if "screening" not in command.model_fields_set or command.screening == task.screening:
        return {}
    return {"screening": command.screening, "screening_revision": task.screening_revision + 1}


async def tasks_visible_to(store: Store, user: User) -> list[Task]:
    return [task for task in await store.tasks.all() if sees(task, user)]


async def add_member(store: Store, user: User, task_id: str, command: AddMember) -> Task:
    await managed_task(store, task_id, user)
    if command.email is not None:
        member = await store.users.by_email(command.email.strip().lower())
        if member is None:
            raise NotFound(f"no account with the email {command.email}")
    else:
        member = await store.users.get(command.user_id or "")
        if member is None:
            raise NotFound(f"user {command.user_id} not found")
    await store.tasks.add_member(task_id, member.id)
    return await managed_task(store, task_id, user)


async def remove_member(store: Store, user: User, task_id: str, member_id: str) -> Task:
    """Take a member off the task: a private task is then invisible to them (404), like any other."""
    await managed_task(store, task_id, user)
    if not await store.tasks.remove_member(task_id, member_id):
        raise NotFound(f"user {member_id} is not a member of this task")
    return await managed_task(store, task_id, user)


def expand_archives(
    files: list[UploadedFile], limits: ArchiveLimits
) -> tuple[list[UploadedFile], list[tuple[str, str]]]:
    """ZIP archives become their entries; refused entries and archives are reported, never stored."""
    expanded: list[UploadedFile] = []
    rejected: list[tuple[str, str]] = []
    for upload in files:
        if not is_zip(upload.data):
            expanded.append(upload)
            continue
        try:
            entries, refusals = read_zip(upload.data, limits)
        except ArchiveRejected as exc:
            rejected.append((upload.name, exc.reason))
            continue
        singles, series = gather_series([(entry.name, entry.data) for entry in entries])
        expanded.extend(UploadedFile(name, data) for name, data in singles)
        expanded.extend(UploadedFile(s.name, s.archive(), tuple(data for _, data in s.files)) for s in series)
        rejected.extend((f"{upload.name}/{refusal.name}", refusal.reason) for refusal in refusals)
    return expanded, rejected


# Images decoded and written together: bounds the renditions held in memory at once while keeping
# both cores busy (Pillow releases the GIL while it decodes and encodes) and the disk fed.
DECODE_BATCH = 64
WRITES_AT_ONCE = 16
DUPLICATE_NAME = "an image with this name is already in the task"


async def upload_images(
    store: Store,
    blobs: BlobStore,
    user: User,
    task_id: str,
    files: list[UploadedFile],
    *,
    image_limits: ImageLimits,
    archive_limits: ArchiveLimits,
    notify: Notify,
) -> UploadReport:
    """Every image's objects are written first, then all the documents in one store call: an image
    is accepted (and listed, and announced) only once its original, rendition and thumbnail exist."""
    task = await managed_task(store, task_id, user)
    candidates, rejected = await asyncio.to_thread(expand_archives, files, archive_limits)
    report = UploadReport(rejected=rejected)
    staged: list[tuple[str, Image]] = []
    writing: asyncio.Future[None] | None = None  # the previous batch's objects, written while this one decodes
    try:
        for start in range(0, len(candidates), DECODE_BATCH):
            batch = candidates[start : start + DECODE_BATCH]
            outcomes = await asyncio.gather(*(asyncio.to_thread(_decode, upload, image_limits) for upload in batch))
            ready: list[tuple[Image, UploadedFile, DecodedImage]] = []
            for upload, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, ImageRejected):
                    report.rejected.append((upload.name, outcome.reason))
                else:
                    ready.append((_new_image(task, upload, outcome, tutorial=False, reference=[]), upload, outcome))
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(_put_objects(blobs, ready))
            staged.extend((upload.name, image) for image, upload, _decoded in ready)
        if writing is not None:
            await writing
    finally:
        if writing is not None and not writing.done():
            writing.cancel()
    added = await store.images.add_many([image for _name, image in staged]) if staged else []
    for (name, image), stored in zip(staged, added, strict=True):
        if stored:
            report.accepted.append(image)
        else:
            report.rejected.append((name, DUPLICATE_NAME))
    if report.accepted:
        notify()
    return report


def _decode(upload: UploadedFile, limits: ImageLimits) -> DecodedImage | ImageRejected:
    try:
        if upload.slices:
            return decode_series(upload.slices, limits)
        return decode_image(upload.name, upload.data, limits)
    except ImageRejected as exc:
        return exc


def _new_image(
    task: Task, upload: UploadedFile, decoded: DecodedImage, *, tutorial: bool, reference: list[Shape]
) -> Image:
    """The image's document, naming its objects, with its ``image.ingested`` event in its outbox."""
    image = Image(
        task_id=task.id,
        name=_clean_name(upload.name),
        width=decoded.width,
        height=decoded.height,
        source_format=decoded.source_format,
        original_key="",
        display_key="",
        display_media_type=decoded.display_media_type,
        thumbnail_key="",
        thumbnail_media_type=decoded.thumbnail_media_type,
        frames=decoded.frames,
        spacing=decoded.spacing,
        affine=decoded.affine,
        window=decoded.window,
        windows=[list(w) for w in decoded.windows],
        tutorial=tutorial,
        reference_shapes=reference,
    )
    prefix = f"images/{task.id}/{image.id}"
    image.original_key = f"{prefix}/original"
    # An upload that already is its display rendition (or a rendition that already is its thumbnail)
    # is stored once, under the key of the object it is.
    image.display_key = image.original_key if decoded.display_is_original else f"{prefix}/display"
    image.thumbnail_key = image.display_key if decoded.thumbnail_is_display else f"{prefix}/thumbnail"
    event = ImageIngested(
        task_id=task.id,
        image_id=image.id,
        name=image.name,
        width=image.width,
        height=image.height,
        display_key=image.display_key,
        frames=image.frames,
        window=image.window,
    )
    image.outbox = [] if tutorial else [event.pending()]
    return image


async def _put_objects(blobs: BlobStore, images: list[tuple[Image, UploadedFile, DecodedImage]]) -> None:
    """Write the images' objects, several at once; returns once every one is stored."""
    writes: list[tuple[str, bytes, str]] = []
    for image, upload, decoded in images:
        writes.append((image.original_key, upload.data, "application/octet-stream"))
        if image.display_key != image.original_key:
            writes.append((image.display_key, decoded.display, decoded.display_media_type))
        if image.thumbnail_key != image.display_key:
            writes.append((image.thumbnail_key, decoded.thumbnail, decoded.thumbnail_media_type))
        writes.extend(_frame_writes(image, decoded))
    slots = asyncio.Semaphore(WRITES_AT_ONCE)

    async def put(key: str, data: bytes, content_type: str) -> None:
        async with slots:
            await blobs.put(key, data, content_type)

    await asyncio.gather(*(put(*write) for write in writes))


def _frame_writes(image: Image, decoded: DecodedImage) -> list[tuple[str, bytes, str]]:
    """Frames 1, 2, ... of a stack, and every frame's raw values where they are kept."""
    writes: list[tuple[str, bytes, str]] = []
    for frame, rendition in enumerate(decoded.more_frames, start=1):
        writes.append((frame_key(image, frame, "display"), rendition.display, image.display_media_type))
        if not decoded.thumbnail_is_display:
            writes.append((frame_key(image, frame, "thumbnail"), rendition.thumbnail, image.thumbnail_media_type))
    for frame, values in enumerate(decoded.values):
        writes.append((frame_key(image, frame, "values"), values, "application/octet-stream"))
    return writes


def frame_key(image: Image, frame: int, kind: str) -> str:
    """Where a frame's object is: frame 0's display and thumbnail are the image's own keys."""
    if frame == 0 and kind == "display":
        return image.display_key
    if frame == 0 and kind == "thumbnail":
        return image.thumbnail_key
    if kind == "thumbnail" and image.thumbnail_key == image.display_key:
        kind = "display"
    return f"images/{image.task_id}/{image.id}/frames/{frame}/{kind}"


@dataclass(frozen=True)
class Rendition:
    data: bytes
    media_type: str


async def frame_rendition(
    blobs: BlobStore, image: Image, frame: int, *, thumbnail: bool = False, window: str | None = None
) -> Rendition:
    """A frame's display rendition or thumbnail; under another window, rendered once and then kept."""
    if not 0 <= frame < image.frames:
        raise InvalidInput(f"frame {frame} is out of range: the image has {image.frames} frame(s), from 0")
    if window is None:
        kind, media_type = (
            ("thumbnail", image.thumbnail_media_type) if thumbnail else ("display", image.display_media_type)
        )
        return Rendition(await blobs.get(frame_key(image, frame, kind)), media_type)
    center, width = _parse_window(image, window)
    key = frame_key(image, frame, f"window/{center!r}_{width!r}.png")
    try:
        return Rendition(await blobs.get(key), "image/png")
    except NotFound:
        pass
    values = load_values(await blobs.get(frame_key(image, frame, "values")))
    rendered = await asyncio.to_thread(render_window, values, center, width)
    # Concurrent first requests render the same bytes; the last write wins harmlessly.
    await blobs.put(key, rendered, "image/png")
    return Rendition(rendered, "image/png")


def _parse_window(image: Image, window: str) -> tuple[float, float]:
    if image.window is None:
        raise InvalidInput(
            "this image has no raw values to window (greyscale DICOM, NIfTI and greyscale TIFF stacks have; colour"
            " images are shown in colour, as uploaded)"
        )
    parts = window.split(",")
    try:
        center, width = (float(part) for part in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        center, width = math.nan, math.nan
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise InvalidInput(f"window {window!r} is not 'center,width' with finite numbers and a positive width")
    return center, width


async def _store_image(
    store: Store,
    blobs: BlobStore,
    task: Task,
    upload: UploadedFile,
    decoded: DecodedImage,
    *,
    tutorial: bool,
    reference: list[Shape],
) -> Image | None:
    """Objects first, then the document that makes them visible: a crash leaves no half image."""
    image = _new_image(task, upload, decoded, tutorial=tutorial, reference=reference)
    await _put_objects(blobs, [(image, upload, decoded)])
    return image if await store.images.add(image) else None


def _clean_name(name: str) -> str:
    printable = "".join(ch for ch in name.replace("\\", "/") if ch.isprintable())
    # A display name, never a path that climbs: empty, "." and ".." components are dropped.
    parts = [part.strip() for part in printable.split("/")]
    cleaned = "/".join(part for part in parts if part not in ("", ".", ".."))
    return cleaned[:255] or "unnamed"


async def add_tutorial(
    store: Store,
    blobs: BlobStore,
    user: User,
    task_id: str,
    upload: UploadedFile,
    shapes: list[Shape],
    *,
    image_limits: ImageLimits,
    max_points: int,
) -> Image:
    task = await managed_task(store, task_id, user)
    try:
        decoded = await asyncio.to_thread(decode_image, upload.name, upload.data, image_limits)
    except ImageRejected as exc:
        raise InvalidInput(f"{upload.name}: {exc.reason}") from exc
    if not shapes:
        raise InvalidInput("a tutorial image needs a reference annotation with at least one shape")
    reference = validate_shapes(
        shapes,
        tool=task.tool,
        width=decoded.width,
        height=decoded.height,
        max_shapes=task.max_shapes,
        max_points=max_points,
        labels=task.label_names,
    )
    upload = UploadedFile(f"tutorial/{upload.name}", upload.data)
    image = await _store_image(store, blobs, task, upload, decoded, tutorial=True, reference=reference)
    if image is None:
        raise InvalidInput(f"a tutorial image named {upload.name} already exists")
    return image
