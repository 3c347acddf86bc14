"""Versioned event schemas and topic names.

Every event carries an ``event_id`` (idempotency), a ``schema_version`` and ``occurred_at``;
events carry ids and object keys, never image bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from crowdseg.domain import PendingEvent, new_id, utcnow
from pydantic import BaseModel, ConfigDict, Field

IMAGE_INGESTED = "crowdseg.image.ingested.v1"
SUBMISSION_ACCEPTED = "crowdseg.submission.accepted.v1"
CONSENSUS_UPDATED = "crowdseg.consensus.updated.v1"
EXPORT_REQUESTED = "crowdseg.export.requested.v1"
EXPORT_COMPLETED = "crowdseg.export.completed.v1"
IMAGE_REFERENCED = "crowdseg.image.referenced.v1"

ALL_TOPICS = (
    IMAGE_INGESTED, SUBMISSION_ACCEPTED, CONSENSUS_UPDATED, EXPORT_REQUESTED, EXPORT_COMPLETED, IMAGE_REFERENCED
)  # fmt: skip


def dead_letter_topic(consumer_group: str) -> str:
    return f"crowdseg.dlq.{consumer_group}.v1"


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: ClassVar[str]

    event_id: str = Field(default_factory=new_id)
    schema_version: Literal[1] = 1
    occurred_at: datetime = Field(default_factory=utcnow)

    def key(self) -> str:
        raise NotImplementedError

    def pending(self) -> PendingEvent:
        return PendingEvent(topic=self.topic, key=self.key(), payload=self.model_dump(mode="json"))


class ImageIngested(Event):
    topic: ClassVar[str] = IMAGE_INGESTED
    task_id: str
    image_id: str
    name: str
    width: int
    height: int
    display_key: str
    frames: int = 1
    """A stack's frames (1 for a plain image; events of older versions carry none)."""
    window: tuple[float, float] | None = None
    """The stack's default ``(center, width)``, where it has raw values to window."""

    def key(self) -> str:
        return self.task_id


class SubmissionAccepted(Event):
    topic: ClassVar[str] = SUBMISSION_ACCEPTED
    task_id: str
    image_id: str
    submission_id: str
    user_id: str
    review: Literal["accept", "reject"] | None = None
    """Set when a task master's review of the submission changed: its image's consensus and
    coverage follow the verdict."""

    def key(self) -> str:
        return self.image_id


class ImageReferenced(Event):
    """An image's expert reference was set or replaced: with ``gold_rate`` such images are the gold
    ``next`` mixes into the stream."""

    topic: ClassVar[str] = IMAGE_REFERENCED
    task_id: str
    image_id: str
    reference: bool
    """The image now has a reference with at least one shape."""
    tutorial: bool = False
    frames: int = 1

    def key(self) -> str:
        return self.task_id


class ConsensusUpdated(Event):
    """The public result topic that downstream ML pipelines subscribe to."""

    topic: ClassVar[str] = CONSENSUS_UPDATED
    task_id: str
    image_id: str
    version: int
    submissions: int
    method: str
    mask_key: str | None = None
    probability_key: str | None = None

    def key(self) -> str:
        return self.image_id


class ExportRequested(Event):
    topic: ClassVar[str] = EXPORT_REQUESTED
    task_id: str
    export_id: str

    def key(self) -> str:
        return self.task_id


class ExportCompleted(Event):
    topic: ClassVar[str] = EXPORT_COMPLETED
    task_id: str
    export_id: str
    status: Literal["done", "failed"]
    archive_key: str | None = None

    def key(self) -> str:
        return self.task_id


EVENT_TYPES: dict[str, type[Event]] = {
    cls.topic: cls
    for cls in (ImageIngested, SubmissionAccepted, ConsensusUpdated, ExportRequested, ExportCompleted, ImageReferenced)
}
