"""Leasing the next image to an annotator. Knows nothing about HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from crowdseg.access import visible_task
from crowdseg.domain import Image, TaskStatus, User
from crowdseg.errors import Conflict
from crowdseg.ports import Store
from crowdseg.qualification import ensure_qualified
from crowdseg.services.assign.domain import candidates


@dataclass(frozen=True)
class Assignment:
    image: Image
    lease_expires_at: datetime


async def next_image(store: Store, user: User, task_id: str, now: datetime) -> Assignment | None:
    """Lease the best open image to the user; None when nothing is left for them."""
    task = await visible_task(store, task_id, user)
    if task.status is not TaskStatus.OPEN:
        raise Conflict(f"the task is {task.status.value}, not open")
    await ensure_qualified(store, task, user)
    expires_at = now + timedelta(seconds=task.lease_seconds)
    images = await store.images.list_for_task(task.id)
    for image in candidates(task, images, user.id, now):
        leased = await store.images.try_lease(
            image.id, user.id, replicates=task.replicates, now=now, expires_at=expires_at
        )
        if leased:
            return Assignment(image=image, lease_expires_at=expires_at)
    return None
