"""The cluster profile for tests and benchmarks: every service its own ``crowdseg serve`` process.

    stack = ClusterStack(tmp_dir, kafka, mongo, minio, consensus_workers=2).start()
    stack.url                       # the gateway: the public API and the web UI
    stack.kill("consensus-1")       # kill -9 one process
    stack.start_service("consensus-1")
    stack.stop()

How a process starts is the stack's ``Launcher``: by default the venv's ``crowdseg`` console script;
``tests/cluster/image.py`` runs the same commands inside the container image instead.

Each stack has its own MongoDB database and MinIO bucket, so stacks on the same servers do not
see each other's documents. Topics and consumer groups are the platform's own (shared by stacks
on one Kafka, as in a real deployment). Every process is configured only by ``CROWDSEG_*``
variables, logs to ``<tmp_dir>/<name>.log`` and dies with the process that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

CROWDSEG = Path(sys.executable).parent / "crowdseg"
ROOT = Path(__file__).resolve().parent.parent.parent
BACKENDS = ("ingest", "assign", "annotate", "export")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Launcher:
    """Starts ``crowdseg <args>`` for a stack: here the venv's console script, run directly."""

    # Whether the process is a wrapper whose children must be signalled too (as a process group).
    signals_group = False

    def command(self, name: str, args: list[str], env: dict[str, str]) -> list[str]:
        return [str(CROWDSEG), *args]


class ServiceProcess:
    """One ``crowdseg serve <service>`` process on its own loopback port."""

    def __init__(
        self, name: str, service: str, env: dict[str, str], log_path: Path, launcher: Launcher | None = None
    ) -> None:
        self.name = name
        self.service = service
        self.env = env
        self.log_path = log_path
        self.launcher = launcher or Launcher()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def arguments(self) -> list[str]:
        return ["serve", self.service, "--port", str(self.port)]

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.name}: crowdseg {' '.join(self.arguments)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.launcher.command(self.name, self.arguments, self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
                preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
                start_new_session=self.launcher.signals_group,
            )
        return self

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        if self.launcher.signals_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        if not self.running:
            assert self.proc is not None
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} was not ready in {timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.3)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus metric's samples matching the labels (0 if absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{", 1)[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown hooks."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            proc.wait(10)
        if self.launcher.signals_group:  # what the wrapper left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.log_path}:\n" + "\n".join(text.splitlines()[-lines:])


class ClusterStack:
    """Gateway, ingest, assign, annotate, export and N consensus workers, each its own process."""

    def __init__(
        self,
        tmp_dir: Path,
        kafka: Any,
        mongo: Any,
        minio: Any,
        *,
        consensus_workers: int = 2,
        partitions: int = 8,
        extra_env: dict[str, str] | None = None,
        worker_log_level: str = "INFO",
        launcher: Launcher | None = None,
    ) -> None:
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.kafka = kafka
        self.launcher = launcher or Launcher()
        suffix = secrets.token_hex(4)
        self.database = f"crowdseg_{suffix}"
        self.bucket = f"crowdseg-{suffix}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CROWDSEG_")},
            "CROWDSEG_PROFILE": "cluster",
            "CROWDSEG_SECRET_KEY": secrets.token_urlsafe(48),
            "CROWDSEG_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "CROWDSEG_KAFKA_PARTITIONS": str(partitions),
            "CROWDSEG_MONGODB_URL": mongo.url,
            "CROWDSEG_MONGODB_DATABASE": self.database,
            "CROWDSEG_S3_ENDPOINT": minio.endpoint,
            "CROWDSEG_S3_ACCESS_KEY": minio.access_key,
            "CROWDSEG_S3_SECRET_KEY": minio.secret_key,
            "CROWDSEG_S3_BUCKET": self.bucket,
            "CROWDSEG_DATA_DIR": str(self.tmp_dir / "data"),
            "CROWDSEG_OUTBOX_POLL_SECONDS": "0.5",
            "CROWDSEG_CONSUMER_MAX_ATTEMPTS": "3",
            "CROWDSEG_CONSUMER_BACKOFF_SECONDS": "0.2",
            "CROWDSEG_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self.services: dict[str, ServiceProcess] = {}
        for service in BACKENDS:
            self._add(service, service)
        # Workers log every event they take and finish ("Received"/"Processed"): tests see what is in flight.
        self.worker_env = {"CROWDSEG_LOG_LEVEL": worker_log_level, "CROWDSEG_LOG_EVENTS": "true"}
        for index in range(consensus_workers):
            self._add(f"consensus-{index}", "consensus", **self.worker_env)
        urls = {service: self.services[service].url for service in BACKENDS}
        urls["consensus"] = self.services["consensus-0"].url  # its HTTP routes; every worker consumes
        self._add("gateway", "gateway", CROWDSEG_SERVICE_URLS=json.dumps(urls))

    def _add(self, name: str, service: str, **env: str) -> ServiceProcess:
        process = ServiceProcess(name, service, {**self.env, **env}, self.tmp_dir / f"{name}.log", self.launcher)
        self.services[name] = process
        return process

    @property
    def url(self) -> str:
        return self.services["gateway"].url

    @property
    def workers(self) -> list[ServiceProcess]:
        return [p for name, p in self.services.items() if name.startswith("consensus-")]

    def add_replica(self, service: str) -> ServiceProcess:
        """One more process of ``service`` (not behind the gateway: callers reach it at its own url)."""
        count = sum(1 for name in self.services if name.startswith(f"{service}-"))
        process = self._add(f"{service}-{count + 2}", service)
        process.start().wait_ready()
        return process

    def add_worker(self) -> ServiceProcess:
        process = self._add(f"consensus-{len(self.workers)}", "consensus", **self.worker_env)
        process.start().wait_ready()
        return process

    def start(self, timeout: float = 180.0) -> ClusterStack:
        try:
            # The first process creates the topics; the others find them.
            first = self.services["ingest"].start()
            first.wait_ready(timeout)
            for process in self.services.values():
                if process is not first:
                    process.start()
            with ThreadPoolExecutor(len(self.services)) as pool:
                list(pool.map(lambda p: p.wait_ready(timeout), self.services.values()))
        except BaseException:
            self.stop()
            raise
        return self

    def start_service(self, name: str, timeout: float = 120.0) -> ServiceProcess:
        process = self.services[name]
        process.start().wait_ready(timeout)
        return process

    def kill(self, name: str) -> None:
        self.services[name].kill()

    def stop(self) -> None:
        with ThreadPoolExecutor(max(1, len(self.services))) as pool:
            list(pool.map(lambda p: p.stop(), self.services.values()))

    def logs(self) -> str:
        return "\n".join(p.log_tail(15) for p in self.services.values())

    def __enter__(self) -> ClusterStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
