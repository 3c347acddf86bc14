"""The file blob store writes a batch, syncs the file system once, then names the files (issue 8: an
fsync per file was a fifth of the consensus worker's CPU): a batch that fails names none of them and
leaves no partial file behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from crowdseg.adapters import file_blobs
from crowdseg.adapters.file_blobs import FileBlobStore

pytestmark = pytest.mark.unit


@pytest.mark.skipif(file_blobs._syncfs is None, reason="syncfs(2) is Linux's")
async def test_a_batch_is_synced_once_and_then_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileBlobStore(tmp_path / "objects")
    await store.open()
    syncs: list[Path] = []
    real = file_blobs._sync_file_system

    def counted(directory: Path) -> None:
        assert not list(directory.rglob("*.png"))  # nothing is named before it is durable
        syncs.append(directory)
        real(directory)

    monkeypatch.setattr(file_blobs, "_sync_file_system", counted)
    await store.put_many([(f"consensus/t/i{n}/v1/mask.png", b"m%d" % n, "image/png") for n in range(5)])
    assert len(syncs) == 1
    assert [await store.get(f"consensus/t/i{n}/v1/mask.png") for n in range(5)] == [b"m%d" % n for n in range(5)]
    assert not list((tmp_path / "objects").rglob("*.partial"))
    await store.close()


async def test_a_failed_batch_names_nothing_and_leaves_no_partial_file(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "objects")
    await store.open()
    await store.put("consensus/t/blocker", b"a file where the batch wants a directory", "text/plain")
    with pytest.raises(OSError):
        await store.put_many(
            [("consensus/t/i/v1/mask.png", b"m", "image/png"), ("consensus/t/blocker/v1/mask.png", b"p", "image/png")]
        )
    assert not list((tmp_path / "objects").rglob("*.png"))
    assert not list((tmp_path / "objects").rglob("*.partial"))
    await store.close()
