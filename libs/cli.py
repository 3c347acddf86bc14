"""The ``crowdseg`` command: ``up`` (embedded profile), ``serve <service>`` (cluster), ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import crowdseg
import httpx
import uvicorn
from crowdseg.embedded import EmbeddedBroker, EmbeddedWorker
from crowdseg.errors import SchemaTooNew, Unavailable
from crowdseg.heap import keep_full_collections_short
from crowdseg.settings import (
    AnnotateSettings,
    AssignSettings,
    CommonSettings,
    ConsensusSettings,
    ExportSettings,
    GatewaySettings,
    IngestSettings,
    Profile,
    load_settings,
)
from pydantic import ValidationError

SERVICES: dict[str, tuple[str, type[CommonSettings]]] = {
    "gateway": ("crowdseg.services.gateway.app", GatewaySettings),
    "ingest": ("crowdseg.services.ingest.app", IngestSettings),
    "assign": ("crowdseg.services.assign.app", AssignSettings),
    "annotate": ("crowdseg.services.annotate.app", AnnotateSettings),
    "consensus": ("crowdseg.services.consensus.app", ConsensusSettings),
    "export": ("crowdseg.services.export.app", ExportSettings),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crowdseg", description="Crowdsourced image annotation with consensus.")
    parser.add_argument("--version", action="version", version=f"crowdseg {crowdseg.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run every service and the web UI in one process (embedded profile)")
    up.add_argument("--data", type=Path, default=None, help="data directory (default ./crowdseg-data)")
    up.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    up.add_argument("--host", default=None, help="HTTP address (default 127.0.0.1)")
    up.add_argument("--demo", action="store_true", help="seed a demo task with a simulated crowd once ready")
    serve = commands.add_parser("serve", help="run one service alone (cluster profile), configured by environment")
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.add_argument("--port", type=int, default=int(os.environ.get("CROWDSEG_PORT", "8000")))
    serve.add_argument("--host", default=os.environ.get("CROWDSEG_HOST", "127.0.0.1"))
    demo = commands.add_parser("demo", help="seed a demo task and a simulated crowd into a running crowdseg")
    demo.add_argument("--url", default="http://127.0.0.1:8000")
    demo.add_argument("--images", type=int, default=8)
    args = parser.parse_args(argv)
    level = os.environ.get("CROWDSEG_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        if args.command in ("up", "serve"):
            keep_full_collections_short()
        if args.command == "up":
            return run_up(args.data, args.port, args.host, args.demo)
        if args.command == "serve":
            return run_serve(args.service, args.host, args.port)
        return run_demo(args.url, args.images)
    except ValidationError as exc:
        print(f"crowdseg: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (Unavailable, SchemaTooNew, OSError, ValueError) as exc:
        print(f"crowdseg: {exc}", file=sys.stderr)
        return 2


def _one_line(exc: ValidationError) -> str:
    """A settings error as one line naming what is missing or wrong."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"CROWDSEG_{where.upper()}: {message}" if where else message)
    return "; ".join(parts)


def _lock_data_dir(data_dir: Path) -> Any:
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / ".lock", "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise Unavailable(f"another crowdseg is already running on {data_dir}") from exc
    return handle


def run_up(data: Path | None, port: int | None, host: str | None, seed_demo: bool) -> int:
    from crowdseg.services.gateway.app import create_embedded_app

    overrides: dict[str, Any] = {"profile": Profile.EMBEDDED}
    for name, value in (("data_dir", data), ("port", port), ("host", host)):
        if value is not None:
            overrides[name] = value
    settings = load_settings(GatewaySettings, **overrides)
    lock = _lock_data_dir(settings.data_dir)
    try:
        asyncio.run(_upgrade_store(settings))
    except BaseException:
        lock.close()
        raise
    broker = EmbeddedBroker(settings.data_dir / "logs" / "broker.log")
    broker.start()
    try:
        settings = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers})
        app = create_embedded_app(settings)
        workers = _start_workers(settings)
        for n, worker in enumerate(workers):
            app.state.runtime.probes[f"{worker.service}_worker_{n}"] = worker.ping
        url = f"http://{settings.host}:{settings.port}"
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
        threading.Thread(target=_announce, args=(server, url, seed_demo), daemon=True).start()
        # uvicorn re-raises the stopping signal after its clean shutdown; both end here, in the finally.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                server.run()
        finally:
            for worker in workers:
                worker.stop()
    finally:
        broker.stop()
        lock.close()
    return 0


async def _upgrade_store(settings: GatewaySettings) -> None:
    """Open the store once before anything else starts: an older data directory is upgraded here,
    before the worker processes open it, and a newer one is refused with one line."""
    from crowdseg.runtime import build_store

    store = build_store(settings)
    await store.open()
    await store.close()


def _start_workers(settings: GatewaySettings) -> list[EmbeddedWorker]:
    """The embedded profile's consensus worker processes, on the same data directory and broker."""
    env = {
        "CROWDSEG_PROFILE": Profile.EMBEDDED.value,
        "CROWDSEG_DATA_DIR": str(settings.data_dir.resolve()),
        "CROWDSEG_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
    }
    workers = [
        EmbeddedWorker(
            "consensus", env, settings.data_dir / "logs" / f"consensus-{n}.log", niceness=settings.consensus_niceness
        )
        for n in range(settings.consensus_processes)
    ]
    for worker in workers:
        worker.start()
    return workers


def _announce(server: uvicorn.Server, url: str, seed_demo: bool) -> None:
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    print(f"crowdseg is ready on {url}  (API docs: {url}/docs; Ctrl-C stops)", flush=True)
    if seed_demo:
        _print_demo(url, 8)


def run_serve(service: str, host: str, port: int) -> int:
    """One service in this process, configured by ``CROWDSEG_*`` variables; exits 2 at once if one is
    missing or what it names does not answer."""
    import importlib

    from crowdseg.preflight import preflight

    module_name, settings_class = SERVICES[service]
    settings = load_settings(settings_class)
    if not settings.kafka_bootstrap_servers:
        raise Unavailable("crowdseg serve needs CROWDSEG_KAFKA_BOOTSTRAP_SERVERS (use `crowdseg up` for one process)")
    asyncio.run(preflight(settings))
    app = importlib.import_module(module_name).create_app(settings)
    level = settings.log_level.lower()
    uvicorn.run(app, host=host, port=port, log_level=level, access_log=level == "debug")
    return 0


def run_demo(url: str, images: int) -> int:
    try:
        httpx.get(f"{url}/healthz", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise Unavailable(f"no crowdseg answers at {url}; start one with `crowdseg up`") from exc
    _print_demo(url, images)
    return 0


def _print_demo(url: str, images: int) -> None:
    from crowdseg.demo import seed

    result = seed(url, images=images)
    print(
        f"demo task {result.task_id}: {result.images} images, {result.submissions} simulated submissions.\n"
        f"sign in at {url} as {result.taskmaster_email} / {result.password}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
