"""The cluster profile end to end: every service its own ``crowdseg serve`` process against real
Apache Kafka, FerretDB (MongoDB wire protocol) and MinIO, reached only through the gateway.

Same flow as the embedded integration test: a task master creates a contour task and uploads a ZIP
of synthetic images with known truth; ten simulated annotators (two of them bad) loop ``next`` →
``submissions`` at once; every image's consensus covers all its submissions with Dice ≥ 0.95 against
the truth; the bad annotators rank last; the export ZIP holds the results (the flow is
``crowd.crowd_reaches_expert_consensus_and_exports_it``; test_container_image.py runs it on the image).
And ``crowdseg serve`` refuses to start, in one line, when its configuration is missing or names
something that does not answer.
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.cluster.crowd import crowd_reaches_expert_consensus_and_exports_it
from tests.cluster.stack import CROWDSEG, ClusterStack, free_port
from tests.embedded import Api
from tests.servers import KafkaServer, MinioServer

pytestmark = pytest.mark.cluster


def test_a_crowd_through_the_gateway_reaches_expert_consensus_and_exports_it(
    cluster: ClusterStack, master: Api
) -> None:
    crowd_reaches_expert_consensus_and_exports_it(cluster.url, master)


def test_the_gateway_serves_the_web_ui_and_every_process_is_healthy(cluster: ClusterStack) -> None:
    page = httpx.get(f"{cluster.url}/", timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "content-security-policy" in page.headers
    for process in cluster.services.values():
        assert httpx.get(f"{process.url}/healthz", timeout=5).status_code == 200
        ready = httpx.get(f"{process.url}/readyz", timeout=5).json()
        assert ready == {"ready": True, "store": "ok", "blobs": "ok", "broker": "ok"}, process.name
    unknown = httpx.get(f"{cluster.url}/api/v1/no/such/route", timeout=10)
    assert unknown.status_code == 404


def test_the_gateway_answers_503_while_a_service_is_down(cluster: ClusterStack, master: Api) -> None:
    cluster.services["assign"].stop()
    try:
        tasks = master.http.get("/tasks")  # ingest is up
        assert tasks.status_code == 200
        assert tasks.json(), "the task list is empty"
        down = master.http.get(f"/tasks/{tasks.json()[0]['id']}/next")
        assert down.status_code == 503
        assert down.headers["retry-after"]
        assert "assign" in down.json()["detail"]
    finally:
        cluster.start_service("assign")


def _serve(env: dict[str, str], service: str = "consensus", timeout: float = 90) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSEG_")}
    command = [str(CROWDSEG), "serve", service, "--port", str(free_port())]
    return subprocess.run(command, env={**clean, **env}, capture_output=True, text=True, timeout=timeout, check=False)


def _complaint(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("crowdseg: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_serve_fails_fast_naming_what_is_missing_or_unreachable(
    cluster: ClusterStack, kafka_server: KafkaServer, minio_server: MinioServer
) -> None:
    full = {k: v for k, v in cluster.env.items() if k.startswith("CROWDSEG_")}
    closed = free_port()
    cases = {
        "missing": ({k: v for k, v in full.items() if k != "CROWDSEG_MONGODB_URL"}, "consensus"),
        "weak secret": ({**full, "CROWDSEG_SECRET_KEY": "secret"}, "consensus"),
        "no mongo": ({**full, "CROWDSEG_MONGODB_URL": f"mongodb://user:hunter22@127.0.0.1:{closed}/"}, "consensus"),
        "no kafka": ({**full, "CROWDSEG_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"}, "consensus"),
        "no s3": ({**full, "CROWDSEG_S3_ENDPOINT": f"127.0.0.1:{closed}"}, "consensus"),
        "gateway without routes": (
            {**full, "CROWDSEG_SERVICE_URLS": json.dumps({"ingest": "http://127.0.0.1:1"})},
            "gateway",
        ),
    }
    with ThreadPoolExecutor(3) as pool:  # each is a process importing the platform: overlap them
        done = dict(zip(cases, pool.map(lambda case: _serve(*case), cases.values()), strict=True))
    for name, result in done.items():
        assert result.returncode != 0, name
    assert "CROWDSEG_MONGODB_URL" in _complaint(done["missing"])
    assert "CROWDSEG_SECRET_KEY" in _complaint(done["weak secret"])
    line = _complaint(done["no mongo"])
    assert "MongoDB" in line and str(closed) in line and "hunter22" not in line
    assert "Kafka" in _complaint(done["no kafka"])
    assert "S3" in _complaint(done["no s3"])
    assert "CROWDSEG_SERVICE_URLS" in _complaint(done["gateway without routes"])
