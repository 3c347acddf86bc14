"""The assign service's selection structures against a real store: built once, kept current by the
events, and repaired from the store when an event never came (issue 8)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from crowdseg.domain import utcnow
from crowdseg.ports import Store
from crowdseg.services.assign.handlers import Selections, next_image

from tests.contract.test_store_contract import image, stored_image, user

pytestmark = pytest.mark.contract


async def ready(store: Store, **options: Any) -> Selections:
    selections = Selections(store, **options)
    selections.listening.set()
    return selections


async def test_next_follows_the_events_without_reading_the_task_again(store: Store) -> None:
    task, first = await stored_image(store, replicates=1)
    ann = await store.users.add(user("ann"))
    selections = await ready(store)
    assert (await next_image(store, selections, ann, task.id, utcnow())).image_id == first.id  # type: ignore[union-attr]
    second = image(task.id, "b.png")
    assert await store.images.add(second)
    selections.image_added(task.id, second.id, second.name, second.width, second.height)
    bob = await store.users.add(user("bob"))
    assert (await next_image(store, selections, bob, task.id, utcnow())).image_id == second.id  # type: ignore[union-attr]


async def test_an_image_whose_event_never_came_is_found_once_the_rest_is_done(store: Store) -> None:
    task, first = await stored_image(store, replicates=1)
    ann = await store.users.add(user("ann"))
    selections = await ready(store, refresh_seconds=0.0)
    assert (await next_image(store, selections, ann, task.id, utcnow())).image_id == first.id  # type: ignore[union-attr]
    missed = image(task.id, "missed.png")
    assert await store.images.add(missed)  # no image_added: the event was lost
    bob = await store.users.add(user("bob"))
    assignment = await next_image(store, selections, bob, task.id, utcnow())
    assert assignment is not None and assignment.image_id == missed.id


async def test_a_lease_taken_by_another_replica_is_learned_from_the_store(store: Store) -> None:
    task, only = await stored_image(store, replicates=1)
    ann, bob = await store.users.add(user("ann")), await store.users.add(user("bob"))
    here, elsewhere = await ready(store), await ready(store)
    await here.for_task(task.id)  # built before the other replica's lease
    now = utcnow()
    assert (await next_image(store, elsewhere, ann, task.id, now)).image_id == only.id  # type: ignore[union-attr]
    assert await next_image(store, here, bob, task.id, now) is None  # the store refused; `here` learned why
    later = now + timedelta(seconds=task.lease_seconds + 1)
    assert (await next_image(store, here, bob, task.id, later)).image_id == only.id  # type: ignore[union-attr]


async def test_a_task_is_built_page_by_page(store: Store) -> None:
    task, first = await stored_image(store, replicates=1)
    others = [image(task.id, f"{n}.png") for n in range(6)]
    assert all(await store.images.add_many(others))
    selections = await ready(store, build_page=2)
    crowd = [await store.users.add(user(f"u{n}")) for n in range(8)]
    given = [await next_image(store, selections, u, task.id, utcnow()) for u in crowd]
    assert sorted(a.image_id for a in given if a is not None) == sorted([first.id, *(i.id for i in others)])
    assert given[-1] is None
