"""Export bundles: requested over HTTP, built by the export consumer, downloaded as a ZIP."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from crowdseg.access import managed_task
from crowdseg.domain import Export, User, utcnow
from crowdseg.errors import Forbidden, NotFound
from crowdseg.events import ExportCompleted, ExportRequested
from crowdseg.ports import BlobStore, Store
from crowdseg.services.export.bundle import BundleWriter, load_task

log = logging.getLogger(__name__)
Notify = Callable[[], None]


async def request_export(store: Store, user: User, task_id: str, notify: Notify) -> Export:
    task = await managed_task(store, task_id, user)
    export = Export(task_id=task.id, requested_by=user.id)
    export.outbox = [ExportRequested(task_id=task.id, export_id=export.id).pending()]
    await store.exports.add(export)
    notify()
    return export


async def visible_export(store: Store, user: User, export_id: str) -> Export:
    export = await store.exports.get(export_id)
    if export is None:
        raise NotFound(f"export {export_id} not found")
    try:
        await managed_task(store, export.task_id, user)
    except (NotFound, Forbidden) as exc:
        raise NotFound(f"export {export_id} not found") from exc
    return export


async def build_export(store: Store, blobs: BlobStore, export_id: str, notify: Notify) -> Export:
    """Build the bundle once; a redelivered request for a finished export changes nothing."""
    export = await store.exports.get(export_id)
    if export is None:
        raise NotFound(f"export {export_id} not found")
    if export.status in ("done", "failed"):
        return export
    task = await load_task(store, export.task_id)
    current: Export = export

    async def progress(fraction: float) -> None:
        nonlocal current
        current = current.model_copy(
            update={"status": "running", "progress": round(fraction, 3), "updated_at": utcnow()}
        )
        await store.exports.replace(current)

    await progress(0.01)
    key = f"exports/{task.id}/{export.id}.zip"
    with tempfile.TemporaryDirectory(prefix="crowdseg-export-") as folder:
        target = Path(folder) / "export.zip"
        try:
            await BundleWriter(store, blobs, task, target, progress).write()
            await blobs.put_file(key, target, "application/zip")
            size = target.stat().st_size
        except Exception as exc:
            log.exception("export %s failed", export.id)
            return await _finish(store, current, notify, error=f"{type(exc).__name__}: {exc}")
    return await _finish(store, current, notify, key=key, size=size)


async def _finish(
    store: Store,
    export: Export,
    notify: Notify,
    *,
    key: str | None = None,
    size: int | None = None,
    error: str | None = None,
) -> Export:
    status = "failed" if error else "done"
    event = ExportCompleted(task_id=export.task_id, export_id=export.id, status=status, archive_key=key)
    export = export.model_copy(
        update={
            "status": status,
            "progress": 1.0 if key else export.progress,
            "archive_key": key,
            "size_bytes": size,
            "error": error,
            "updated_at": utcnow(),
            "outbox": [event.pending()],
        }
    )
    await store.exports.replace(export)
    notify()
    return export
