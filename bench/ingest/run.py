"""Ingest benchmark: N small PNG images into one task through the API, "before" and "after" side by side.

For each variant it starts the embedded profile (``crowdseg up --data DIR --port N``, a child process
with its own Kafka-protocol broker), signs up a task master, creates a task and uploads ZIPs of 500
random 128×128 RGB PNGs (deterministic seed; built once and cached) one after the other through
``POST /api/v1/tasks/{id}/images``. It reports

- ``images_per_s`` and ``upload_seconds``: from the first request to the last response;
- ``complete_seconds``: until every accepted image is complete — its document stored with original,
  display rendition and thumbnail on disk — and its ``image.ingested`` event published (read from the
  data directory's SQLite file and object directory, which the server writes);
- ``peak_rss_mib``: the server process's peak resident set (``VmHWM``), and the broker's beside it;
- per-ZIP request latency: median, p95, max.

Variants: ``before`` runs the code of a git commit (default fa9e890, the design before this work)
extracted with ``git archive`` into a temporary directory and imported from there; ``after`` runs this
working tree. Both use this repository's virtual environment.

    .venv/bin/python bench/ingest/run.py [--images 100000] [--variants before,after]
    .venv/bin/python bench/ingest/run.py --variants before:20000,after:20000,after:100000
    .venv/bin/python bench/ingest/run.py --table      # the Markdown table of results.json

Writes bench/ingest/results.json. Numbers depend on the machine; nothing here is a test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.embedded import Api, free_port  # noqa: E402

RESULTS = Path(__file__).with_name("results.json")
CACHE = Path(os.environ.get("CROWDSEG_BENCH_CACHE", Path(tempfile.gettempdir()) / "crowdseg-bench-ingest"))
PYTHON = Path(sys.executable)


# --- the images --------------------------------------------------------------------------------------


def _one_png(rng: np.random.Generator, size: int) -> bytes:
    """A random picture: a smooth random colour field with per-pixel noise (≈ 40 KB as PNG at 128²)."""
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB")
    field = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
    noisy = np.clip(field + rng.integers(-12, 13, field.shape, dtype=np.int16), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _build_zip(args: tuple[Path, int, int, int, int]) -> Path:
    path, index, count, size, seed = args
    rng = np.random.default_rng([seed, index])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"batch{index:04d}/img{index * count + i:07d}.png", _one_png(rng, size))
    partial = path.with_suffix(".partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(path)
    return path


def build_zips(images: int, per_zip: int, size: int, seed: int) -> list[Path]:
    """The ZIPs, built in parallel before any server runs and kept in CACHE for later runs."""
    folder = CACHE / f"seed{seed}-size{size}-per{per_zip}"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for index in range((images + per_zip - 1) // per_zip):
        count = min(per_zip, images - index * per_zip)
        path = folder / f"{index:04d}-{count}.zip"
        if not path.exists():
            jobs.append((path, index, count, size, seed))
    if jobs:
        print(f"building {len(jobs)} ZIPs in {folder} ...", flush=True)
        with ProcessPoolExecutor(os.cpu_count() or 2) as pool:
            list(pool.map(_build_zip, jobs, chunksize=4))
    count = (images + per_zip - 1) // per_zip
    return [folder / f"{i:04d}-{min(per_zip, images - i * per_zip)}.zip" for i in range(count)]


# --- the server --------------------------------------------------------------------------------------


def source_of(ref: str, workdir: Path) -> Path:
    """The package of commit ``ref`` as an importable ``crowdseg`` (libs/ with services/ inside)."""
    tree = workdir / "tree"
    tree.mkdir(parents=True)
    command = ["git", "-C", str(ROOT), "archive", ref, "libs", "services"]
    archive = subprocess.run(command, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    package = workdir / "pkg" / "crowdseg"
    shutil.copytree(tree / "libs", package)
    shutil.copytree(tree / "services", package / "services")
    return package.parent


class Server:
    def __init__(self, data_dir: Path, pythonpath: Path | None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / "server.log"
        env = {**os.environ}
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)  # found before the editable install's finder
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(PYTHON), "-m", "crowdseg.cli", "up", "--data", str(data_dir), "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir.parent,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"crowdseg up exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("crowdseg up did not become ready")

    def children(self) -> list[int]:
        pid = self.process.pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class CompletionWatcher:
    """Polls the data directory: images stored, images still pending (renditions or events), and when
    every one of ``expected`` is complete."""

    def __init__(self, data_dir: Path, task_id: str, expected: int) -> None:
        self.db = data_dir / "crowdseg.sqlite3"
        self.task_id = task_id
        self.expected = expected
        self.done_at: float | None = None
        self.stored = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CompletionWatcher:
        self._thread.start()
        return self

    def counts(self) -> tuple[int, int]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as db:
            stored, pending = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(pending), 0) FROM images WHERE task_id = ?", (self.task_id,)
            ).fetchone()
        return int(stored), int(pending)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.stored, pending = self.counts()
            except sqlite3.Error:
                continue
            if self.stored >= self.expected and pending == 0:
                self.done_at = time.monotonic()
                return

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._stop.set()


def check_objects(data_dir: Path, task_id: str) -> dict[str, int]:
    """Every stored image's three objects on disk (after the run, with the server stopped)."""
    with sqlite3.connect(f"file:{data_dir / 'crowdseg.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT json_extract(doc, '$.original_key'), json_extract(doc, '$.display_key'), "
            "json_extract(doc, '$.thumbnail_key') FROM images WHERE task_id = ?",
            (task_id,),
        ).fetchall()
    objects = data_dir / "objects"
    missing = sum(1 for row in rows for key in set(row) if not (objects / key).is_file())
    size = sum(p.stat().st_size for p in objects.rglob("*") if p.is_file())
    return {"stored_images": len(rows), "missing_objects": missing, "object_bytes": size}


