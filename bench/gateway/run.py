"""The cluster gateway's own cost (issue 8): a tiny upstream served directly, and through the gateway's
proxy, once with the old ``httpx`` client (bench/gateway/httpx_proxy.py, the baseline) and once with
the project's proxy (services/gateway/proxy.py, ``aiohttp``), side by side in one run.

Processes, all on loopback:

- *upstream*: a FastAPI app under uvicorn (uvloop + httptools, as ``crowdseg serve``) with
  ``GET /api/v1/ping`` (a small JSON), ``POST /api/v1/echo`` (a ~1 KB JSON body, validated and sent
  back), ``POST /api/v1/sink`` (streams the body in and counts it) and ``GET /api/v1/blob`` (streams
  ``?mb=N`` MiB out);
- *proxies*: each a bare FastAPI app with the proxy installed for that upstream (the same routing
  table the gateway builds from the services' routers), under uvicorn the same way;
- *driver*: this process, aiohttp with ``--concurrency`` connections (64), a fixed number of requests
  per measurement (``--requests``) and a deadline (``--seconds``), after a short warm-up.

Rounds (``--rounds``) interleave the three targets so that a change in the machine's load hits them
alike; requests/s is the median over rounds, latency median/p99 over every request of every round.
Then one large upload and one large download (``--stream-mb``) through each target: MiB/s and how
much the proxy's resident set grew (its peak, VmHWM, over its resident set before) — a proxy that
buffered the body whole would grow by the body's size.

    .venv/bin/python bench/gateway/run.py                 # 3 rounds × 5 000 requests, 256 MiB streams
    .venv/bin/python bench/gateway/run.py --quick         # 1 round × 1 000 requests, 32 MiB streams
    .venv/bin/python bench/gateway/run.py --table         # the table of results.json

Writes bench/gateway/results.json. The driver, the proxies and the upstream share the machine's
cores (2 here): the figures are this machine's, compared side by side, not absolute. Nothing here is
a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
sys.path.insert(0, str(ROOT))

TARGETS = ("direct", "httpx proxy", "aiohttp proxy")
ROUTES = ("GET /ping", "POST /echo")
ECHO_BODY = {
    "id": "s-0001",
    "image_id": "i-0001",
    "shapes": [{"type": "contour", "points": [[i, i + 1] for i in range(100)]}],
}
CHUNK = 1 << 20


# --- the servers ----------------------------------------------------------------------------------


class Shape(BaseModel):
    type: str
    points: list[list[int]]


class Echo(BaseModel):
    id: str
    image_id: str
    shapes: list[Shape]


def upstream_router() -> APIRouter:
    api = APIRouter()

    @api.get("/ping")
    async def ping() -> dict[str, Any]:
        return {"status": "ok", "service": "bench"}

    @api.post("/echo")
    async def echo(body: Echo) -> Echo:
        return body

    @api.post("/sink")
    async def sink(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"bytes": size}

    @api.get("/blob")
    async def blob(mb: int = 1) -> StreamingResponse:
        block = b"x" * CHUNK

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(mb):
                yield block

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    return api


def serve(role: str, port: int, upstream: str) -> None:
    import uvicorn
    from crowdseg.composition import ServiceParts
    from fastapi import FastAPI

    app = FastAPI()
    if role == "upstream":
        from crowdseg.http import API_PREFIX

        app.include_router(upstream_router(), prefix=API_PREFIX)
    else:
        parts = [ServiceParts(name="bench", routers=[upstream_router])]
        if role == "httpx":
            from bench.gateway.httpx_proxy import install_httpx_proxy

            install_httpx_proxy(app, parts, {"bench": upstream})
        else:
            from crowdseg.services.gateway.proxy import install_proxy

            install_proxy(app, parts, {"bench": upstream})
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, role: str, upstream: str = "") -> None:
        self.role = role
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, __file__, "--serve", role, "--port", str(self.port), "--upstream", upstream]
        self.process = subprocess.Popen(cmd, cwd=ROOT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.role} server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"the {self.role} server did not listen within {timeout} s")

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (the peak since start) of the server process, in KiB."""
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
        return fields

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the driver -----------------------------------------------------------------------------------


