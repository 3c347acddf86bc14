"""What reconciliation from a watermark needs of every store: submissions by creation time along an
index, and small values kept across restarts (issue 8: reconcile-on-start scanned every image of
every task)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from crowdseg.domain import utcnow
from crowdseg.ports import Store

from tests.contract.test_store_contract import stored_image, submission

pytestmark = pytest.mark.contract


async def test_submissions_created_since(store: Store) -> None:
    _, img = await stored_image(store)
    now = utcnow()
    old = submission(img, "old").model_copy(update={"created_at": now - timedelta(hours=2)})
    recent = submission(img, "recent").model_copy(update={"created_at": now - timedelta(seconds=5)})
    for item in (old, recent):
        await store.submissions.add(item)
    assert [s.id for s in await store.submissions.created_since(now - timedelta(minutes=1))] == [recent.id]
    assert sorted(s.id for s in await store.submissions.created_since(now - timedelta(days=1))) == sorted(
        [old.id, recent.id]
    )
    assert await store.submissions.created_since(now + timedelta(seconds=1)) == []


async def test_meta_values_are_kept_and_replaced(store: Store) -> None:
    assert await store.meta.get("consensus.reconciled") is None
    await store.meta.put("consensus.reconciled", "2026-12-01T12:00:00+00:00")
    await store.meta.put("consensus.reconciled", "2026-12-01T13:00:00+00:00")
    assert await store.meta.get("consensus.reconciled") == "2026-12-01T13:00:00+00:00"
    assert await store.meta.get("other") is None
