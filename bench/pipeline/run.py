"""Pipeline benchmark: K simulated annotators against the cluster profile with 1, 2 and 4 consensus workers.

Real Apache Kafka, FerretDB and MinIO (the test servers from ``make servers``), every service its own
``crowdseg serve`` process (tests/cluster/stack.py), annotators reaching the API through the gateway.
One stack is started; the consensus pool grows from 1 to 2 to 4 workers between rounds (each round
its own task, after the consumer group has settled). For each round it measures

- ``api_submissions_per_s``: accepted submissions per second while the crowd works;
- ``pipeline_submissions_per_s``: submissions per second from the first accepted one until the
  consensus of every image includes all of them (what the worker pool sustains end to end);
- ``latency_ms`` median / p95 / p99: from a submission's 201 to the first ``consensus.updated``
  event (read from Kafka, the public result topic) whose consensus includes it.

    .venv/bin/python bench/pipeline/run.py [--annotators 8] [--images 12] [--replicates 8] [--size 384]
    .venv/bin/python bench/pipeline/run.py --table     # the Markdown table of results.json

Writes bench/pipeline/results.json. Numbers depend on the machine; nothing here is a test.
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
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer  # noqa: E402
from crowdseg.events import CONSENSUS_UPDATED  # noqa: E402

from tests.cluster.crowd import CrowdTask, wait_for  # noqa: E402
from tests.cluster.stack import ClusterStack  # noqa: E402
from tests.embedded import Api  # noqa: E402
from tests.servers import start_ferretdb, start_kafka, start_minio  # noqa: E402

RESULTS = Path(__file__).with_name("results.json")
LOG_LEVEL = os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING")  # the services' logs under the run's directory


class ResultWatcher:
    """Reads ``consensus.updated`` from the end of the topic (no group) and timestamps every event."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.events: list[tuple[float, str, int]] = []  # (seen at, image id, submissions included)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> ResultWatcher:
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("the result watcher did not start")
        return self

    async def _run(self) -> None:
        # No group: a subscription without one is assigned every partition of the topic.
        consumer = AIOKafkaConsumer(
            CONSENSUS_UPDATED, bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="latest"
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            partitions = sorted(consumer.assignment())
            await consumer.seek_to_end(*partitions)
            for partition in partitions:
                await consumer.position(partition)
            self._ready.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for records in batch.values():
                    for record in records:
                        event = json.loads(record.value)
                        self.events.append((now, event["image_id"], int(event["submissions"])))
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latencies(task: CrowdTask, events: list[tuple[float, str, int]]) -> list[float]:
    """Per submission: first consensus.updated of its image including at least as many submissions as
    had been accepted for that image when it was (so it includes this one)."""
    by_image: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for seen, image_id, count in events:
        by_image[image_id].append((seen, count))
    ordinal: dict[str, int] = defaultdict(int)
    result = []
    for submission_id in sorted(task.accepted_at, key=task.accepted_at.__getitem__):
        image_id = task.accepted[submission_id]
        ordinal[image_id] += 1
        accepted = task.accepted_at[submission_id]
        seen = min((t for t, n in by_image[image_id] if n >= ordinal[image_id]), default=None)
        if seen is not None:
            result.append(max(0.0, seen - accepted) * 1000)
    return result


def run_round(stack: ClusterStack, master: Api, workers: int, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    watcher = ResultWatcher(stack.kafka.bootstrap).start()
    try:
        task = CrowdTask.create(
            master, images=args.images, replicates=args.replicates, size=args.size, seed=seed, title=f"bench {workers}"
        )
        crowd = [Api.sign_up(stack.url, f"bench-{workers}-{n}@bench.crowdseg") for n in range(args.annotators)]
        started = time.time()
        with ThreadPoolExecutor(args.annotators) as pool:
            done = sum(pool.map(lambda n: task.annotate(crowd[n], bad=n == 0, seed=seed + n), range(args.annotators)))
        submitted = time.time()
        task.wait_for_full_consensus(timeout=900)
        expected = {image: args.replicates for image in task.images}

        def all_events_seen() -> bool:
            seen: dict[str, int] = {}
            for _, image_id, count in watcher.events:
                seen[image_id] = max(seen.get(image_id, 0), count)
            return all(seen.get(image, 0) >= n for image, n in expected.items())

        wait_for(all_events_seen, 300, "every consensus.updated event")
        finished = max(t for t, image_id, _ in watcher.events if image_id in expected)
    finally:
        watcher.stop()
    lat = latencies(task, watcher.events)
    return {
        "consensus_workers": workers,
        "submissions": done,
        "api_submissions_per_s": round(done / (submitted - started), 2),
        "pipeline_submissions_per_s": round(done / (finished - started), 2),
        "latency_ms": {
            "median": round(statistics.median(lat), 1),
            "p95": round(percentile(lat, 95), 1),
            "p99": round(percentile(lat, 99), 1),
            "samples": len(lat),
        },
    }


def run_drain_round(
    stack: ClusterStack, master: Api, workers: int, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """Consensus throughput alone: the crowd submits while no worker runs, then ``workers`` start on
    the backlog; timed from their start until every image's consensus includes all its submissions."""
    for process in stack.workers:
        process.stop()
    watcher = ResultWatcher(stack.kafka.bootstrap).start()
    try:
        task = CrowdTask.create(
            master, images=args.images, replicates=args.replicates, size=args.size, seed=seed, title=f"drain {workers}"
        )
        crowd = [Api.sign_up(stack.url, f"drain-{workers}-{n}@bench.crowdseg") for n in range(args.annotators)]
        with ThreadPoolExecutor(args.annotators) as pool:
            done = sum(pool.map(lambda n: task.annotate(crowd[n], bad=n == 0, seed=seed + n), range(args.annotators)))
        started = time.time()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda p: p.start().wait_ready(), stack.workers[:workers]))
        ready = time.time()
        task.wait_for_full_consensus(timeout=900)
        expected = set(task.images)

        def all_events_seen() -> bool:
            seen: dict[str, int] = {}
            for _, image_id, count in watcher.events:
                seen[image_id] = max(seen.get(image_id, 0), count)
            return all(seen.get(image, 0) >= args.replicates for image in expected)

        wait_for(all_events_seen, 300, "every consensus.updated event")
        ours = [t for t, image_id, _ in watcher.events if image_id in expected]
    finally:
        watcher.stop()
    first, finished = min(ours), max(ours)
    return {
        "mode": "drain",
        "consensus_workers": workers,
        "submissions": done,
        "images": len(expected),
        "workers_ready_s": round(ready - started, 2),
        "drain_s": round(finished - started, 2),
        "drain_images_per_s": round(len(expected) / (finished - started), 3),
        "first_to_last_event_s": round(finished - first, 2),
        "images_per_s_first_to_last": round((len(expected) - 1) / max(finished - first, 1e-9), 3),
    }


def drain_table(report: dict[str, Any]) -> str:
    lines = [
        "| consensus workers | images (× replicates) | workers ready (s) | backlog drained (s) | images/s "
        "| first → last result (s) | images/s (first → last) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.get("drain_rounds", []):
        lines.append(
            f"| {r['consensus_workers']} | {r['images']} × {report['parameters']['replicates']} "
            f"| {r['workers_ready_s']} | {r['drain_s']} | {r['drain_images_per_s']} "
            f"| {r['first_to_last_event_s']} | {r['images_per_s_first_to_last']} |"
        )
    return "\n".join(lines)


def table(report: dict[str, Any]) -> str:
    lines = [
        "| consensus workers | submissions | API submissions/s | pipeline submissions/s "
        "| latency median (ms) | p95 (ms) | p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rounds"]:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['consensus_workers']} | {r['submissions']} | {r['api_submissions_per_s']} "
            f"| {r['pipeline_submissions_per_s']} | {lat['median']:.0f} | {lat['p95']:.0f} | {lat['p99']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument("--size", type=int, default=384, help="image width and height in pixels")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument(
        "--drain",
        default="",
        help="drain rounds with these worker counts (e.g. 1,2,1,2): the backlog is submitted with no worker running",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --out and exit")
    args = parser.parse_args()
    if args.replicates > args.annotators:  # no image could ever be full: the run would only time out
        parser.error(f"--replicates {args.replicates} needs at least as many --annotators (got {args.annotators})")
    if args.table:
        report = json.loads(args.out.read_text())
        print(table(report))
        if report.get("drain_rounds"):
            print()
            print(drain_table(report))
        return 0
    pools = [int(w) for w in args.workers.split(",") if w]
    drains = [int(w) for w in args.drain.split(",") if w]
    tmp = Path(tempfile.mkdtemp(prefix="crowdseg-bench-"))
    kafka, mongo, minio = start_kafka(tmp / "kafka"), start_ferretdb(tmp / "mongo"), start_minio(tmp / "minio")
    first_pool = pools[0] if pools else max(drains)
    stack = ClusterStack(tmp / "stack", kafka, mongo, minio, consensus_workers=first_pool, worker_log_level=LOG_LEVEL)
    rounds = []
    drain_rounds = []
    try:
        stack.start()
        master = Api.sign_up(stack.url, "master@bench.crowdseg", "Bench")
        for index, workers in enumerate(pools):
            while len(stack.workers) < workers:
                stack.add_worker()
            time.sleep(5)  # let the consumer group settle after the rebalance
            result = run_round(stack, master, workers, args, seed=100 * (index + 1))
            print(json.dumps(result), flush=True)
            rounds.append(result)
        while len(stack.workers) < max(drains, default=0):
            stack.add_worker()
        for index, workers in enumerate(drains):
            result = run_drain_round(stack, master, workers, args, seed=1000 * (index + 1))
            print(json.dumps(result), flush=True)
            drain_rounds.append(result)
    finally:
        stack.stop()
        for server in (kafka, mongo, minio):
            server.stop()
    report = {
        "benchmark": "pipeline",
        "profile": f"cluster: Apache Kafka {kafka.version}, FerretDB, MinIO; every service its own process",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "parameters": {
            "annotators": args.annotators,
            "bad_annotators": 1,
            "images": args.images,
            "replicates": args.replicates,
            "image_size": args.size,
            "partitions": 8,
        },
        "rounds": rounds,
        "drain_rounds": drain_rounds,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
