"""Load benchmark of the annotator work path (issue 8): Locust annotators against a real crowdseg.

Profiles: ``embedded`` (a ``crowdseg up --data DIR --port N`` child process with its consensus worker,
tests/embedded.py), ``embedded-one-process`` (the same with ``CROWDSEG_CONSENSUS_PROCESSES=0``) and
``cluster`` (every service its own ``crowdseg serve`` process against Apache Kafka, FerretDB and
MinIO, tests/cluster/stack.py, as bench/pipeline does; the annotators reach the API through the
gateway). For each profile:

1. Setup: a taskmaster creates a contour task (replicates 3, random order, unseen first) and uploads
   ``--images`` 128×128 PNGs through ``POST /tasks/{id}/images`` in ZIPs of 500 (the honest path; its
   rate is reported). ``--annotators`` accounts sign up and log in; their tokens are reused.
2. *saturation*: ``--saturation-users`` annotators, no pause, ``--saturation-seconds``: accepted
   submissions/s and ``next`` / submit latency.
3. *paced*: every annotator, with think time (a fixed cycle per user, as Locust's ``constant_pacing``,
   the users' cycles spread evenly) so that together they offer ``--offered-rate`` submissions/s,
   ``--paced-seconds``: latency median/p95/p99 and the rate achieved against the rate offered.
4. After each phase: seconds from its last accepted submission until every consensus includes every
   submission (the store's consensus records, summed, catch up with its stored submissions).

Each phase is one headless Locust process (``FastHttpUser``, bench/load/locustfile.py); only the
window from "every user spawned" (plus one cycle when paced) to "stopping" is measured. The server's
resident set is sampled every 0.5 s (embedded: the process and its children; cluster: the sum over
the crowdseg processes, and Kafka + FerretDB + MinIO apart).

    .venv/bin/python bench/load/run.py                                   # the issue's sizes, every profile
    .venv/bin/python bench/load/run.py --images 2000 --saturation-seconds 20 --paced-seconds 20 \
        --profile embedded                                               # a quick try (mostly the
                                                                         # 1 000 sign-ups: argon2, ~1 s each here)
    .venv/bin/python bench/load/run.py --table [--readme]                # the table of results.json
                                                                         # (--readme: into bench/README.md)

Writes (merges per profile into) bench/load/results.json. Numbers depend on the machine: the load
generator shares it with the server. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from crowdseg.simulation import synthetic_image  # noqa: E402
from summary import last_accepted, summarize  # noqa: E402

from tests.embedded import Api, EmbeddedServer  # noqa: E402

RESULTS = HERE / "results.json"
README = HERE.parent / "README.md"
MARKERS = ("<!-- load-table:start -->", "<!-- load-table:end -->")
LOCUST = Path(sys.executable).parent / "locust"
PASSWORD = "correct-horse-battery"

# Issue 8's figures before the work (embedded profile, this machine, no pause, 128×128, replicates 3).
TODAY = [
    {"images": 1_000, "users": 32, "accepted_per_s": 64, "next_median": 173, "next_p99": 388, "submit_median": 336},
    {"images": 10_000, "users": 50, "accepted_per_s": 7, "next_median": 3334, "next_p99": 6399, "submit_median": 3676},
]


# --- the servers under load ------------------------------------------------------------------------


class Profile:
    name: str
    url: str
    description: str

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def server_pids(self) -> list[int]:
        """The crowdseg processes (their children are counted with them)."""
        raise NotImplementedError

    def infra_pids(self) -> list[int]:
        """Kafka, the document store, the object store, when they are separate processes."""
        return []

    def counts(self, task_id: str) -> tuple[int, int]:
        """(submissions stored for the task, submissions included in its consensus records, summed)."""
        raise NotImplementedError

    def logs(self) -> str:
        return ""


class Embedded(Profile):
    name = "embedded"
    description = (
        "embedded: `crowdseg up` (SQLite, files, its Kafka-protocol broker and one consensus worker process as"
        " children)"
    )

    def __init__(self, tmp: Path, consensus_processes: int = 1) -> None:
        self.server = EmbeddedServer(tmp / "data")
        self.url = self.server.url
        self.consensus_processes = consensus_processes
        if consensus_processes == 0:  # the previous design, side by side
            self.name = "embedded-one-process"
            self.description = "embedded, consensus in the main process (`CROWDSEG_CONSENSUS_PROCESSES=0`)"
        self._db: sqlite3.Connection | None = None

    def start(self) -> None:
        os.environ["CROWDSEG_CONSENSUS_PROCESSES"] = str(self.consensus_processes)  # inherited by `crowdseg up`
        try:
            self.server.start(timeout=120)
        finally:
            del os.environ["CROWDSEG_CONSENSUS_PROCESSES"]

    def stop(self) -> None:
        if self._db is not None:
            self._db.close()
        self.server.stop()

    def server_pids(self) -> list[int]:
        process = self.server.process
        return [process.pid] if process is not None else []

    def counts(self, task_id: str) -> tuple[int, int]:
        if self._db is None:
            path = self.server.data_dir / "crowdseg.sqlite3"
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        stored = self._db.execute("SELECT COUNT(*) FROM submissions WHERE task_id = ?", (task_id,)).fetchone()[0]
        included = self._db.execute(
            "SELECT COALESCE(SUM(submissions), 0) FROM consensus WHERE task_id = ?", (task_id,)
        ).fetchone()[0]
        return int(stored), int(included)

    def logs(self) -> str:
        return self.server.log_tail()


class Cluster(Profile):
    name = "cluster"

    def __init__(self, tmp: Path, consensus_workers: int, store: str = "ferretdb-sqlite") -> None:
        from tests.cluster.stack import ClusterStack
        from tests.servers import FerretDBPostgresServer, load_manifest, start_ferretdb, start_kafka, start_minio

        self.tmp = tmp
        self.kafka = start_kafka(tmp / "kafka")
        if store == "ferretdb-postgresql":  # FerretDB v1 on SQLite scans a collection per _id lookup
            self.name = "cluster-postgresql"
            self.mongo = FerretDBPostgresServer(tmp / "mongo", load_manifest())
            self.mongo.start()
        else:
            self.mongo = start_ferretdb(tmp / "mongo")
        backend = "PostgreSQL" if store == "ferretdb-postgresql" else "SQLite"
        self.minio = start_minio(tmp / "minio")
        self.stack = ClusterStack(
            tmp / "stack", self.kafka, self.mongo, self.minio,
            consensus_workers=consensus_workers, worker_log_level="WARNING",
        )
        self.description = (
            f"cluster: Apache Kafka {self.kafka.version}, FerretDB on {backend}, MinIO; every service its own process, "
            f"{consensus_workers} consensus worker(s)"
        )
        self._client: Any = None

    def start(self) -> None:
        self.stack.start()
        self.url = self.stack.url

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        self.stack.stop()
        for server in (self.kafka, self.mongo, self.minio):
            server.stop()
        if hasattr(self.mongo, "destroy"):  # FerretDB on PostgreSQL: PostgreSQL too
            self.mongo.destroy()

    def server_pids(self) -> list[int]:
        return [pid for p in self.stack.services.values() if (pid := p.pid) is not None]

    def infra_pids(self) -> list[int]:
        return [pid for s in (self.kafka, self.mongo, self.minio) if (pid := s.pid) is not None]

    def counts(self, task_id: str) -> tuple[int, int]:
        from pymongo import MongoClient

        if self._client is None:
            self._client = MongoClient(self.mongo.url, serverSelectionTimeoutMS=10_000)
        database = self._client[self.stack.database]
        stored = database["submissions"].count_documents({"task_id": task_id})
        included = sum(
            int(doc.get("submissions", 0))
            for doc in database["consensus"].find({"task_id": task_id}, {"submissions": 1, "_id": 0})
        )
        return int(stored), included

    def logs(self) -> str:
        return self.stack.logs()


# --- measuring the processes -------------------------------------------------------------------------


def tree(pids: list[int]) -> list[psutil.Process]:
    processes = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes.extend([root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    return processes


def rss(pids: list[int]) -> int:
    total = 0
    for process in tree(pids):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for process in tree(pids):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


class RssSampler:
    """Peak resident set of the server (and, apart, its infrastructure) every 0.5 s, per stage."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.stage = "setup"
        self.peaks: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        peaks = self.peaks.setdefault(self.stage, {"server": 0, "infra": 0})
        peaks["server"] = max(peaks["server"], rss(self.profile.server_pids()))
        if infra := self.profile.infra_pids():
            peaks["infra"] = max(peaks["infra"], rss(infra))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def mib(self, stage: str | None = None) -> dict[str, float]:
        stages = [stage] if stage else list(self.peaks)
        server = max((self.peaks.get(s, {}).get("server", 0) for s in stages), default=0)
        infra = max((self.peaks.get(s, {}).get("infra", 0) for s in stages), default=0)
        out = {"server": round(server / 2**20, 1)}
        if infra:
            out["infrastructure"] = round(infra / 2**20, 1)
        return out


