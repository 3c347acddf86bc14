"""Where a `next` → submit cycle's CPU goes, process by process (issue 8's diagnosis; not a benchmark
of record: bench/load/run.py is).

aiohttp clients loop `next` → submit (one small contour) against the embedded profile or the cluster
profile, as bench/load/run.py sets them up. Printed as JSON: CPU milliseconds per cycle of every
process, cycles/s, client-side `next` / submit p50 and p99, and the seconds until consensus includes
every submission. On the cluster, with ``--store-ops``, also the store commands per cycle per service.

    .venv/bin/python bench/load/cycles.py --images 6000 --cycles 4000              # embedded, 8 clients
    .venv/bin/python bench/load/cycles.py --images 3000 --cycles 9000 --clients 400 --pace 2 \
        --worker-nice 0                              # 200 cycles/s, three raters per image, worker at nice 0
    .venv/bin/python bench/load/cycles.py --profile cluster --images 2000 --cycles 600 --store-ops

With ``PYTHONPATH=bench/load/probe`` and the variables that bench/load/probe/sitecustomize.py names,
every server process also logs its collections, fsyncs or slow SQLite statements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402
from shapes import small_polygon  # noqa: E402

from tests.embedded import Api  # noqa: E402


def embedded_processes(profile: bench.Embedded) -> dict[str, list[psutil.Process]]:
    root = psutil.Process(profile.server_pids()[0])
    groups: dict[str, list[psutil.Process]] = {"main": [root], "consensus": [], "broker": [], "other": []}
    for child in root.children(recursive=True):
        command = " ".join(child.cmdline())
        groups["consensus" if "consensus" in command else "broker" if "tansu" in command else "other"].append(child)
    return groups


def cluster_processes(profile: bench.Cluster) -> dict[str, list[psutil.Process]]:
    groups = {name: [psutil.Process(p.pid)] for name, p in profile.stack.services.items() if p.pid}
    for name, server in (("kafka", profile.kafka), ("document store", profile.mongo), ("minio", profile.minio)):
        if server.pid:
            groups[name] = [psutil.Process(server.pid)]
    postgres = getattr(profile.mongo, "postgres", None)
    if postgres is not None and postgres.pid:
        root = psutil.Process(postgres.pid)
        groups["postgresql"] = [root, *root.children(recursive=True)]
    return groups


def cpu(groups: dict[str, list[psutil.Process]]) -> dict[str, float]:
    totals = {}
    for name, processes in groups.items():
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        totals[name] = total
    return totals


def store_commands(prefix: str) -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for path in Path(prefix).parent.glob(f"{Path(prefix).name}.*"):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for command, collection, n, _ in report["commands"]:
            counts[(report["service"], command, collection)] += n
    return counts


async def annotator(
    url: str,
    token: str,
    task_id: str,
    left: list[int],
    pace: float,
    seed: int,
    latencies: dict[str, list[float]],
    statuses: Counter[str],
) -> None:
    rng = random.Random(seed)
    async with aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        await asyncio.sleep(rng.uniform(0, pace))
        while left[0] > 0:
            left[0] -= 1
            began = time.perf_counter()
            async with http.get(f"/api/v1/tasks/{task_id}/next") as answer:
                if answer.status != 200:
                    statuses[f"next {answer.status}"] += 1
                    await asyncio.sleep(0.5)
                    continue
                image = (await answer.json())["image"]
            asked = time.perf_counter()
            body = {
                "id": str(uuid.uuid4()),
                "image_id": image["id"],
                "shapes": [{"type": "contour", "points": small_polygon(image["width"], image["height"], rng)}],
                "duration_ms": 1000,
            }
            async with http.post(f"/api/v1/tasks/{task_id}/submissions", json=body) as answer:
                await answer.read()
                statuses[f"submit {answer.status}"] += 1
            done = time.perf_counter()
            latencies["next"].append(1000 * (asked - began))
            latencies["submit"].append(1000 * (done - asked))
            if pace > 0:
                await asyncio.sleep(max(0.0, pace - (done - began)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("embedded", "cluster"), default="embedded")
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--cycles", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pace", type=float, default=0.0, help="seconds per cycle per client (0: no pause)")
    parser.add_argument("--worker-nice", type=int, default=None, help="embedded: renice the consensus worker")
    parser.add_argument(
        "--cluster-store", choices=("ferretdb-sqlite", "ferretdb-postgresql"), default="ferretdb-postgresql"
    )
    parser.add_argument("--store-ops", action="store_true", help="cluster: count store commands per cycle")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="crowdseg-cycles-"))
    if args.store_ops:  # inherited by every service process through the probe
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "probe"), os.environ.get("PYTHONPATH")]))
        os.environ["PROBE_MONGO"] = str(tmp / "store-commands")
    profile: Any = bench.Embedded(tmp) if args.profile == "embedded" else bench.Cluster(tmp, 1, args.cluster_store)
    profile.start()
    try:
        master = Api.sign_up(profile.url, "taskmaster@load.crowdseg", "Taskmaster", bench.PASSWORD)
        task_id = bench.create_task(master, 3)
        bench.upload_images(master, task_id, args.images, 500, 128, 2)
        tokens, _ = bench.sign_up_annotators(profile.url, args.clients)
        bench.wait_quiet(profile)
        groups = embedded_processes(profile) if args.profile == "embedded" else cluster_processes(profile)
        if args.worker_nice is not None:
            for process in groups.get("consensus", []):
                process.nice(args.worker_nice)
        time.sleep(2.5 if args.store_ops else 0)
        commands_before = store_commands(str(tmp / "store-commands"))
        before, began = cpu(groups), time.monotonic()
        left, latencies, statuses = [args.cycles], {"next": [], "submit": []}, Counter[str]()

        async def run_all() -> None:
            await asyncio.gather(
                *(
                    annotator(profile.url, token, task_id, left, args.pace, n, latencies, statuses)
                    for n, token in enumerate(tokens)
                )
            )

        asyncio.run(run_all())
        elapsed, last = time.monotonic() - began, time.time()
        after = cpu(groups)
        time.sleep(2.5 if args.store_ops else 0)
        commands = store_commands(str(tmp / "store-commands")) - commands_before
        lag = bench.consensus_lag(profile, task_id, last, 300)
        report = {
            "profile": profile.description,
            "cpu_ms_per_cycle": {name: round(1000 * (after[name] - before[name]) / args.cycles, 2) for name in after},
            "cycles_per_s": round(args.cycles / elapsed, 1),
            "next_ms_p50_p99": [percentile(latencies["next"], 0.5), percentile(latencies["next"], 0.99)],
            "submit_ms_p50_p99": [percentile(latencies["submit"], 0.5), percentile(latencies["submit"], 0.99)],
            "consensus_caught_up_s": lag.get("seconds_after_last_submission"),
            "statuses": dict(statuses),
        }
        if args.store_ops:
            report["store_commands_per_cycle"] = {
                " ".join(key): round(n / args.cycles, 2) for key, n in commands.most_common()
            }
            report["store_commands_per_cycle_total"] = round(sum(commands.values()) / args.cycles, 1)
        print(json.dumps(report, indent=2))
    finally:
        profile.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
