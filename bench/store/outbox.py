"""Clearing published outbox entries on FerretDB v1 (guard mode), the previous design and today's side by side.

The ingest service's outbox relay publishes a page of ``image.ingested`` events (``RELAY_PAGE``,
500) and then clears them from the image documents with ``outbox.mark_published_many``. On FerretDB
v1 every change to an existing document takes a guard document (README, "Store guarantees").

* ``per document`` — the previous design: one guarded :meth:`MongoStore.mutate` per image, 16 at
  once (read, insert guard, compare-and-set, delete guard: four round trips per image);
* ``batched`` — today's :meth:`MongoStore.mutate_many`: one read of the page, one insert of all its
  guards, a compare-and-set per image (16 at once), one delete of the guards.

For each design and round: ``--images`` new images with one outbox event each are stored, then
cleared page by page as the relay does; reported are images cleared per second and the time per
page. Both designs run against the same server in alternating order.

    .venv/bin/python bench/store/outbox.py [--images 5000] [--rounds 3]
    .venv/bin/python bench/store/outbox.py --table

Writes ``results-outbox.json`` beside this file. Numbers depend on the machine; nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pymongo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from crowdseg.adapters.mongo_store import UPDATES_AT_ONCE, MongoStore  # noqa: E402
from crowdseg.bus import RELAY_PAGE  # noqa: E402
from crowdseg.domain import Image, PendingEvent, Task, Tool, new_id  # noqa: E402
from crowdseg.ports import OutboxEntry  # noqa: E402

from tests.servers import FerretDBServer, load_manifest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leases import image  # noqa: E402  (the same image documents as the lease benchmark)

HERE = Path(__file__).resolve().parent
Doc = dict[str, Any]


async def clear_per_document(store: MongoStore, entries: Sequence[OutboxEntry]) -> None:
    """The previous ``mark_published_many``: every document's guarded update on its own, 16 at once."""
    slots = asyncio.Semaphore(UPDATES_AT_ONCE)

    async def clear(entry: OutboxEntry) -> None:
        event_id = entry.event.payload.get("event_id")

        def change(model: Image) -> tuple[Image | None, None]:
            kept = [e for e in model.outbox if e.payload.get("event_id") != event_id]
            return (None if len(kept) == len(model.outbox) else model.model_copy(update={"outbox": kept})), None

        async with slots:
            await store.images.update(entry.document_id, change, None)

    await asyncio.gather(*(clear(entry) for entry in entries))


async def clear_batched(store: MongoStore, entries: Sequence[OutboxEntry]) -> None:
    await store.outbox.mark_published_many(entries)


DESIGNS = {"per document": clear_per_document, "batched": clear_batched}


def image_with_event(task_id: str, n: int) -> Image:
    img = image(task_id, n)
    event = PendingEvent(topic="crowdseg.image.ingested.v1", key=task_id, payload={"event_id": new_id(), "id": img.id})
    return img.model_copy(update={"outbox": [event]})


async def measure(url: str, design: str, images: int) -> Doc:
    store = MongoStore(url, f"bench_outbox_{uuid.uuid4().hex[:10]}")
    await store.open()
    try:
        task = Task(owner_id="bench", title="bench", tool=Tool.POLYGON, replicates=3)
        await store.tasks.add(task)
        batch = [image_with_event(task.id, n) for n in range(images)]
        for start in range(0, images, RELAY_PAGE):
            await store.images.add_many(batch[start : start + RELAY_PAGE])
        pages: list[float] = []
        began = time.perf_counter()
        while entries := await store.outbox.pending(RELAY_PAGE, sources={"images"}):
            started = time.perf_counter()
            await DESIGNS[design](store, entries)
            pages.append(time.perf_counter() - started)
        seconds = time.perf_counter() - began
        left = await store.database["images"].count_documents({"_pending": True})
        return {
            "images": images,
            "seconds": round(seconds, 3),
            "images_per_s": round(images / seconds, 1),
            "page_median_ms": round(statistics.median(pages) * 1000, 1),
            "left_pending": left,
        }
    finally:
        await store.database.client.drop_database(store.database_name)
        await store.close()


def table(data: Doc) -> str:
    lines = [
        "| design | images | cleared/s (median of rounds) | page of 500, median ms | left pending |",
        "|---|---:|---:|---:|---:|",
    ]
    for design, rounds in data["designs"].items():
        rates = [r["images_per_s"] for r in rounds]
        pages = [r["page_median_ms"] for r in rounds]
        lines.append(
            f"| {design} | {data['images']} | {statistics.median(rates):.0f} | "
            f"{statistics.median(pages):.0f} | {max(r['left_pending'] for r in rounds)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results-outbox.json")
    parser.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    manifest = load_manifest()
    data: Doc = {
        "images": args.images,
        "rounds": args.rounds,
        "ferretdb": manifest["ferretdb"]["version"],
        "pymongo": pymongo.version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "designs": {design: [] for design in DESIGNS},
    }
    with tempfile.TemporaryDirectory(prefix="crowdseg-outbox-") as tmp:
        server = FerretDBServer(Path(tmp) / "ferretdb", manifest)
        server.start()
        try:
            order = list(DESIGNS)
            for n in range(args.rounds):
                for design in order[n % 2 :] + order[: n % 2]:
                    result = asyncio.run(measure(server.url, design, args.images))
                    data["designs"][design].append(result)
                    print(design, n, result, flush=True)
        finally:
            server.stop()
    data["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(table(data))


if __name__ == "__main__":
    main()
