"""The Store port's batch methods (``images.add_many``, ``outbox.mark_published_many``) on every adapter.

Each must mean exactly what the one-at-a-time method does for every item: the unique (task, name)
rule per image, duplicates refused one by one, and every published event cleared once.
"""

from __future__ import annotations

import asyncio

import pytest
from crowdseg.domain import Image
from crowdseg.ports import Store

from tests.contract.test_store_contract import image as contract_image
from tests.contract.test_store_contract import task

pytestmark = pytest.mark.contract


def image(task_id: str, name: str, *, tutorial: bool = False, events: int = 1) -> Image:
    """The contract suite's image, with its ``image.ingested`` event by default."""
    return contract_image(task_id, name, tutorial=tutorial, events=events)


async def test_add_many_stores_each_image_under_the_unique_name_rule(store: Store) -> None:
    t, other = task(), task()
    await store.tasks.add(t)
    await store.tasks.add(other)
    assert await store.images.add(image(t.id, "taken.png"))
    batch = [
        image(t.id, "b.png"),
        image(t.id, "taken.png"),  # already in the task
        image(t.id, "a.png"),
        image(t.id, "b.png"),  # earlier in the same batch
        image(other.id, "a.png"),  # same name, other task
        image(t.id, "tutorial.png", tutorial=True, events=0),
    ]
    assert await store.images.add_many(batch) == [True, False, True, False, True, True]
    for stored, img in zip([True, False, True, False, True, True], batch, strict=True):
        assert (await store.images.get(img.id) == img) is stored
    assert [i.name for i in await store.images.list_for_task(t.id)] == ["a.png", "b.png", "taken.png"]
    assert [i.name for i in await store.images.list_for_task(t.id, tutorial=True)] == ["tutorial.png"]
    # Only the stored images' events wait in the outbox.
    pending = await store.outbox.pending(limit=100, sources={"images"})
    assert {e.document_id for e in pending} == {batch[0].id, batch[2].id, batch[4].id} | {
        i.id for i in await store.images.list_for_task(t.id) if i.name == "taken.png"
    }
    assert await store.images.add_many([]) == []


async def test_add_many_racing_batches_store_each_name_once(store: Store) -> None:
    t = task()
    await store.tasks.add(t)
    names = [f"{n:03d}.png" for n in range(40)]
    batches = [[image(t.id, name) for name in names[start : start + 20]] for start in (0, 10, 20, 0)]
    results = await asyncio.gather(*(store.images.add_many(batch) for batch in batches))
    assert sum(ok for result in results for ok in result) == len(names)
    assert [i.name for i in await store.images.list_for_task(t.id)] == names


async def test_mark_published_many_clears_exactly_the_published_events(store: Store) -> None:
    t = task()
    await store.tasks.add(t)
    images = [image(t.id, f"{n}.png", events=2) for n in range(5)]
    assert all(await store.images.add_many(images))
    pending = await store.outbox.pending(limit=100)
    assert len(pending) == 10
    first_of_each = [next(e for e in pending if e.document_id == img.id) for img in images]
    await store.outbox.mark_published_many(first_of_each)
    await store.outbox.mark_published_many(first_of_each)  # at least once: marking again changes nothing
    left = await store.outbox.pending(limit=100)
    assert sorted(e.document_id for e in left) == sorted(img.id for img in images)
    assert not {e.event.payload["event_id"] for e in left} & {e.event.payload["event_id"] for e in first_of_each}
    await store.outbox.mark_published_many(left)
    await store.outbox.mark_published_many([])
    assert await store.outbox.pending(limit=100) == []
    for img in images:
        stored = await store.images.get(img.id)
        assert stored is not None and stored.outbox == [] and stored.name == img.name