def wait_quiet(profile: Profile, timeout: float = 300.0, threshold: float = 0.15) -> float:
    """Wait until the server uses less than ``threshold`` of one core for two seconds running
    (ingest's background work, the assign service's structures, the outbox have settled)."""
    started = time.monotonic()
    quiet = 0
    before = cpu_seconds(profile.server_pids())
    while time.monotonic() - started < timeout:
        time.sleep(1.0)
        now = cpu_seconds(profile.server_pids())
        quiet = quiet + 1 if now - before < threshold else 0
        before = now
        if quiet >= 2:
            break
    return round(time.monotonic() - started, 1)


def retry(call: Callable[[], httpx.Response], ok: tuple[int, ...], attempts: int = 5) -> httpx.Response:
    for attempt in range(attempts):
        try:
            response = call()
            if response.status_code in ok:
                return response
            if response.status_code < 500 or attempt == attempts - 1:
                raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} "
                                   f"{response.text[:500]}")
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
        time.sleep(1 + attempt)
    raise AssertionError("unreachable")


# --- setup ---------------------------------------------------------------------------------------------


def create_task(master: Api, replicates: int) -> str:
    response = master.http.post(
        "/tasks",
        json={
            "title": "load benchmark",
            "instructions": "Outline the object.",
            "tool": "contour",
            "replicates": replicates,
            "order": "random",
            "unseen_first": True,
            "visibility": "public",
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def upload_images(master: Api, task_id: str, images: int, per_zip: int, size: int, concurrency: int) -> dict[str, Any]:
    """``images`` PNGs in ZIPs of ``per_zip``. The pixels repeat every ``per_zip`` images (one ZIP's
    worth of distinct synthetic images, made once); names are unique, so ingest does all its work."""
    pool = [synthetic_image(i, width=size, height=size, seed=8).png for i in range(min(per_zip, images))]
    batches = [range(start, min(start + per_zip, images)) for start in range(0, images, per_zip)]

    def archive(batch: range) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
            for n in batch:
                zf.writestr(f"image-{n:06d}.png", pool[n % len(pool)])
        return buffer.getvalue()

    def send(batch: range) -> float:
        data = archive(batch)
        began = time.monotonic()
        response = retry(
            lambda: master.http.post(
                f"/tasks/{task_id}/images",
                files=[("files", (f"batch-{batch.start}.zip", data, "application/zip"))],
                timeout=1800,
            ),
            ok=(202,),
        )
        body = response.json()
        assert not body["rejected"] and len(body["accepted"]) == len(batch), response.text[:1000]
        return time.monotonic() - began

    started = time.monotonic()
    done = 0
    with ThreadPoolExecutor(concurrency) as executor:
        durations = []
        for seconds in executor.map(send, batches):
            durations.append(seconds)
            done += per_zip
            if len(durations) % 20 == 0:
                rate = min(done, images) / (time.monotonic() - started)
                print(f"  uploaded {min(done, images)} of {images} images ({rate:.0f}/s)", flush=True)
    elapsed = time.monotonic() - started
    task = master.http.get(f"/tasks/{task_id}").json()
    assert task.get("images") in (None, images), f"the task holds {task.get('images')} images, not {images}"
    return {
        "path": "HTTP POST /tasks/{id}/images",
        "images": images,
        "per_zip": per_zip,
        "concurrent_uploads": concurrency,
        "seconds": round(elapsed, 1),
        "images_per_s": round(images / elapsed, 1),
        "zip_seconds_median": round(sorted(durations)[len(durations) // 2], 2),
    }


def sign_up_annotators(url: str, count: int, concurrency: int = 8) -> tuple[list[str], float]:
    client = httpx.Client(base_url=f"{url}/api/v1", timeout=120, limits=httpx.Limits(max_connections=concurrency))

    def one(n: int) -> str:
        email = f"annotator-{n:04d}@load.crowdseg"
        body = {"email": email, "password": PASSWORD, "name": f"Annotator {n}"}
        retry(lambda: client.post("/auth/signup", json=body), ok=(201,))
        login = retry(lambda: client.post("/auth/login", json={"email": email, "password": PASSWORD}), ok=(200,))
        return str(login.json()["access_token"])

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(concurrency) as executor:
            tokens = list(executor.map(one, range(count)))
    finally:
        client.close()
    return tokens, round(time.monotonic() - started, 1)


# --- phases --------------------------------------------------------------------------------------------


def run_locust(
    profile: Profile, tmp: Path, task_id: str, tokens_file: Path, name: str, users: int, pace: float, seconds: float
) -> dict[str, Any]:
    spawn_rate = users if pace <= 0 else users / pace  # paced: arrivals spread evenly over one cycle
    spawn_seconds = users / spawn_rate
    samples_path = tmp / f"{profile.name}-{name}-samples.json"
    log_path = tmp / f"{profile.name}-{name}-locust.log"
    command = [
        str(LOCUST), "-f", str(HERE / "locustfile.py"), "--headless", "--only-summary",
        "--host", profile.url, "--users", str(users), "--spawn-rate", f"{spawn_rate:g}",
        "--run-time", f"{math.ceil(spawn_seconds + max(pace, 0) + seconds)}s", "--stop-timeout", "30",
        "--exit-code-on-error", "0", "--loglevel", "WARNING",
        "--task-id", task_id, "--tokens-file", str(tokens_file), "--pace", f"{pace:g}",
        "--samples-out", str(samples_path),
    ]
    load_before = [round(x, 2) for x in os.getloadavg()]
    server_cpu_before = cpu_seconds(profile.server_pids())
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with log_path.open("wb") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, check=False).returncode
    wall = time.monotonic() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0 or not samples_path.exists():
        raise RuntimeError(f"locust exited with {code}:\n{log_path.read_text(errors='replace')[-4000:]}")
    recorded = json.loads(samples_path.read_text())
    marks, requests = recorded["marks"], recorded["requests"]
    start, end = marks["measure_from"], marks.get("stopping_at", time.time())
    offered = users / pace if pace > 0 else None
    result = summarize(requests, start, end, offered)
    locust_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    result.update(
        users=users,
        pace_seconds=round(pace, 3) if pace > 0 else 0,
        spawn_rate=round(spawn_rate, 1),
        load_average_before=load_before,
        load_average_after=[round(x, 2) for x in os.getloadavg()],
        locust_cpu_share=round(locust_cpu / wall, 2),
        server_cpu_share=round((cpu_seconds(profile.server_pids()) - server_cpu_before) / wall, 2),
        accepted_all=sum(1 for r in requests if r[0] == "submit" and r[3] == 201),
        last_accepted_at=last_accepted(requests),
    )
    return result


def consensus_lag(profile: Profile, task_id: str, last: float | None, timeout: float) -> dict[str, Any]:
    """Seconds from the last accepted submission until the consensus records include every stored one."""
    stored, included = profile.counts(task_id)
    backlog = stored - included
    deadline = time.monotonic() + timeout
    while included < stored:
        if time.monotonic() > deadline:
            return {"caught_up": False, "stored": stored, "included": included, "backlog_at_end": backlog,
                    "timeout_seconds": timeout}
        time.sleep(0.2)
        stored, included = profile.counts(task_id)
    caught = time.time()
    return {
        "caught_up": True,
        "stored": stored,
        "included": included,
        "backlog_at_end": backlog,
        "seconds_after_last_submission": round(max(0.0, caught - last), 2) if last else 0.0,
    }


def run_profile(profile: Profile, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    record: dict[str, Any] = {"profile": profile.description, "started": started}
    profile.start()
    sampler = RssSampler(profile).start()
    try:
        master = Api.sign_up(profile.url, "taskmaster@load.crowdseg", "Taskmaster", PASSWORD)  # the first: admin
        task_id = create_task(master, args.replicates)
        print(f"[{profile.name}] task {task_id}: uploading {args.images} images", flush=True)
        record["upload"] = upload_images(master, task_id, args.images, args.per_zip, args.size, args.upload_concurrency)
        print(f"[{profile.name}] upload: {record['upload']}", flush=True)
        tokens, signup_seconds = sign_up_annotators(profile.url, args.annotators)
        record["annotators"] = {"accounts": len(tokens), "signup_and_login_seconds": signup_seconds}
        tokens_file = tmp / f"{profile.name}-tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        record["settle_seconds"] = wait_quiet(profile)
        print(f"[{profile.name}] {len(tokens)} annotators in {signup_seconds} s; settled", flush=True)
        record["phases"] = {}
        phases = [
            ("saturation", args.saturation_users, 0.0, args.saturation_seconds),
            ("paced", args.annotators, args.annotators / args.offered_rate, args.paced_seconds),
        ]
        for name, users, pace, seconds in phases:
            if seconds <= 0:
                continue
            sampler.stage = name
            result = run_locust(profile, tmp, task_id, tokens_file, name, users, pace, seconds)
            last = result.pop("last_accepted_at")
            result["consensus"] = consensus_lag(profile, task_id, last, args.consensus_timeout)
            sampler.sample()
            result["peak_rss_mib"] = sampler.mib(name)
            record["phases"][name] = result
            print(f"[{profile.name}] {name}: {json.dumps(result)}", flush=True)
            sampler.stage = f"after {name}"
            wait_quiet(profile, timeout=120)
        record["peak_rss_mib"] = sampler.mib()
    except BaseException:
        print(profile.logs(), file=sys.stderr)
        raise
    finally:
        sampler.stop()
        profile.stop()
    record["machine"] = machine()
    return record


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# --- the table -------------------------------------------------------------------------------------------


def _ms(stats: dict[str, Any]) -> str:
    if not stats.get("n"):
        return "–"
    return f"{stats['median']:.0f} / {stats['p95']:.0f} / {stats['p99']:.0f}"


def table(report: dict[str, Any]) -> str:
    lines = [
        "| profile | phase | images | users | offered/s | accepted/s | achieved | 409 | errors "
        "| `next` ms median / p95 / p99 | submit ms median / p95 / p99 | consensus caught up (s) "
        "| end to end/s | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for name, profile in report.get("profiles", {}).items():
        for phase, r in profile.get("phases", {}).items():
            lag = r["consensus"]
            caught = lag["seconds_after_last_submission"] if lag["caught_up"] else f"no ({lag['backlog_at_end']} left)"
            # submissions of the phase over the time until their consensus was complete
            through = f"{r['accepted'] / (r['window_seconds'] + lag['seconds_after_last_submission']):.0f}" if lag[
                "caught_up"
            ] else "–"
            offered = r.get("offered_per_s", "–")
            achieved = f"{100 * r['achieved_share']:.0f} %" if "achieved_share" in r else "–"
            lines.append(
                f"| {name} | {phase} | {profile['settings']['images']} | {r['users']} | {offered} "
                f"| {r['accepted_per_s']} | {achieved} | {r['refused_409']} | {r['errors']} "
                f"| {_ms(r['next_ms'])} | {_ms(r['submit_ms'])} | {caught} | {through} "
                f"| {r['peak_rss_mib']['server']:.0f} |"
            )
    for row in TODAY:
        lines.append(
            f"| embedded, issue 8 (before) | no pause | {row['images']} | {row['users']} | – "
            f"| {row['accepted_per_s']} | – | – | – | {row['next_median']} / – / {row['next_p99']} "
            f"| {row['submit_median']} / – / – | – | – | – |"
        )
    return "\n".join(lines)


def fill_readme(text: str) -> None:
    """Replace what stands between the two markers in bench/README.md (and nothing else)."""
    readme = README.read_text()
    start, end = readme.index(MARKERS[0]) + len(MARKERS[0]), readme.index(MARKERS[1])
    README.write_text(readme[:start] + "\n" + text + "\n" + readme[end:])
    print(f"updated {README}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--profile",
        choices=("embedded", "embedded-one-process", "cluster", "both", "all"),
        default="all",
        help="both: embedded and cluster; all: also embedded-one-process (consensus in the main process)",
    )
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--per-zip", type=int, default=500, help="images per uploaded ZIP")
    parser.add_argument("--upload-concurrency", type=int, default=2, help="ZIPs uploaded at once")
    parser.add_argument("--size", type=int, default=128, help="image width and height in pixels")
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--annotators", type=int, default=1000, help="accounts, and the paced phase's users")
    parser.add_argument("--saturation-users", type=int, default=64)
    parser.add_argument("--saturation-seconds", type=float, default=60)
    parser.add_argument("--paced-seconds", type=float, default=90)
    parser.add_argument("--offered-rate", type=float, default=200, help="submissions/s the paced users offer")
    parser.add_argument("--consensus-workers", type=int, default=1, help="cluster profile's consensus processes")
    parser.add_argument(
        "--cluster-store",
        choices=("ferretdb-sqlite", "ferretdb-postgresql"),
        default="ferretdb-sqlite",
        help="the cluster profile's document store: FerretDB v1 on SQLite (the test servers') or on PostgreSQL"
        " (apt-get install postgresql; its lookups by _id do not scan the collection)",
    )
    parser.add_argument("--consensus-timeout", type=float, default=900, help="give up waiting for consensus after")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --out and exit")
    parser.add_argument("--readme", action="store_true", help="with --table: put it into bench/README.md")
    args = parser.parse_args()
    if args.table:
        text = table(json.loads(args.out.read_text()))
        print(text)
        if args.readme:
            fill_readme(text)
        return 0
    if not LOCUST.exists():
        print(f"{LOCUST} is missing: .venv/bin/pip install -e '.[dev]'", file=sys.stderr)
        return 2
    os.environ["CROWDSEG_LOG_LEVEL"] = "WARNING"  # the embedded server inherits it; the cluster sets its own
    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.setdefault("benchmark", "load")
    report.setdefault("profiles", {})
    settings = {
        k: getattr(args, k)
        for k in ("images", "per_zip", "upload_concurrency", "size", "replicates", "annotators", "saturation_users",
                  "saturation_seconds", "paced_seconds", "offered_rate", "consensus_workers", "cluster_store")
    }
    groups = {"both": ["embedded", "cluster"], "all": ["embedded", "embedded-one-process", "cluster"]}
    for name in groups.get(args.profile, [args.profile]):
        tmp = Path(tempfile.mkdtemp(prefix=f"crowdseg-load-{name}-"))
        print(f"[{name}] working in {tmp}", flush=True)
        profile: Profile
        if name == "cluster":
            profile = Cluster(tmp, args.consensus_workers, args.cluster_store)
        else:
            profile = Embedded(tmp, consensus_processes=0 if name == "embedded-one-process" else 1)
        record = run_profile(profile, tmp, args)
        record["settings"] = settings
        report["profiles"][profile.name] = record
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}\n")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
