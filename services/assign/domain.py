"""Which image a user gets next: the task's order policy, least-covered first, never twice."""

from __future__ import annotations

import hashlib
from datetime import datetime

from crowdseg.domain import Image, Order, Task


def _key(value: str, person: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8, person=person).digest(), "big")


def image_key(image_id: str) -> int:
    return _key(image_id, b"crowdseg-image")


def user_key(user_id: str) -> int:
    return _key(user_id, b"crowdseg-user")


def random_rank(user_id: str, image_id: str) -> int:
    """A per-user shuffle that stays the same across calls (and restarts).

    The image's key XOR the user's: a different permutation for every user, and one that the
    selection structure walks in order without ranking every image (``selection.xor_order``).
    """
    return image_key(image_id) ^ user_key(user_id)


def coverage(image: Image, now: datetime) -> int:
    return len(image.submitted_by) + len(image.active_leases(now))


def holds_lease(image: Image, user_id: str, now: datetime) -> bool:
    return any(lease.user_id == user_id for lease in image.active_leases(now))


def is_open_for(task: Task, image: Image, user_id: str, now: datetime) -> bool:
    if image.retired or user_id in image.submitted_by or user_id in image.rejected_by:
        return False
    return holds_lease(image, user_id, now) or coverage(image, now) < task.replicates


def contested(task: Task, image: Image) -> bool:
    """Adaptive replicates: the image's consensus is below the task's confidence."""
    target = task.adaptive_confidence
    return target is not None and image.certainty is not None and image.certainty < target


def candidates(task: Task, images: list[Image], user_id: str, now: datetime) -> list[Image]:
    """Images the user may still annotate, best first: the one they hold, then least covered
    (with ``unseen_first``), then (adaptive tasks) the contested ones, then the task's order.
    Retired images are no one's.

    The brute-force statement of the rules, over every image: the service answers from
    :class:`crowdseg.services.assign.selection.TaskSelection`, and the tests hold it to this."""
    open_images = [image for image in images if is_open_for(task, image, user_id, now)]
    if task.order is Order.RANDOM:
        ordered = sorted(open_images, key=lambda image: (random_rank(user_id, image.id), image.name))
    else:
        ordered = sorted(open_images, key=lambda image: image.name, reverse=task.order is Order.NAME_DESC)
    # Python's sort is stable: the order above breaks ties of the keys below.
    return sorted(
        ordered,
        key=lambda image: (
            not holds_lease(image, user_id, now),
            coverage(image, now) if task.unseen_first else 0,
            not contested(task, image),
        ),
    )
