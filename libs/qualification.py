"""The qualification gate: a task with tutorial images opens only to users who passed one."""

from __future__ import annotations

from dataclasses import dataclass

from crowdseg.access import manages
from crowdseg.domain import Image, Task, User
from crowdseg.errors import QualificationRequired
from crowdseg.ports import Store


@dataclass(frozen=True)
class QualificationState:
    required: bool
    passed: bool
    images: list[Image]

    @property
    def open(self) -> bool:
        return not self.required or self.passed


async def qualification_state(store: Store, task: Task, user: User) -> QualificationState:
    images = await store.images.list_for_task(task.id, tutorial=True)
    required = bool(images) and not manages(task, user)
    passed = any(attempt.passed for attempt in await store.attempts.list_for(task.id, user.id))
    return QualificationState(required=required, passed=passed, images=images)


async def ensure_qualified(store: Store, task: Task, user: User) -> None:
    """The rule of :func:`qualification_state`, in one store read where the task has no tutorial
    image (the common case, met by every ``next`` and submission)."""
    if manages(task, user):
        return
    tutorial = await store.images.page_for_task(task.id, tutorial=True, limit=1)
    if tutorial.items and not any(attempt.passed for attempt in await store.attempts.list_for(task.id, user.id)):
        raise QualificationRequired("pass this task's qualification first")
