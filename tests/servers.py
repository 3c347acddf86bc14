"""Real test servers for the cluster tests: Apache Kafka (KRaft), FerretDB (MongoDB wire protocol)
and MinIO, started as child processes from the cache that ``make servers``
(``scripts/provision-test-servers.sh``) fills.

Plain functions, usable from anything::

    kafka = start_kafka(tmp_dir)      # kafka.bootstrap == "127.0.0.1:PORT"
    mongo = start_ferretdb(tmp_dir)   # mongo.url == "mongodb://127.0.0.1:PORT/"  (SQLite backend)
    FerretDBPostgresServer(tmp_dir, load_manifest()).start()  # on PostgreSQL, for bench/store only
    minio = start_minio(tmp_dir)      # minio.endpoint, .url, .access_key, .secret_key
    kafka.restart()                   # same port, same data; kafka.kill() for a hard crash
    kafka.stop()

and session-scoped pytest fixtures ``kafka_server``, ``mongo_server``, ``minio_server`` that the
conftest imports. Every server picks a free loopback port, listens on loopback only, logs to
``<tmp_dir>/<name>.log`` and is only returned once a real client gets an answer from it.
A missing cache is an error that says ``run make servers``; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

__all__ = [
    "FerretDBPostgresServer",
    "FerretDBServer",
    "KafkaServer",
    "MinioServer",
    "PostgresServer",
    "Server",
    "ServerNotProvisionedError",
    "ServerStartError",
    "cache_dir",
    "kafka_server",
    "load_manifest",
    "minio_server",
    "mongo_server",
    "postgres_bindir",
    "postgres_version",
    "start_ferretdb",
    "start_kafka",
    "start_minio",
]

HINT = "run make servers"
LOOPBACK = "127.0.0.1"


class ServerNotProvisionedError(RuntimeError):
    """The server binaries are not in the cache."""


class ServerStartError(RuntimeError):
    """A server process exited or did not become ready in time."""


def cache_dir() -> Path:
    return Path(os.environ.get("CROWDSEG_CACHE") or Path.home() / ".cache" / "crowdseg")


def load_manifest() -> dict[str, Any]:
    """The manifest the provisioning script writes, with every path in it checked."""
    path = cache_dir() / "servers.json"
    if not path.is_file():
        raise ServerNotProvisionedError(f"test servers are not provisioned ({path} is missing): {HINT}")
    manifest: dict[str, Any] = json.loads(path.read_text())
    needed = [
        Path(manifest["java"]),
        Path(manifest["kafka"]["home"]) / "libs",
        Path(manifest["ferretdb"]["bin"]),
        Path(manifest["minio"]["bin"]),
    ]
    for p in needed:
        if not p.exists():
            raise ServerNotProvisionedError(f"test server file {p} is missing: {HINT}")
    return manifest


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # The server gets SIGKILL if the process that started it dies (pytest killed with -9),
    # so no broker is ever left orphaned on the machine.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_live: set[Server] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.kill()


class Server:
    """One server process: start, readiness probe, stop, kill, restart on the same port and data."""

    name: ClassVar[str] = "server"
    startup_timeout: ClassVar[float] = 60.0
    stop_timeout: ClassVar[float] = 20.0

    def __init__(self, tmp_dir: Path | str, manifest: dict[str, Any]) -> None:
        self.tmp_dir = Path(tmp_dir)
        self.manifest = manifest
        self.data_dir = self.tmp_dir / f"{self.name}-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.tmp_dir / f"{self.name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0  # how long the last start() took, until ready
        self.starts = 0
        self.run_as: str | None = None  # a user to run the process as (PostgreSQL refuses to run as root)

    # -- what subclasses provide
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """Runs before every start (for example, formatting storage the first time)."""

    def probe(self) -> bool:
        """True once a real client gets an answer."""
        raise NotImplementedError

    def ports(self) -> list[int]:
        return [self.port]

    # -- lifecycle
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Server:
        if self.running:
            return self
        t0 = time.monotonic()
        self.prepare()
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n=== crowdseg tests: start #{self.starts} of {self.name}: {self.command()}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.data_dir,
                start_new_session=True,  # a ^C in pytest does not reach the server
                preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
                user=self.run_as,
            )
        with _live_lock:
            _live.add(self)
        deadline = t0 + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._forget()
                raise ServerStartError(f"{self.name} exited with code {code} while starting\n{self.log_tail()}")
            try:
                if self.probe():
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    f"{self.name} was not ready after {self.startup_timeout:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Graceful: SIGTERM, wait, then SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._kill_group(proc)
        self._forget()
        self._wait_ports_free()

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown hooks."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self._kill_group(proc)
        self._forget()
        self._wait_ports_free()

    def restart(self, *, hard: bool = False) -> Server:
        """Stop (or kill, if ``hard``) and start again on the same ports with the same data."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- last lines of {self.log_path}:\n" + "\n".join(text[-lines:])

    def _kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)

    def _wait_ports_free(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while any(port_open(p, 0.2) for p in self.ports()) and time.monotonic() < deadline:
            time.sleep(0.1)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} port={self.port} pid={self.pid} log={self.log_path}>"


