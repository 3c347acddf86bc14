"""Time per lease and per claim in MongoStore's write modes, side by side, on FerretDB v1 (SQLite and PostgreSQL).

Modes (``MongoStore.mutate``):

* ``guards, before`` — the guard protocol as it was: read, insert guard, re-read ``_rev``, replace,
  release (5 round trips); kept here as the reference;
* ``guards`` — today's guard protocol: read, insert guard, ``replace_one`` filtered on ``_rev``,
  release (4 round trips); what FerretDB v1 needs;
* ``compare-and-set`` — ``atomic_updates=True``: read, ``replace_one`` filtered on ``_rev`` (2 round
  trips); what MongoDB gets. Not correct on FerretDB v1 (its filtered update is not atomic), so the
  ``contended`` columns show how many leases it wrongly grants there: its times are the ceiling
  that dropping the guards would reach, not an option on these servers.

Measured per server and mode:

* ``sequential``: one store, one client: ``try_lease`` then ``claim_slot`` on each of ``--images``
  images; median and p95 per operation;
* ``parallel``: ``--workers`` coroutines over 5 stores (one connection pool each, like 5 replicas),
  each leasing and claiming its own images: operations per second;
* ``contended``: 50 users at once ``try_lease`` one image with ``replicates=3`` over the 5 stores,
  ``--races`` times: time until all have answered, and leases granted vs leases stored (3 is right).

Writes ``results-leases.json`` beside this file; ``--table`` prints its table::

    .venv/bin/python bench/store/leases.py [--images 200] [--workers 32] [--races 10]
    .venv/bin/python bench/store/leases.py --table
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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from crowdseg.adapters.mongo_store import MongoStore, translate  # noqa: E402
from crowdseg.domain import Image, Task, Tool  # noqa: E402

from tests.servers import (  # noqa: E402
    FerretDBPostgresServer,
    FerretDBServer,
    load_manifest,
    postgres_version,
)

HERE = Path(__file__).resolve().parent
Doc = dict[str, Any]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=10)
STORES = 5
RACERS = 50


class GuardsBefore(MongoStore):
    """The guard protocol before this benchmark: the winner of the guard re-read ``_rev``, then replaced."""

    async def _mutate_once(
        self, coll: AsyncCollection[Doc], doc_id: str, change: Callable[[Doc], Doc | None], *, check_stale: bool
    ) -> bool:
        with translate():
            doc = await coll.find_one({"_id": doc_id})
            if doc is None:
                return True
            rev = int(doc.get("_rev", 0))
            new = change(doc)
            if new is None:
                return True
            guard = f"{coll.name}/{doc_id}/{rev}"
            token = await self._acquire(guard, check_stale=check_stale)
            if token is None:
                return False
            try:
                current = await coll.find_one({"_id": doc_id}, {"_rev": 1})
                if current is None or int(current.get("_rev", 0)) != rev:
                    return False
                await coll.replace_one({"_id": doc_id}, {**new, "_id": doc_id, "_rev": rev + 1})
                return True
            finally:
                await self.database["_guards"].delete_one({"_id": guard, "token": token})


MODES: dict[str, tuple[type[MongoStore], bool]] = {
    "guards, before": (GuardsBefore, False),
    "guards": (MongoStore, False),
    "compare-and-set": (MongoStore, True),
}


def image(task_id: str, n: int) -> Image:
    name = f"img-{n:06d}.png"
    return Image(
        task_id=task_id,
        name=name,
        width=128,
        height=128,
        source_format="PNG",
        original_key=f"{task_id}/{name}",
        display_key=f"{task_id}/{name}",
        display_media_type="image/png",
        thumbnail_key=f"{task_id}/{name}.thumb",
        thumbnail_media_type="image/png",
    )


async def new_images(store: MongoStore, count: int) -> list[str]:
    task = Task(owner_id="bench", title="bench", tool=Tool.POLYGON, replicates=3)
    await store.tasks.add(task)
    images = [image(task.id, n) for n in range(count)]
    for img in images:
        await store.images.add(img)
    return [img.id for img in images]


def ms(values: list[float]) -> Doc:
    ordered = sorted(values)
    return {
        "n": len(values),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 3),
    }


async def sequential(store: MongoStore, count: int) -> dict[str, list[float]]:
    ids = await new_images(store, count)
    leases: list[float] = []
    claims: list[float] = []
    for image_id in ids:
        t0 = time.perf_counter()
        assert await store.images.try_lease(image_id, "u1", replicates=3, now=NOW, expires_at=LATER)
        t1 = time.perf_counter()
        assert await store.images.claim_slot(image_id, "u1", replicates=3, now=NOW)
        t2 = time.perf_counter()
        leases.append(t1 - t0)
        claims.append(t2 - t1)
    return {"try_lease": leases, "claim_slot": claims}


async def parallel(stores: list[MongoStore], workers: int, per_worker: int) -> Doc:
    ids = await new_images(stores[0], workers * per_worker)

    async def work(w: int) -> None:
        store = stores[w % len(stores)]
        for image_id in ids[w * per_worker : (w + 1) * per_worker]:
            assert await store.images.try_lease(image_id, f"u{w}", replicates=3, now=NOW, expires_at=LATER)
            assert await store.images.claim_slot(image_id, f"u{w}", replicates=3, now=NOW)

    t0 = time.perf_counter()
    await asyncio.gather(*(work(w) for w in range(workers)))
    elapsed = time.perf_counter() - t0
    ops = 2 * len(ids)
    return {"workers": workers, "operations": ops, "seconds": round(elapsed, 3), "ops_per_s": round(ops / elapsed, 1)}


async def contended(stores: list[MongoStore], races: int) -> Doc:
    ids = await new_images(stores[0], races)
    times: list[float] = []
    granted: list[int] = []
    kept: list[int] = []
    for image_id in ids:
        t0 = time.perf_counter()
        answers = await asyncio.gather(
            *(
                stores[i % len(stores)].images.try_lease(image_id, f"u{i}", replicates=3, now=NOW, expires_at=LATER)
                for i in range(RACERS)
            )
        )
        times.append(time.perf_counter() - t0)
        stored = await stores[0].images.get(image_id)
        assert stored is not None
        granted.append(sum(answers))
        kept.append(len(stored.active_leases(NOW)))
    return {"race": times, "leases_granted": granted, "leases_stored": kept}


async def measure(url: str, mode: str, args: argparse.Namespace) -> Doc:
    cls, atomic = MODES[mode]
    name = f"bench_{uuid.uuid4().hex[:10]}"
    stores = [cls(url, name, atomic_updates=atomic) for _ in range(STORES)]
    for store in stores:
        await store.open()
    try:
        return {
            "sequential": await sequential(stores[0], args.images),
            "parallel": await parallel(stores, args.workers, max(1, args.images // args.workers)),
            "contended": await contended(stores, args.races),
        }
    finally:
        for store in stores:
            await store.close()
        client: AsyncMongoClient[Doc] = AsyncMongoClient(url)
        await client.drop_database(name)
        await client.close()


def pooled(rounds: list[Doc]) -> Doc:
    """One mode's rounds together: samples pooled, parallel rate as the median round."""
    return {
        "rounds": len(rounds),
        "sequential": {op: ms([t for r in rounds for t in r["sequential"][op]]) for op in ("try_lease", "claim_slot")},
        "parallel": {
            "workers": rounds[0]["parallel"]["workers"],
            "ops_per_s_rounds": [r["parallel"]["ops_per_s"] for r in rounds],
            "ops_per_s": statistics.median(r["parallel"]["ops_per_s"] for r in rounds),
        },
        "contended": {
            "racers": RACERS,
            "race": ms([t for r in rounds for t in r["contended"]["race"]]),
            "leases_granted": [n for r in rounds for n in r["contended"]["leases_granted"]],
            "leases_stored": [n for r in rounds for n in r["contended"]["leases_stored"]],
        },
    }


