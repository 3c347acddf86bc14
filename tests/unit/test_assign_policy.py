"""The assignment policy: order, unseen-first, replicates, leases and never the same image twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from crowdseg.domain import Image, Lease, Order, Task, Tool
from crowdseg.services.assign.domain import candidates, is_open_for

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def task(**overrides: object) -> Task:
    return Task.model_validate({"owner_id": "owner", "title": "t", "tool": Tool.CONTOUR, "replicates": 2, **overrides})


def image(name: str, submitted_by: tuple[str, ...] = (), leases: tuple[tuple[str, int], ...] = ()) -> Image:
    return Image(
        id=f"id-{name}",
        task_id="task",
        name=name,
        width=10,
        height=10,
        source_format="png",
        original_key="o",
        display_key="d",
        display_media_type="image/png",
        thumbnail_key="t",
        thumbnail_media_type="image/png",
        submitted_by=list(submitted_by),
        leases=[Lease(user_id=user, expires_at=NOW + timedelta(seconds=seconds)) for user, seconds in leases],
    )


def names(images: list[Image]) -> list[str]:
    return [i.name for i in images]


def test_name_orders_without_unseen_first() -> None:
    images = [image("b"), image("c", submitted_by=("x",)), image("a")]
    assert names(candidates(task(order=Order.NAME_ASC, unseen_first=False), images, "u", NOW)) == ["a", "b", "c"]
    assert names(candidates(task(order=Order.NAME_DESC, unseen_first=False), images, "u", NOW)) == ["c", "b", "a"]


def test_unseen_first_puts_the_least_covered_images_first_then_the_order() -> None:
    images = [image("a", submitted_by=("x",)), image("b"), image("c")]
    assert names(candidates(task(order=Order.NAME_ASC, unseen_first=True), images, "u", NOW)) == ["b", "c", "a"]


def test_random_order_is_stable_per_user_and_differs_between_users() -> None:
    images = [image(f"img-{n:02d}") for n in range(30)]
    random_task = task(order=Order.RANDOM, unseen_first=False, replicates=50)
    first = names(candidates(random_task, images, "alice", NOW))
    assert first == names(candidates(random_task, list(reversed(images)), "alice", NOW))
    assert first != names(candidates(random_task, images, "bob", NOW))
    assert sorted(first) == sorted(names(images))


def test_an_image_is_never_offered_twice_to_the_same_user() -> None:
    done = image("a", submitted_by=("u",))
    assert not is_open_for(task(replicates=5), done, "u", NOW)


def test_replicates_count_submissions_and_active_leases_but_not_expired_ones() -> None:
    full = image("a", submitted_by=("x",), leases=(("y", 60),))
    assert not is_open_for(task(replicates=2), full, "u", NOW)
    expired = image("b", submitted_by=("x",), leases=(("y", -1),))
    assert is_open_for(task(replicates=2), expired, "u", NOW)


def test_the_lease_holder_gets_its_image_back_first_even_when_full() -> None:
    held = image("z", submitted_by=("x",), leases=(("u", 60),))
    images = [image("a"), held]
    assert names(candidates(task(replicates=2, order=Order.NAME_ASC), images, "u", NOW)) == ["z", "a"]
