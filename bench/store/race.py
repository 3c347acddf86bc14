"""Is a filtered single-document update atomic? Racing compare-and-sets on real MongoDB-protocol servers.

Starts FerretDB v1 on SQLite and FerretDB v1 on PostgreSQL (tests/servers.py, from the provisioned
cache) and races, from ``--clients`` separate clients (one connection pool each):

* ``find_one_and_update({"_id": x, "_rev": 0}, {"$set": {"_rev": 1, ...}})``: how many "win" (1 is right);
* ``update_one`` with the same filter: how many report ``matched_count == 1`` (1 is right);
* a compare-and-set loop (read ``_rev``, ``update_one({"_id", "_rev": r}, {"$set": {"_rev": r + 1},
  "$push": {"log": me}})``, retry on a miss): every client appends once, so ``--clients`` entries
  must survive;
* ``$inc``: every client increments a counter ``--increments`` times; the sum must survive.

Writes ``results-race.json`` beside this file (``--out`` to change) and prints a table::

    .venv/bin/python bench/store/race.py [--clients 30] [--trials 5] [--increments 20]
    .venv/bin/python bench/store/race.py --table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers import FerretDBPostgresServer, FerretDBServer, load_manifest, postgres_version  # noqa: E402

HERE = Path(__file__).resolve().parent
Doc = dict[str, Any]


async def race_find_one_and_update(clients: list[AsyncMongoClient[Doc]], db: str, doc_id: str) -> Doc:
    await clients[0][db].race.insert_one({"_id": doc_id, "_rev": 0, "winner": None})

    async def one(i: int) -> bool:
        got = await clients[i][db].race.find_one_and_update(
            {"_id": doc_id, "_rev": 0}, {"$set": {"_rev": 1, "winner": i}}
        )
        return got is not None

    wins = await asyncio.gather(*(one(i) for i in range(len(clients))))
    final = await clients[0][db].race.find_one({"_id": doc_id})
    assert final is not None
    return {"winners": sum(wins), "final_rev": final["_rev"]}


async def race_update_one(clients: list[AsyncMongoClient[Doc]], db: str, doc_id: str) -> Doc:
    await clients[0][db].race.insert_one({"_id": doc_id, "_rev": 0, "winner": None})

    async def one(i: int) -> bool:
        result = await clients[i][db].race.update_one({"_id": doc_id, "_rev": 0}, {"$set": {"_rev": 1, "winner": i}})
        return result.matched_count == 1

    wins = await asyncio.gather(*(one(i) for i in range(len(clients))))
    final = await clients[0][db].race.find_one({"_id": doc_id})
    assert final is not None
    return {"winners": sum(wins), "final_rev": final["_rev"]}


async def race_cas_loop(clients: list[AsyncMongoClient[Doc]], db: str, doc_id: str) -> Doc:
    await clients[0][db].race.insert_one({"_id": doc_id, "_rev": 0, "log": []})
    attempts = [0] * len(clients)

    async def one(i: int) -> None:
        coll = clients[i][db].race
        while True:
            attempts[i] += 1
            doc = await coll.find_one({"_id": doc_id})
            assert doc is not None
            rev = doc["_rev"]
            result = await coll.update_one(
                {"_id": doc_id, "_rev": rev}, {"$set": {"_rev": rev + 1}, "$push": {"log": i}}
            )
            if result.matched_count == 1:
                return

    await asyncio.gather(*(one(i) for i in range(len(clients))))
    final = await clients[0][db].race.find_one({"_id": doc_id})
    assert final is not None
    return {
        "appends_acknowledged": len(clients),
        "appends_surviving": len(final["log"]),
        "final_rev": final["_rev"],
        "attempts": sum(attempts),
    }


async def race_inc(clients: list[AsyncMongoClient[Doc]], db: str, doc_id: str, increments: int) -> Doc:
    await clients[0][db].race.insert_one({"_id": doc_id, "n": 0})

    async def one(i: int) -> None:
        for _ in range(increments):
            await clients[i][db].race.update_one({"_id": doc_id}, {"$inc": {"n": 1}})

    await asyncio.gather(*(one(i) for i in range(len(clients))))
    final = await clients[0][db].race.find_one({"_id": doc_id})
    assert final is not None
    return {"increments_acknowledged": len(clients) * increments, "increments_surviving": final["n"]}


async def measure(url: str, n_clients: int, trials: int, increments: int) -> Doc:
    clients: list[AsyncMongoClient[Doc]] = [AsyncMongoClient(url, w="majority") for _ in range(n_clients)]
    db = f"race_{os.getpid()}_{int(time.time())}"
    try:
        await asyncio.gather(*(c.admin.command("ping") for c in clients))  # every pool connected
        out: Doc = {"find_one_and_update": [], "update_one": [], "cas_loop": [], "inc": []}
        for t in range(trials):
            out["find_one_and_update"].append(await race_find_one_and_update(clients, db, f"fam-{t}"))
            out["update_one"].append(await race_update_one(clients, db, f"uo-{t}"))
            out["cas_loop"].append(await race_cas_loop(clients, db, f"loop-{t}"))
            out["inc"].append(await race_inc(clients, db, f"inc-{t}", increments))
        await clients[0].drop_database(db)
        return out
    finally:
        await asyncio.gather(*(c.close() for c in clients))


def summary(result: Doc) -> Doc:
    fam, uo, loop, inc = (result[k] for k in ("find_one_and_update", "update_one", "cas_loop", "inc"))
    return {
        "find_one_and_update_winners": [r["winners"] for r in fam],
        "update_one_winners": [r["winners"] for r in uo],
        "cas_loop_surviving_of": [[r["appends_surviving"], r["appends_acknowledged"]] for r in loop],
        "inc_surviving_of": [[r["increments_surviving"], r["increments_acknowledged"]] for r in inc],
        "atomic": all(r["winners"] == 1 for r in fam + uo)
        and all(r["appends_surviving"] == r["appends_acknowledged"] for r in loop)
        and all(r["increments_surviving"] == r["increments_acknowledged"] for r in inc),
    }


def table(data: Doc) -> str:
    lines = [
        "| server | find_one_and_update winners | update_one winners | CAS-loop appends surviving"
        " | $inc surviving | atomic |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in data["servers"].items():
        s = run["summary"]
        fam = "/".join(map(str, s["find_one_and_update_winners"]))
        uo = "/".join(map(str, s["update_one_winners"]))
        loop = ", ".join(f"{a} of {b}" for a, b in s["cas_loop_surviving_of"])
        inc = ", ".join(f"{a} of {b}" for a, b in s["inc_surviving_of"])
        lines.append(f"| {name} | {fam} | {uo} | {loop} | {inc} | {'yes' if s['atomic'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--increments", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "results-race.json")
    parser.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    manifest = load_manifest()
    data: Doc = {
        "clients": args.clients,
        "trials": args.trials,
        "increments_per_client": args.increments,
        "ferretdb": manifest["ferretdb"]["version"],
        "postgresql": postgres_version(manifest),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "servers": {},
    }
    with tempfile.TemporaryDirectory(prefix="crowdseg-race-") as tmp:
        kinds: list[tuple[str, type[FerretDBServer]]] = [
            ("ferretdb-sqlite", FerretDBServer),
            ("ferretdb-postgresql", FerretDBPostgresServer),
        ]
        for name, cls in kinds:
            server = cls(Path(tmp) / name, manifest)
            server.start()
            try:
                result = asyncio.run(measure(server.url, args.clients, args.trials, args.increments))
            finally:
                if isinstance(server, FerretDBPostgresServer):
                    server.destroy()
                else:
                    server.stop()
            data["servers"][name] = {"raw": result, "summary": summary(result)}
            print(name, json.dumps(data["servers"][name]["summary"]), flush=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(table(data))


if __name__ == "__main__":
    main()