async def drive(base: str, route: str, requests: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """``requests`` requests (or until ``seconds`` pass) from ``concurrency`` connections at once."""
    import aiohttp

    method, path = route.split(" ", 1)
    url = f"{base}/api/v1{path}"
    payload = json.dumps(ECHO_BODY).encode()
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            if method == "GET":
                async with session.get(url) as response:
                    await response.read()
            else:
                async with session.post(url, data=payload, headers=headers) as response:
                    await response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

        async def worker(limit: int) -> None:
            nonlocal issued, errors
            while issued < limit and time.perf_counter() < deadline:
                issued += 1
                try:
                    await one()
                except aiohttp.ClientError:
                    errors += 1

        # warm-up: every connection opened, the servers' code paths hot
        issued = 0
        await asyncio.gather(*(worker(concurrency * 4) for _ in range(concurrency)))
        latencies.clear()
        errors = 0
        issued = 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(worker(requests) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"ok": len(latencies), "errors": errors, "seconds": elapsed, "latencies": latencies}


async def stream(base: str, direction: str, mb: int) -> dict[str, Any]:
    """One ``mb`` MiB upload (chunked, from a generator) or download, timed."""
    import aiohttp

    block = b"y" * CHUNK

    async def body() -> AsyncIterator[bytes]:
        for _ in range(mb):
            yield block

    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.perf_counter()
        if direction == "upload":
            async with session.post(f"{base}/api/v1/sink", data=body()) as response:
                answer = await response.json()
                size = int(answer["bytes"])
        else:
            size = 0
            async with session.get(f"{base}/api/v1/blob", params={"mb": str(mb)}) as response:
                async for chunk in response.content.iter_any():
                    size += len(chunk)
        elapsed = time.perf_counter() - started
    assert size == mb * CHUNK, (direction, size)
    return {"mib": mb, "seconds": round(elapsed, 3), "mib_per_s": round(mb / elapsed, 1)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    upstream = Server("upstream")
    servers = [upstream]
    try:
        upstream.wait_ready()
        proxies = {"httpx proxy": Server("httpx", upstream.url), "aiohttp proxy": Server("aiohttp", upstream.url)}
        servers += proxies.values()
        for server in proxies.values():
            server.wait_ready()
        bases = {"direct": upstream.url, **{name: server.url for name, server in proxies.items()}}
        load_before = os.getloadavg()
        samples: dict[tuple[str, str], list[dict[str, Any]]] = {(t, r): [] for t in TARGETS for r in ROUTES}
        for n in range(args.rounds):
            for route in ROUTES:
                for target in TARGETS:
                    proxy = proxies.get(target)
                    cpu = (upstream.cpu_seconds(), proxy.cpu_seconds() if proxy else 0.0)
                    result = asyncio.run(drive(bases[target], route, args.requests, args.concurrency, args.seconds))
                    total = result["ok"] + result["errors"]
                    result["upstream_cpu"] = upstream.cpu_seconds() - cpu[0]
                    result["proxy_cpu"] = proxy.cpu_seconds() - cpu[1] if proxy else 0.0
                    result["measured"] = total + args.concurrency * 4  # the warm-up's requests are in the CPU time
                    rps = result["ok"] / result["seconds"]
                    per = 1000 * result["proxy_cpu"] / result["measured"]
                    print(
                        f"round {n + 1} {route:<11} {target:<14} {rps:8.0f} req/s  errors {result['errors']}"
                        f"  proxy CPU {per:.2f} ms/request"
                    )
                    samples[(target, route)].append(result)
        rows = []
        for (target, route), results in samples.items():
            latencies = [x for r in results for x in r["latencies"]]
            rates = [r["ok"] / r["seconds"] for r in results]
            rows.append(
                {
                    "target": target,
                    "route": route,
                    "requests": sum(r["ok"] for r in results),
                    "errors": sum(r["errors"] for r in results),
                    "requests_per_s": round(statistics.median(rates), 1),
                    "requests_per_s_rounds": [round(x, 1) for x in rates],
                    "latency_median_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
                    "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
                    "upstream_cpu_ms_per_request": round(
                        1000 * sum(r["upstream_cpu"] for r in results) / sum(r["measured"] for r in results), 3
                    ),
                    "proxy_cpu_ms_per_request": round(
                        1000 * sum(r["proxy_cpu"] for r in results) / sum(r["measured"] for r in results), 3
                    )
                    if target != "direct"
                    else None,
                }
            )
        streams = []
        for direction in ("upload", "download"):
            for target in TARGETS:
                server = proxies.get(target)
                before = server.memory_kib() if server else {}
                result = asyncio.run(stream(bases[target], direction, args.stream_mb))
                if server:
                    after = server.memory_kib()
                    result["proxy_rss_before_mib"] = round(before["VmRSS"] / 1024, 1)
                    result["proxy_peak_growth_mib"] = round((after["VmHWM"] - before["VmRSS"]) / 1024, 1)
                print(f"{direction:<8} {target:<14} {result}")
                streams.append({"target": target, "direction": direction, **result})
        load_after = os.getloadavg()
    finally:
        for server in reversed(servers):
            server.stop()

    import aiohttp
    import fastapi
    import httpx
    import uvicorn

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
        },
        "versions": {
            "aiohttp": aiohttp.__version__,
            "httpx": httpx.__version__,
            "uvicorn": uvicorn.__version__,
            "fastapi": fastapi.__version__,
        },
        "settings": {
            "concurrency": args.concurrency,
            "requests_per_round": args.requests,
            "rounds": args.rounds,
            "deadline_s": args.seconds,
            "stream_mib": args.stream_mb,
        },
        "requests": rows,
        "streams": streams,
    }


