"""Stack images for tests, made without the upload route.

TODO(issue 11): switch to uploading a real stack (multi-page TIFF, DICOM series, NIfTI) once stack
ingest lands; until then a plain PNG is uploaded and its image document rewritten through the store to
a stack of ``frames`` (with ``spacing`` and ``affine``), every frame's rendition a plain PNG in the blob
store. This is a test fixture, not an alternative ingest.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from crowdseg.adapters.file_blobs import FileBlobStore
from crowdseg.adapters.sqlite_store import SqliteStore
from PIL import Image as PILImage

from tests.embedded import Api, EmbeddedServer, wait_for


def frame_png(width: int, height: int, frame: int) -> bytes:
    pixels = ((np.arange(width * height).reshape(height, width) + 17 * frame) % 251).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def make_stack(
    server: EmbeddedServer,
    master: Api,
    task_id: str,
    name: str,
    *,
    frames: int,
    width: int,
    height: int,
    spacing: tuple[float, float, float] | None = None,
    affine: Sequence[Sequence[float]] | None = None,
) -> str:
    """A stack image of the task on the embedded server's data directory; returns its id."""
    uploaded = master.http.post(
        f"/tasks/{task_id}/images", files=[("files", (name, frame_png(width, height, 0), "image/png"))]
    )
    assert uploaded.status_code == 202, uploaded.text

    def listed() -> str | None:
        images = master.http.get(f"/tasks/{task_id}/images").json()
        return next((str(image["id"]) for image in images if image["name"] == name), None)

    image_id: str = wait_for(listed, 60, f"the image {name}")
    asyncio.run(_as_stack(server.data_dir, image_id, frames, spacing, affine))
    return image_id


async def _as_stack(
    data_dir: Path,
    image_id: str,
    frames: int,
    spacing: tuple[float, float, float] | None,
    affine: Sequence[Sequence[float]] | None,
) -> None:
    store, blobs = SqliteStore(data_dir / "crowdseg.sqlite3"), FileBlobStore(data_dir / "objects")
    await store.open()
    await blobs.open()
    try:
        image = await store.images.get(image_id)
        assert image is not None
        for frame in range(frames):
            key = f"images/{image.task_id}/{image.id}/frames/{frame:05d}.png"
            await blobs.put(key, frame_png(image.width, image.height, frame), "image/png")
        update = {"frames": frames, "spacing": spacing, "affine": None if affine is None else [list(r) for r in affine]}
        store.images.replace_doc(image.id, image.model_copy(update=update))
    finally:
        await blobs.close()
        await store.close()
