"""Store contract of adaptive replicates: a retired image is leased to no one (and claimed only by a
lease holder), in both stores, however many times the consensus worker records it."""

from __future__ import annotations

import asyncio

import pytest
from crowdseg.ports import Store

from tests.contract.test_store_contract import LATER, NOW, stored_image

pytestmark = pytest.mark.contract


async def test_a_retired_image_is_leased_to_no_one(store: Store) -> None:
    _, img = await stored_image(store, replicates=5)
    assert await store.images.claim_slot(img.id, "ann", replicates=5, now=NOW)
    assert await store.images.try_lease(img.id, "bob", replicates=5, now=NOW, expires_at=LATER)
    await asyncio.gather(*(store.images.set_certainty(img.id, 0.97, retired=True) for _ in range(6)))
    await store.images.set_certainty("missing", 0.5, retired=True)
    stored = await store.images.get(img.id)
    assert stored is not None and (stored.certainty, stored.retired) == (0.97, True)
    assert stored.submitted_by == ["ann"]  # the rest of the document is kept
    assert not await store.images.try_lease(img.id, "cy", replicates=5, now=NOW, expires_at=LATER)
    assert not await store.images.claim_slot(img.id, "cy", replicates=5, now=NOW)
    assert await store.images.claim_slot(img.id, "bob", replicates=5, now=NOW)  # work in progress is kept

    await store.images.set_certainty(img.id, 0.4, retired=False)  # a rejected submission reopened it
    reopened = await store.images.get(img.id)
    assert reopened is not None and (reopened.certainty, reopened.retired) == (0.4, False)
    assert await store.images.try_lease(img.id, "cy", replicates=5, now=NOW, expires_at=LATER)


async def test_a_retired_image_counts_complete_below_replicates(store: Store) -> None:
    t, img = await stored_image(store, replicates=5)
    assert await store.images.claim_slot(img.id, "ann", replicates=5, now=NOW)
    assert await store.images.claim_slot(img.id, "bob", replicates=5, now=NOW)
    await asyncio.gather(*(store.images.set_certainty(img.id, 0.97, retired=True) for _ in range(4)))
    counters = await store.counters.task(t.id)
    assert counters is not None and counters.retired == {2: 1}
    assert (counters.complete(5), counters.complete(2), counters.coverage) == (1, 1, {2: 1})
    assert await store.images.claim_slot(img.id, "cy", replicates=5, now=NOW) is False
    await store.images.set_rejected(img.id, "ann", rejected=True)  # a review takes one away: still retired
    counters = await store.counters.task(t.id)
    assert counters is not None and counters.retired == {1: 1}
    await store.images.set_certainty(img.id, 0.3, retired=False)
    counters = await store.counters.task(t.id)
    assert counters is not None and counters.retired == {} and counters.complete(5) == 0
    assert await store.counters.rebuild(t.id) == counters
