"""Reconciliation reads only what arrived since its last clean pass (issue 8: reconcile-on-start read
every image and submission of every task), and still catches up a consensus an event never brought."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from crowdseg.adapters.file_blobs import FileBlobStore
from crowdseg.domain import utcnow
from crowdseg.ports import Store
from crowdseg.services.consensus.handlers import RECONCILED, StapleOptions, reconcile

from tests.contract.test_store_contract import stored_image, submission

pytestmark = pytest.mark.contract


async def test_a_pass_looks_at_the_submissions_since_the_watermark(store: Store, tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "objects")
    await blobs.open()
    options = StapleOptions()
    _, first = await stored_image(store)
    await store.submissions.add(submission(first, "ann"))
    assert await reconcile(store, blobs, options=options, notify=lambda: None) == 1  # no watermark: everything
    assert await store.meta.get(RECONCILED) is not None

    _, recent = await stored_image(store)
    await store.submissions.add(submission(recent, "bob"))
    _, forgotten = await stored_image(store)
    stale = submission(forgotten, "cid").model_copy(update={"created_at": utcnow() - timedelta(days=1)})
    await store.submissions.add(stale)
    assert await reconcile(store, blobs, options=options, notify=lambda: None) == 1
    assert (await store.consensus.get(recent.id)) is not None
    # Older than the watermark's slack: left to its event, which the consumer commits only once handled.
    assert (await store.consensus.get(forgotten.id)) is None