def table(results: dict[str, Any]) -> str:
    rows = {(r["target"], r["route"]): r for r in results["requests"]}
    lines = [
        "| route | target | requests/s | × direct | latency median (ms) | p99 (ms) | proxy CPU (ms/request) | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for route in ROUTES:
        direct = rows[("direct", route)]["requests_per_s"]
        for target in TARGETS:
            r = rows[(target, route)]
            share = r["requests_per_s"] / direct if direct else 0.0
            cpu = r.get("proxy_cpu_ms_per_request")
            lines.append(
                f"| `{route}` | {target} | {r['requests_per_s']:.0f} | {share:.2f} | "
                f"{r['latency_median_ms']:.1f} | {r['latency_p99_ms']:.1f} | "
                f"{'–' if cpu is None else f'{cpu:.2f}'} | {r['errors']} |"
            )
    lines += [
        "",
        "| stream | target | MiB | MiB/s | proxy resident set before (MiB) | proxy peak growth (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in results["streams"]:
        before = s.get("proxy_rss_before_mib", "–")
        growth = s.get("proxy_peak_growth_mib", "–")
        lines.append(f"| {s['direction']} | {s['target']} | {s['mib']} | {s['mib_per_s']} | {before} | {growth} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="requests per target, route and round")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="deadline of one measurement")
    parser.add_argument("--stream-mb", type=int, default=256, help="MiB of the large upload and download")
    parser.add_argument("--quick", action="store_true", help="1 round × 1 000 requests, 32 MiB streams")
    parser.add_argument("--table", action="store_true", help="print the table of results.json")
    parser.add_argument("--serve", choices=["upstream", "httpx", "aiohttp"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.upstream)
        return
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return
    if args.quick:
        args.rounds, args.requests, args.stream_mb = 1, 1000, 32
    results = run(args)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