# --- one variant --------------------------------------------------------------------------------------


def run_variant(name: str, zips: list[Path], pythonpath: Path | None, expected: int, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    print(f"[{name}] starting crowdseg up ...", flush=True)
    server = Server(data_dir, pythonpath)
    try:
        master = Api.sign_up(server.url, f"master-{name}@bench.example", "Bench Master")
        task = master.http.post("/tasks", json={"title": f"ingest {name}", "tool": "contour"}).json()
        watcher = CompletionWatcher(data_dir, task["id"], expected)
        latencies: list[float] = []
        accepted = rejected = 0
        errors: list[str] = []
        http = httpx.Client(base_url=f"{server.url}/api/v1", headers=master.http.headers, timeout=600)
        started = time.monotonic()
        watcher.start()
        for i, path in enumerate(zips):
            data = path.read_bytes()
            sent = time.monotonic()
            response = http.post(f"/tasks/{task['id']}/images", files=[("files", (path.name, data, "application/zip"))])
            latencies.append(time.monotonic() - sent)
            if response.status_code != 202:
                errors.append(f"{path.name}: {response.status_code} {response.text[:200]}")
                continue
            body = response.json()
            accepted += len(body["accepted"])
            rejected += len(body["rejected"])
            if (i + 1) % 10 == 0 or i + 1 == len(zips):
                elapsed = time.monotonic() - started
                rss = _status_kib(server.process.pid, "VmRSS") // 1024
                print(
                    f"[{name}] {accepted} accepted in {elapsed:.1f} s ({accepted / elapsed:.0f}/s), "
                    f"last ZIP {latencies[-1] * 1000:.0f} ms, rss {rss} MiB",
                    flush=True,
                )
        uploaded = time.monotonic() - started
        watcher.wait(timeout=1800)
        complete = (watcher.done_at - started) if watcher.done_at is not None else None
        peak_rss = _status_kib(server.process.pid, "VmHWM") // 1024
        broker_rss = sum(_status_kib(pid, "VmHWM") for pid in server.children()) // 1024
        http.close()
    finally:
        server.stop()
    stored = check_objects(data_dir, task["id"])
    ordered = sorted(latencies)
    result = {
        "variant": name,
        "images": expected,
        "zips": len(zips),
        "accepted": accepted,
        "rejected": rejected,
        "errors": errors[:5],
        "upload_seconds": round(uploaded, 2),
        "images_per_s": round(accepted / uploaded, 1),
        "complete_seconds": None if complete is None else round(complete, 2),
        "peak_rss_mib": peak_rss,
        "broker_peak_rss_mib": broker_rss,
        "zip_latency_ms": {
            "median": round(statistics.median(ordered) * 1000),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000),
            "max": round(ordered[-1] * 1000),
        },
        **stored,
    }
    print(json.dumps(result), flush=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def table(results: dict[str, Any]) -> str:
    lines = [
        "| variant | images | images/s | upload (s) | all complete (s) | ZIP latency median / p95 / max (ms) "
        "| server peak RSS (MiB) | objects missing |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for run in results["runs"]:
        lat = run["zip_latency_ms"]
        complete = "–" if run["complete_seconds"] is None else f"{run['complete_seconds']:.1f}"
        lines.append(
            f"| {run['variant']} | {run['accepted']} | {run['images_per_s']:.0f} | {run['upload_seconds']:.1f} | "
            f"{complete} | {lat['median']} / {lat['p95']} / {lat['max']} | {run['peak_rss_mib']} "
            f"| {run['missing_objects']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--per-zip", type=int, default=500)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--variants",
        default="before,after",
        help="comma-separated runs, each `before` or `after`, optionally with its own image count: before:20000",
    )
    parser.add_argument("--before-ref", default="fa9e890")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the table of the results file and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.output.read_text())))
        return 0
    plan = []
    for spec in args.variants.split(","):
        variant, _, count = spec.partition(":")
        plan.append((variant, int(count) if count else args.images))
    zips = build_zips(max(count for _, count in plan), args.per_zip, args.size, args.seed)
    runs = []
    with tempfile.TemporaryDirectory(prefix="crowdseg-ingest-") as tmp:
        workdir = Path(tmp)
        before_src: Path | None = None
        for number, (variant, count) in enumerate(plan):
            if variant == "before" and before_src is None:
                before_src = source_of(args.before_ref, workdir / "before-src")
            pythonpath = before_src if variant == "before" else None
            subset = zips[: (count + args.per_zip - 1) // args.per_zip]
            runs.append(run_variant(variant, subset, pythonpath, count, workdir / f"run{number}"))
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "parameters": {
            "images": args.images,
            "per_zip": args.per_zip,
            "size": args.size,
            "seed": args.seed,
            "before_ref": args.before_ref,
        },
        "runs": runs,
    }
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
