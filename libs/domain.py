"""Domain models shared by every service.

Documents are pydantic models; stores persist them as JSON. Coordinates are pixels of the
display rendition (x right, y down), which is also the original image's pixel grid.
"""

from __future__ import annotations

import math
import secrets
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


_DATETIME = TypeAdapter(datetime)


def json_time(value: datetime) -> str:
    """A time as the documents' JSON spells it, for comparing with stored times."""
    text: str = _DATETIME.dump_python(value, mode="json")
    return text


class Role(StrEnum):
    ANNOTATOR = "annotator"
    TASKMASTER = "taskmaster"
    ADMIN = "admin"


class Tool(StrEnum):
    CONTOUR = "contour"
    POLYGON = "polygon"
    POINT = "point"
    POLYLINE = "polyline"

    @property
    def makes_masks(self) -> bool:
        return self in (Tool.CONTOUR, Tool.POLYGON)

    @property
    def min_points(self) -> int:
        return {Tool.POINT: 1, Tool.POLYLINE: 2}.get(self, 3)


class Order(StrEnum):
    NAME_ASC = "name_asc"
    NAME_DESC = "name_desc"
    RANDOM = "random"


class Metric(StrEnum):
    DICE = "dice"
    JACCARD = "jaccard"
    MHD = "mhd"


class Visibility(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class TaskStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


class RevealReference(StrEnum):
    """When a qualification attempt's answer shows the tutorial image's reference (issue 9: showing it
    after any failed attempt gave the answer key away)."""

    AFTER_PASSING = "after_passing"  # once the user has passed the qualification
    # after every attempt, and that image is then spent for the user: the next attempt is on another one
    AFTER_EACH_ATTEMPT = "after_each_attempt"
    NEVER = "never"


class Document(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PendingEvent(BaseModel):
    """An event waiting in its document's outbox until the relay has published it."""

    topic: str
    key: str
    payload: dict[str, Any]


class User(Document):
    id: str = Field(default_factory=new_id)
    email: str
    name: str
    password_hash: str
    roles: list[Role] = Field(default_factory=lambda: [Role.ANNOTATOR])
    created_at: datetime = Field(default_factory=utcnow)
    # Tokens carry the version they were issued at; signing out bumps it, which ends them all.
    token_version: int = 0
    # An anonymous account made by opening a study link: it sees that link's task and nothing else.
    link_id: str | None = None
    link_task_id: str | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles or Role.ADMIN in self.roles


# No leading or trailing white space, said as a pattern so that the document holds the whole rule. The
# white space is listed, not `\s`: Python's, Rust's (pydantic-core) and ECMAScript's `\s` differ (on
# U+001C–U+001F, U+0085, U+FEFF), and a name one of them calls blank the others took (schemathesis found
# "\u0085…" refused though the document allowed it).
BLANK = r" \t\n\r\v\f\u001c-\u001f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
LabelName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=rf"^[^{BLANK}](?:[\s\S]*[^{BLANK}])?$")
]
MAX_LABELS = 50


class TaskLabel(BaseModel):
    """One kind of object a task's shapes are labelled with; its 1-based index is its value in label maps."""

    model_config = ConfigDict(extra="forbid")
    name: LabelName
    color: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", description="`#rrggbb`")]


def _unique_names(labels: list[TaskLabel]) -> list[TaskLabel]:
    names = [label.name for label in labels]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"label names must be unique; repeated: {', '.join(repeated)}")
    return labels


# The document says `uniqueItems`; names are unique too, which JSON Schema cannot say of a property.
TaskLabels = Annotated[
    list[TaskLabel],
    Field(min_length=1, max_length=MAX_LABELS, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique_names),
]


class Screening(BaseModel):
    """Raters whose task-wide quality is below ``min_quality``, with at least the flagging minimum of
    images behind it, are left out of every consensus of the task (their submissions are kept)."""

    model_config = ConfigDict(extra="forbid")
    min_quality: Annotated[float, Field(ge=0, le=1), BeforeValidator(json_number)]