# ------------------------------------------------------------------------------------------ Kafka
def _kafka_cluster_id() -> str:
    # Kafka's Uuid.toString: URL-safe base64 of 16 random bytes, no padding, never leading '-'.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _run_coroutine(make: Callable[[], Any]) -> Any:
    """Run a coroutine to completion from sync code, even if the caller is inside an event loop."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(make()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(30)
    if error:
        raise error[0]
    if not result:
        raise TimeoutError("probe did not finish")
    return result[0]


class KafkaServer(Server):
    """Apache Kafka 4 in KRaft combined mode (one broker + controller), loopback listeners only."""

    name = "kafka"
    startup_timeout = 120.0
    stop_timeout = 30.0
    heap = "512m"

    def __init__(self, tmp_dir: Path | str, manifest: dict[str, Any]) -> None:
        super().__init__(tmp_dir, manifest)
        self.controller_port = free_port()
        self.home = Path(manifest["kafka"]["home"])
        self.version: str = manifest["kafka"]["version"]
        self.config_path = self.tmp_dir / "kafka-server.properties"
        self.cluster_id = _kafka_cluster_id()

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def ports(self) -> list[int]:
        return [self.port, self.controller_port]

    def properties(self) -> dict[str, str]:
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": "true",
            "num.partitions": "4",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # a small machine: few threads
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
        }

    def _java(self, main: str, *args: str, heap: str) -> list[str]:
        return [
            self.manifest["java"],
            f"-Xmx{heap}",
            "-Xms64m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'config' / 'log4j2.yaml'}",
            "-cp",
            str(self.home / "libs" / "*"),
            main,
            *args,
        ]

    def prepare(self) -> None:
        props = "".join(f"{k}={v}\n" for k, v in self.properties().items())
        self.config_path.write_text(props)
        if (self.data_dir / "meta.properties").exists():
            return
        fmt = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(self.config_path),
            heap="256m",
        )
        with self.log_path.open("ab") as log:
            log.write(f"=== crowdseg tests: {fmt}\n".encode())
            log.flush()
            done = subprocess.run(fmt, stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False)
        if done.returncode != 0:
            raise ServerStartError(f"kafka storage format failed ({done.returncode})\n{self.log_tail()}")

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_path), heap=self.heap)

    def probe(self) -> bool:
        if not port_open(self.port):
            return False
        from aiokafka.admin import AIOKafkaAdminClient

        async def ask() -> bool:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            await admin.start()
            try:
                await admin.list_topics()
                cluster = await admin.describe_cluster()
                return bool(cluster.get("brokers"))
            finally:
                await admin.close()

        return bool(_run_coroutine(ask))


# --------------------------------------------------------------------------------------- FerretDB
class FerretDBServer(Server):
    """FerretDB v1 with its SQLite backend: a real MongoDB wire-protocol server."""

    name = "ferretdb"
    atomic_updates: ClassVar[bool] = False
    """Whether a filtered single-document update is atomic on this server (see MongoStore)."""

    @property
    def url(self) -> str:
        return f"mongodb://{LOOPBACK}:{self.port}/"

    def command(self) -> list[str]:
        return [
            self.manifest["ferretdb"]["bin"],
            "--handler=sqlite",
            f"--sqlite-url=file:{self.data_dir}/",
            f"--listen-addr={LOOPBACK}:{self.port}",
            f"--state-dir={self.data_dir}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=WARN",
        ]

    def probe(self) -> bool:
        if not port_open(self.port):
            return False
        from pymongo import MongoClient

        client: MongoClient[dict[str, Any]] = MongoClient(
            self.url, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000
        )
        try:
            return bool(client.admin.command("ping").get("ok"))
        finally:
            client.close()


def postgres_bindir(manifest: dict[str, Any]) -> Path:
    """PostgreSQL's programs: the manifest's ``postgresql.bin``, else the newest Debian install.

    Only bench/store needs PostgreSQL (FerretDB's PostgreSQL backend, measured there); the tests
    run on FerretDB's SQLite backend, so ``make servers`` does not install it.
    """
    named = manifest.get("postgresql", {}).get("bin")
    found = [Path(named)] if named else sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    for bindir in reversed(found):
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            return bindir
    raise ServerNotProvisionedError("PostgreSQL is not installed: apt-get install postgresql")


def postgres_version(manifest: dict[str, Any]) -> str:
    postgres = postgres_bindir(manifest) / "postgres"
    answer = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, check=True).stdout
    return answer.split()[2]  # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"


class PostgresServer(Server):
    """PostgreSQL (Debian's packages), TCP on a loopback port only, no Unix socket, trust auth.

    PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user, with its data in
    a directory of its own under the system temp dir (pytest's temp dirs are private to root).
    """

    name = "postgres"
    superuser = "postgres"
    database = "ferretdb"

    def __init__(self, tmp_dir: Path | str, manifest: dict[str, Any]) -> None:
        super().__init__(tmp_dir, manifest)
        self.bindir = postgres_bindir(manifest)
        if os.geteuid() == 0:
            self.run_as = self.superuser
            self.data_dir.rmdir()
            self.data_dir = Path(tempfile.mkdtemp(prefix="crowdseg-postgres-"))
            shutil.chown(self.data_dir, self.run_as, self.run_as)

    def url(self, database: str | None = None) -> str:
        return f"postgres://{self.superuser}@{LOOPBACK}:{self.port}/{database or self.database}"

    def prepare(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser]
        initdb += ["--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]
        with self.log_path.open("ab") as log:
            log.write(f"=== crowdseg tests: {initdb}\n".encode())
            log.flush()
            done = subprocess.run(
                initdb, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir, user=self.run_as, timeout=120
            )
        if done.returncode != 0:
            raise ServerStartError(f"postgres initdb failed ({done.returncode})\n{self.log_tail()}")

    def command(self) -> list[str]:
        settings = {"listen_addresses": LOOPBACK, "unix_socket_directories": "", "max_connections": "200"}
        flags = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        return [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), *flags]

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [str(self.bindir / "psql"), "-h", LOOPBACK, "-p", str(self.port), "-U", self.superuser],
            input=sql,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PGDATABASE": database},
            check=False,
        )
        if done.returncode != 0:
            raise ServerStartError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def probe(self) -> bool:
        if not port_open(self.port):
            return False
        exists = self.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{self.database}'")
        if exists.split()[2] == "0":  # the first start: the database FerretDB keeps its schemas in
            self.psql(f"CREATE DATABASE {self.database}")
        return True

    def destroy(self) -> None:
        """Stop and delete the data directory (it lives outside the test's temp dir)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class FerretDBPostgresServer(FerretDBServer):
    """FerretDB v1 with its PostgreSQL backend, on a PostgreSQL server of its own.

    ``stop``/``kill``/``restart`` act on FerretDB only (the document store goes away, the data stays
    in PostgreSQL); ``destroy`` stops both and deletes PostgreSQL's data.
    """

    name = "ferretdb-pg"
    atomic_updates = False  # measured by bench/store/race.py: a filtered update is a SELECT, then an UPDATE by _id

    def __init__(self, tmp_dir: Path | str, manifest: dict[str, Any]) -> None:
        super().__init__(tmp_dir, manifest)
        self.postgres = PostgresServer(tmp_dir, manifest)

    def command(self) -> list[str]:
        return [
            self.manifest["ferretdb"]["bin"],
            "--handler=postgresql",
            f"--postgresql-url={self.postgres.url()}",
            f"--listen-addr={LOOPBACK}:{self.port}",
            f"--state-dir={self.data_dir}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=WARN",
        ]

    def start(self) -> Server:
        self.postgres.start()
        return super().start()

    def destroy(self) -> None:
        self.stop()
        self.postgres.destroy()


# ------------------------------------------------------------------------------------------ MinIO
class MinioServer(Server):
    """MinIO, single drive, S3 API on a loopback port (console on another, also loopback)."""

    name = "minio"
    access_key = "crowdseg"
    secret_key = "crowdseg-test-secret"

    def __init__(self, tmp_dir: Path | str, manifest: dict[str, Any]) -> None:
        super().__init__(tmp_dir, manifest)
        self.console_port = free_port()

    @property
    def endpoint(self) -> str:
        """host:port, as the ``minio`` client wants it (with ``secure=False``)."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def ports(self) -> list[int]:
        return [self.port, self.console_port]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MINIO_ROOT_USER=self.access_key,
            MINIO_ROOT_PASSWORD=self.secret_key,
            MINIO_BROWSER="off",
            MINIO_UPDATE="off",
            MINIO_CI_CD="1",
        )
        return env

    def command(self) -> list[str]:
        return [
            self.manifest["minio"]["bin"],
            "server",
            str(self.data_dir),
            "--address",
            self.endpoint,
            "--console-address",
            f"{LOOPBACK}:{self.console_port}",
            "--quiet",
        ]

    def probe(self) -> bool:
        for path in ("/minio/health/live", "/minio/health/ready"):
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    if response.status != 200:
                        return False
            except (urllib.error.URLError, OSError):
                return False
        return True


# ------------------------------------------------------------------------------- start functions
def _start(cls: type[Server], tmp_dir: Path | str, attempts: int = 3) -> Any:
    manifest = load_manifest()
    error: ServerStartError | None = None
    for _ in range(attempts):  # a free port can be taken between choosing and binding it
        server = cls(tmp_dir, manifest)
        try:
            return server.start()
        except ServerStartError as exc:
            error = exc
            if "in use" not in server.log_tail().lower():
                raise
    assert error is not None
    raise error


def start_kafka(tmp_dir: Path | str) -> KafkaServer:
    server: KafkaServer = _start(KafkaServer, tmp_dir)
    return server


def start_ferretdb(tmp_dir: Path | str) -> FerretDBServer:
    server: FerretDBServer = _start(FerretDBServer, tmp_dir)
    return server


def start_minio(tmp_dir: Path | str) -> MinioServer:
    server: MinioServer = _start(MinioServer, tmp_dir)
    return server


# -------------------------------------------------------------------------------- pytest fixtures
def _serve(start: Callable[[Path], Server], tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Any]:
    missing: str | None = None
    try:
        server = start(tmp_path_factory.mktemp(name))
    except ServerNotProvisionedError as exc:
        missing = str(exc)
    if missing is not None:  # outside the except block: no chained traceback, just the hint
        pytest.fail(missing, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    yield from _serve(start_kafka, tmp_path_factory, "kafka")


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretDBServer]:
    yield from _serve(start_ferretdb, tmp_path_factory, "ferretdb")


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    yield from _serve(start_minio, tmp_path_factory, "minio")