def table(data: Doc) -> str:
    lines = [
        "| server | mode | try_lease median / p95 | claim_slot median / p95 | parallel lease+claim ops/s"
        " | 50-user race median | leases granted / stored (3 is right) |",
        "|---|---|---|---|---|---|---|",
    ]
    for server, modes in data["servers"].items():
        for mode, r in modes.items():
            s, p, c = r["sequential"], r["parallel"], r["contended"]
            granted = f"{min(c['leases_granted'])}–{max(c['leases_granted'])}"
            stored = f"{min(c['leases_stored'])}–{max(c['leases_stored'])}"
            lines.append(
                f"| {server} | {mode} | {s['try_lease']['median_ms']:.1f} / {s['try_lease']['p95_ms']:.1f} ms"
                f" | {s['claim_slot']['median_ms']:.1f} / {s['claim_slot']['p95_ms']:.1f} ms | {p['ops_per_s']:.0f}"
                f" | {c['race']['median_ms']:.0f} ms | {granted} / {stored} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--races", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="each mode once per round, in a rotating order")
    parser.add_argument("--out", type=Path, default=HERE / "results-leases.json")
    parser.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    manifest = load_manifest()
    data: Doc = {
        "images": args.images,
        "workers": args.workers,
        "races": args.races,
        "rounds": args.rounds,
        "ferretdb": manifest["ferretdb"]["version"],
        "postgresql": postgres_version(manifest),
        "pymongo": pymongo.version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "servers": {},
    }
    with tempfile.TemporaryDirectory(prefix="crowdseg-leases-") as tmp:
        for name, cls in (("ferretdb-sqlite", FerretDBServer), ("ferretdb-postgresql", FerretDBPostgresServer)):
            server = cls(Path(tmp) / name, manifest)
            server.start()
            try:
                rounds: dict[str, list[Doc]] = {mode: [] for mode in MODES}
                order = list(MODES)
                for n in range(args.rounds):  # the machine's load drifts: interleave the modes
                    for mode in order[n % len(order) :] + order[: n % len(order)]:
                        rounds[mode].append(asyncio.run(measure(server.url, mode, args)))
                        print(name, mode, n, rounds[mode][-1]["parallel"]["ops_per_s"], "ops/s", flush=True)
                data["servers"][name] = {mode: pooled(r) for mode, r in rounds.items()}
            finally:
                if isinstance(server, FerretDBPostgresServer):
                    server.destroy()
                else:
                    server.stop()
    data["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(table(data))


if __name__ == "__main__":
    main()
