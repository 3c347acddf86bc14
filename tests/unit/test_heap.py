"""crowdseg.heap: a full collection over its budget freezes what survived it (issue 8: 60–160 ms full
collections every 1.5–2 s in the request process at 20 000 images)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from crowdseg.heap import FreezeSlowCollections, keep_full_collections_short

pytestmark = pytest.mark.unit


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    for callback in [c for c in gc.callbacks if isinstance(c, FreezeSlowCollections)]:
        gc.callbacks.remove(callback)
    gc.unfreeze()


def test_a_full_collection_over_budget_freezes_its_survivors(unfrozen: None) -> None:
    callback = keep_full_collections_short(budget=0.0)
    survivors = [[n] for n in range(10_000)]
    gc.collect()
    assert callback.freezes == 1
    assert gc.get_freeze_count() >= len(survivors)


def test_a_collection_within_budget_or_a_young_one_freezes_nothing(unfrozen: None) -> None:
    callback = keep_full_collections_short(budget=60.0)
    gc.collect()
    gc.collect(0)
    assert callback.freezes == 0
    assert gc.get_freeze_count() == 0


def test_installing_twice_keeps_one_callback(unfrozen: None) -> None:
    first = keep_full_collections_short()
    assert keep_full_collections_short() is first
    assert sum(isinstance(c, FreezeSlowCollections) for c in gc.callbacks) == 1
