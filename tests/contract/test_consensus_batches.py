"""A batch of events is one recomputation per image, its blobs written in one call before any
consensus names them (issue 8: per event, the worker's consumer, commit, blob syncs and relay were
most of its CPU)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from crowdseg.adapters.file_blobs import FileBlobStore
from crowdseg.ports import BlobStore, Store
from crowdseg.services.consensus.handlers import StapleOptions, recompute_many

from tests.contract.test_store_contract import stored_image, submission

pytestmark = pytest.mark.contract


class CountingBlobs:
    """The real blob store, counting the calls that write."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.writes: list[int] = []

    async def put_many(self, objects: Sequence[tuple[str, bytes, str]]) -> None:
        self.writes.append(len(objects))
        await self.blobs.put_many(objects)

    def __getattr__(self, name: str) -> object:
        return getattr(self.blobs, name)


async def test_a_burst_for_one_image_is_one_recomputation_with_every_submission(store: Store, blobs: BlobStore) -> None:
    _, first = await stored_image(store, replicates=5)
    _, second = await stored_image(store, replicates=5)
    for rater in ("ann", "bob", "cid"):
        await store.submissions.add(submission(first, rater))
    await store.submissions.add(submission(second, "ann"))
    counting = CountingBlobs(blobs)
    notified: list[None] = []

    outcomes = await recompute_many(
        store,
        counting,  # type: ignore[arg-type]
        [first.id, first.id, second.id, first.id],
        options=StapleOptions(),
        notify=lambda: notified.append(None),
    )

    assert set(outcomes) == {first.id, second.id}
    saved = await store.consensus.get(first.id)
    assert saved is not None and saved.submissions == 3
    assert (await store.consensus.get(second.id)) is not None
    assert counting.writes == [4]  # two images' mask and probability, in one call
    assert saved.mask_key is not None and await blobs.get(saved.mask_key)
    assert len(notified) == 1
    again = await recompute_many(store, counting, [first.id], options=StapleOptions(), notify=lambda: None)  # type: ignore[arg-type]
    assert again == {first.id: None}  # already includes every submission: nothing written
    assert counting.writes == [4]


async def test_a_failed_blob_write_saves_no_consensus_of_the_batch(store: Store, tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "objects")
    await blobs.open()
    _, first = await stored_image(store)
    _, second = await stored_image(store)
    await store.submissions.add(submission(first, "ann"))
    await store.submissions.add(submission(second, "bob"))
    # A file where the first image's consensus directory must go: the batch's one blob write fails.
    await blobs.put(f"consensus/{first.task_id}/{first.id}", b"in the way", "text/plain")

    outcomes = await recompute_many(
        store, blobs, [first.id, second.id, "no-such-image"], options=StapleOptions(), notify=lambda: None
    )

    assert isinstance(outcomes[first.id], OSError) and isinstance(outcomes[second.id], OSError)
    assert type(outcomes["no-such-image"]).__name__ == "NotFound"
    assert await store.consensus.get(first.id) is None and await store.consensus.get(second.id) is None
    assert not await blobs.size(f"consensus/{second.task_id}/{second.id}/v1/mask.png")
    await blobs.close()
