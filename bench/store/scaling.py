"""How one document's read and write cost grows with its collection, on the cluster profile's test servers.

FerretDB v1 (SQLite and PostgreSQL backends): for each collection size, ``--samples`` times a
``find_one`` and a ``replace_one`` filtered on ``_id`` (and on ``_id`` + ``_rev``, as
:meth:`MongoStore.mutate` writes) of documents shaped like crowdseg's image documents. On MongoDB
both are index lookups; where a write's time grows with the collection, every lease, slot and
outbox mark of a large task does too.

    .venv/bin/python bench/store/scaling.py [--sizes 1000,4000,16000] [--samples 40]
    .venv/bin/python bench/store/scaling.py --table

Writes ``results-scaling.json`` beside this file. Numbers depend on the machine; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pymongo
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers import FerretDBPostgresServer, FerretDBServer, load_manifest, postgres_version  # noqa: E402

HERE = Path(__file__).resolve().parent
Doc = dict[str, Any]
BODY = "x" * 700  # about the size of an image document's JSON body


def doc(n: int, rev: int = 0) -> Doc:
    return {"_id": f"img-{n:07d}", "_rev": rev, "task_id": "t", "name": f"{n:07d}.png", "tutorial": False, "body": BODY}


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def measure(url: str, sizes: list[int], samples: int) -> list[Doc]:
    client: MongoClient[Doc] = MongoClient(url)
    coll = client["bench_scaling"]["images"]
    coll.create_index([("task_id", 1), ("name", 1)], unique=True)
    rows: list[Doc] = []
    stored = 0
    try:
        for size in sizes:
            for start in range(stored, size, 1000):
                coll.insert_many([doc(n) for n in range(start, min(size, start + 1000))])
            stored = size
            picks = [int(size * (k + 0.5) / samples) for k in range(samples)]
            timings: dict[str, list[float]] = {"find_one _id": [], "replace_one _id": [], "replace_one _id+_rev": []}
            for n in picks:
                began = time.perf_counter()
                current = coll.find_one({"_id": f"img-{n:07d}"})
                timings["find_one _id"].append(time.perf_counter() - began)
                assert current is not None
                rev = int(current["_rev"])
                began = time.perf_counter()
                coll.replace_one({"_id": current["_id"]}, doc(n, rev + 1))
                timings["replace_one _id"].append(time.perf_counter() - began)
                began = time.perf_counter()
                coll.replace_one({"_id": current["_id"], "_rev": rev + 1}, doc(n, rev + 2))
                timings["replace_one _id+_rev"].append(time.perf_counter() - began)
            row = {"documents": size, **{f"{k} ms": median_ms(v) for k, v in timings.items()}}
            print(row, flush=True)
            rows.append(row)
    finally:
        client.drop_database("bench_scaling")
        client.close()
    return rows


def table(data: Doc) -> str:
    lines = [
        "| server | documents | `find_one` by `_id` (ms) | `replace_one` by `_id` (ms) | by `_id` + `_rev` (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for server, rows in data["servers"].items():
        for r in rows:
            lines.append(
                f"| {server} | {r['documents']} | {r['find_one _id ms']} | {r['replace_one _id ms']} "
                f"| {r['replace_one _id+_rev ms']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,4000,16000")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--out", type=Path, default=HERE / "results-scaling.json")
    parser.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    manifest = load_manifest()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    data: Doc = {
        "samples": args.samples,
        "ferretdb": manifest["ferretdb"]["version"],
        "postgresql": postgres_version(manifest),
        "pymongo": pymongo.version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "servers": {},
    }
    with tempfile.TemporaryDirectory(prefix="crowdseg-scaling-") as tmp:
        for name, cls in (("ferretdb-sqlite", FerretDBServer), ("ferretdb-postgresql", FerretDBPostgresServer)):
            server = cls(Path(tmp) / name, manifest)
            server.start()
            try:
                data["servers"][name] = measure(server.url, sizes, args.samples)
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