class Task(Document):
    id: str = Field(default_factory=new_id)
    owner_id: str
    title: str
    instructions: str = ""
    tool: Tool
    replicates: int = 3
    min_replicates: int | None = None
    """Adaptive replicates: an image retires after this many accepted submissions once its consensus is
    ``confidence`` certain (crowdseg.consensus.certainty); None: ``replicates`` (fixed coverage)."""
    confidence: float = 0.9
    order: Order = Order.NAME_ASC
    unseen_first: bool = True
    metric: Metric = Metric.DICE
    pass_threshold: float = 0.7
    reveal_reference: RevealReference = RevealReference.AFTER_PASSING
    visibility: Visibility = Visibility.PUBLIC
    max_shapes: int = 10
    status: TaskStatus = TaskStatus.OPEN
    lease_seconds: int = 600
    labels: list[TaskLabel] = Field(default_factory=list)
    """Empty: shapes carry no label (the behaviour before labels)."""
    labels_exclusive: bool = True
    """A pixel has at most one label (multi-label STAPLE); false: labels may overlap (one STAPLE each)."""
    interpolate_frames: bool = False
    """Stacks, mask tools: each rater's volume is filled between the frames they drew on by shape
    interpolation (crowdseg.consensus.interpolation); the consensus lists the filled frames per rater."""

    gold_rate: float = 0.0
    """The share of ``next`` answers that are reference images (gold), at an annotator's start; it
    falls as their count grows (crowdseg.services.assign.gold). 0: reference images are crowd work."""
    gold_feedback: bool = False
    """Whether the answer to a gold submission shows the reference's shapes."""
    screening: Screening | None = None
    excluded_users: list[str] = Field(default_factory=list)
    """Raters the task master left out by hand: out of every consensus of the task, whatever screening says."""
    admitted_users: list[str] = Field(default_factory=list)
    """Raters the task master re-admitted by hand: in every consensus, whatever screening says."""
    screening_revision: int = 0
    """Bumped by every change of ``screening``, ``excluded_users`` or ``admitted_users``: the task's
    consensus documents are then rescored."""
    members: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def retire_after(self) -> int:
        """The submissions after which an image may retire early (``replicates`` when not adaptive)."""
        return min(self.min_replicates or self.replicates, self.replicates)

    @property
    def adaptive_confidence(self) -> float | None:
        """``confidence`` where images may retire early (``min_replicates`` below ``replicates``), else None."""
        return self.confidence if self.retire_after < self.replicates else None

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]


class Lease(BaseModel):
    user_id: str
    expires_at: datetime


class Image(Document):
    """One uploaded image with its coverage: who submitted it and who holds a lease on it."""

    id: str = Field(default_factory=new_id)
    task_id: str
    name: str
    width: int
    height: int
    source_format: str
    original_key: str
    display_key: str
    display_media_type: str
    thumbnail_key: str
    thumbnail_media_type: str
    frames: int = 1
    """Frames of a stack (multi-page TIFF, multi-frame DICOM, a DICOM series, NIfTI); 1 for a plain image."""
    spacing: tuple[float, float, float] | None = None
    """Voxel spacing ``(z, y, x)`` in mm, where the source file says so."""
    affine: list[list[float]] | None = None
    """The 4×4 voxel-to-patient (RAS, NIfTI convention) matrix of a stack, where the source has one."""
    window: tuple[float, float] | None = None
    """Default ``(center, width)`` of the raw values kept for greyscale DICOM, NIfTI and greyscale TIFF
    stacks; other windows render on request."""
    windows: list[list[float]] = Field(default_factory=list)
    """Every ``[center, width]`` a DICOM file offers (several Window Center/Width values), the default first."""
    tutorial: bool = False
    reference_shapes: list[Shape] = Field(default_factory=list)
    # Bumped by every change of an expert reference, so that a consensus scored against an older
    # one (or none) is replaced although it includes as many submissions.
    reference_version: int = 0
    reference_by: str | None = None
    reference_at: datetime | None = None
    submitted_by: list[str] = Field(default_factory=list)
    rejected_by: list[str] = Field(default_factory=list)
    """Raters whose submission of this image the task master rejected: out of ``submitted_by`` (so the
    image needs one more), and never leased the image again."""
    leases: list[Lease] = Field(default_factory=list)
    certainty: float | None = None
    """Its latest consensus's certainty in 0–1 (crowdseg.consensus.certainty), set by the consensus worker."""
    retired: bool = False
    """Adaptive replicates: certain enough with enough submissions; leased to no one any more."""
    created_at: datetime = Field(default_factory=utcnow)
    outbox: list[PendingEvent] = Field(default_factory=list)

    def active_leases(self, now: datetime) -> list[Lease]:
        return [lease for lease in self.leases if lease.expires_at > now]

    def with_rater_moved(self, user_id: str, *, rejected: bool) -> Image | None:
        """This image with the rater among the rejected (or back among the submitters); None when
        nothing changes."""
        if user_id not in (self.submitted_by if rejected else self.rejected_by):
            return None
        submitters = [u for u in self.submitted_by if u != user_id]
        rejections = [u for u in self.rejected_by if u != user_id]
        if rejected:
            return self.model_copy(update={"submitted_by": submitters, "rejected_by": [*rejections, user_id]})
        return self.model_copy(update={"submitted_by": [*submitters, user_id], "rejected_by": rejections})


def json_number(value: object) -> object:
    """Lax number parsing without its surprises: a JSON ``true`` or ``"3"`` is not a number (issue 9:
    they were taken as 1 and 3, values the OpenAPI document rejects); ``3.0`` is still the integer 3."""
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a number")
    return value


# Optional ones with bounds: ``Annotated[int, Field(ge=...), BeforeValidator(json_number)] | None``, the
# bounds first, or the document loses them (pydantic then writes `ge` instead of `minimum`).
JsonInt = Annotated[int, BeforeValidator(json_number)]
JsonFloat = Annotated[float, BeforeValidator(json_number)]
Coordinate = Annotated[float, BeforeValidator(json_number), Field(allow_inf_nan=False)]


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Tool
    points: list[tuple[Coordinate, Coordinate]]
    label: str | None = Field(default=None, max_length=200)
    # Left out of the JSON when None, so a plain image's shapes read as they did before stacks.
    frame: Annotated[int, Field(ge=0, le=100_000), BeforeValidator(json_number)] | None = Field(
        default=None, exclude_if=lambda frame: frame is None
    )
    """The frame of a stack the shape is drawn on (0-based); None on a plain image."""

    @field_validator("points")
    @classmethod
    def _finite(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if any(not (math.isfinite(x) and math.isfinite(y)) for x, y in points):
            raise ValueError("coordinates must be finite numbers")
        return points


ReviewDecision = Literal["accept", "reject"]


class Review(BaseModel):
    """A task master's verdict on one submission; ``revision`` counts the changes of verdict."""

    decision: ReviewDecision
    reason: str | None = None
    by: str
    at: datetime
    revision: int = 1

    def same_verdict(self, decision: ReviewDecision, reason: str | None) -> bool:
        return self.decision == decision and self.reason == reason


class GoldScore(BaseModel):
    """A submission on a gold image (served from the task's reference images): scored against the
    reference at once, counted in the rater's ``quality``, never in a consensus."""

    metric: Metric
    score: float
    """The task's metric against the reference (what the annotator is shown)."""
    quality: float | None = None
    """Agreement in 0–1 with the reference (crowdseg.consensus.quality), pooled into the rater's quality."""


GOLD_SLOTS = 1_000_000_000
"""The replicates a gold image is leased and claimed with: any number of annotators may answer it."""


def is_gold_image(image: Image) -> bool:
    """An image a task with ``gold_rate`` serves as gold: a plain (not stack, not tutorial) image
    with an expert reference."""
    return not image.tutorial and bool(image.reference_shapes) and image.frames <= 1


class Submission(Document):
    id: str
    task_id: str
    image_id: str
    user_id: str
    shapes: list[Shape]
    started_at: datetime | None = None
    duration_ms: int | None = None
    click_times: list[int] | None = None
    mask_key: str | None = None
    review: Review | None = None
    gold: GoldScore | None = None
    """Set on a gold answer; such a submission is never part of a consensus."""
    created_at: datetime = Field(default_factory=utcnow)
    outbox: list[PendingEvent] = Field(default_factory=list)

    @property
    def rejected(self) -> bool:
        return self.review is not None and self.review.decision == "reject"

    @property
    def review_revision(self) -> int:
        return 0 if self.review is None else self.review.revision

    def with_review(self, review: Review, event: PendingEvent) -> Submission | None:
        """This submission with the verdict (one revision past the stored one's) and ``event``; None
        when it already has that decision and reason."""
        if self.review is not None and self.review.same_verdict(review.decision, review.reason):
            return None
        review = review.model_copy(update={"revision": self.review_revision + 1})
        return self.model_copy(update={"review": review, "outbox": [*self.outbox, event]})


class RaterScore(BaseModel):
    user_id: str
    submission_id: str
    sensitivity: float | None = None
    specificity: float | None = None
    precision: float | None = None
    recall: float | None = None
    quality: float | None = None
    """Agreement in 0–1 on this image (crowdseg.consensus.quality): with the leave-one-out consensus
    of the other raters, or with the image's reference where it has one (``quality_basis``)."""
    quality_basis: Literal["crowd", "reference"] | None = None
    excluded: bool = False
    """Left out of this consensus by the task's screening (scored, but not fused)."""
    interpolated_frames: list[int] | None = None
    """Stacks of a task with ``interpolate_frames``: the frames of this rater's volume filled by
    interpolation between the frames they drew on (not drawn by them)."""
    # This image's (expected) confusion counts, pooled across a task's images into the running
    # performance (crowdseg.consensus.performance); None in documents written before they existed.
    tp: float | None = None
    fp: float | None = None
    fn: float | None = None
    tn: float | None = None


class Consensus(Document):
    """The consensus of one image; replaced only by one that includes more submissions."""

    image_id: str
    task_id: str
    version: int
    submissions: int
    submission_ids: list[str]
    method: str
    tool: Tool
    raters: list[RaterScore]
    reference_version: int = 0
    """The image's ``reference_version`` the rater scores were measured against."""
    screening_revision: int = 0
    """The task's ``screening_revision`` this consensus was screened by."""
    reviews: int = 0
    """The review revisions of the image's submissions, summed when it was computed: a consensus after
    a review replaces one with more submissions (the rejected one left)."""
    scoring: int = 0
    """How the rater scores were computed (crowdseg.consensus.quality.SCORING); 0 before rater quality
    was agreement in 0–1. A consensus scored by an older way is recomputed by reconciliation."""
    radius: float | None = None
    """Points and polylines: the matching radius in pixels (clustering, quality, evaluation)."""
    certainty: float | None = None
    """How certain the consensus is, in 0–1 (crowdseg.consensus.certainty); None where no rule applies."""
    retired: bool = False
    """The image retired with this consensus (adaptive replicates: ``min_replicates`` and ``confidence``)."""
    prior: float | None = None
    iterations: int | None = None
    mask_key: str | None = None
    probability_key: str | None = None
    points: list[dict[str, Any]] | None = None
    lines: list[dict[str, Any]] | None = None
    polygons: list[dict[str, Any]] | None = None
    labels: list[dict[str, Any]] | None = None
    """A labelled task's consensus per label, each with its raters' scores on that label."""
    label_map_key: str | None = None
    """Mask tools with labels: the consensus label map (0 background, i the task's i-th label)."""
    label_mask_keys: dict[str, str] | None = None
    """Mask tools with labels: each label's binary consensus mask, by label name."""
    updated_at: datetime = Field(default_factory=utcnow)
    outbox: list[PendingEvent] = Field(default_factory=list)


class QualificationAttempt(Document):
    id: str = Field(default_factory=new_id)
    task_id: str
    user_id: str
    image_id: str
    shapes: list[Shape]
    metric: Metric
    score: float
    passed: bool
    created_at: datetime = Field(default_factory=utcnow)


ExportStatus = Literal["queued", "running", "done", "failed"]


class Export(Document):
    id: str = Field(default_factory=new_id)
    task_id: str
    requested_by: str
    status: ExportStatus = "queued"
    progress: float = 0.0
    error: str | None = None
    archive_key: str | None = None
    size_bytes: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    outbox: list[PendingEvent] = Field(default_factory=list)


def new_secret_id() -> str:
    """An id that is also a credential (it is the URL a study panel or an invitee opens): unguessable.

    Never beginning with "-": a spreadsheet cell that does is escaped with a leading "'" (the ledger's
    rule against formula injection), and the ledger's link id would then differ from the link's."""
    while True:
        token = secrets.token_urlsafe(18)
        if not token.startswith("-"):
            return token


def new_completion_code() -> str:
    return secrets.token_hex(4).upper()


class LinkKind(StrEnum):
    """Which panel opens a study link, and so which query parameters name the worker."""

    PROLIFIC = "prolific"  # PROLIFIC_PID, STUDY_ID, SESSION_ID
    MTURK = "mturk"  # workerId, assignmentId, hitId (and turkSubmitTo)
    GENERIC = "generic"  # worker


class StudyLink(Document):
    """A link a task owner hands to an external panel: whoever opens it with a worker id works on the
    task as an anonymous annotator, up to ``quota`` images, then gets the completion code."""

    id: str = Field(default_factory=new_secret_id)
    task_id: str
    created_by: str
    kind: LinkKind
    quota: int
    completion_code: str = Field(default_factory=new_completion_code)
    completion_url: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class LinkWorker(Document):
    """One external worker of one study link, bound to the account made for them on their first visit.

    Its id is ``<link id>/<external id>``: the store's unique key makes concurrent first visits one worker.
    """

    id: str
    link_id: str
    task_id: str
    kind: LinkKind
    external_id: str
    user_id: str
    study_id: str | None = None
    session_id: str | None = None
    assignment_id: str | None = None
    hit_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)

    @staticmethod
    def key(link_id: str, external_id: str) -> str:
        return f"{link_id}/{external_id}"


class Invitation(Document):
    """A link that makes the signed-in user who opens it a member of a task (for ``email`` only, if set)."""

    id: str = Field(default_factory=new_secret_id)
    task_id: str
    created_by: str
    email: str | None = None
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    accepted_by: list[str] = Field(default_factory=list)


Image.model_rebuild()
