"""What every crowdseg process shows the outside: health, readiness, metrics, OpenAPI and AsyncAPI,
the web UI, and a package that adds no generic top-level names to site-packages."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from crowdseg.events import ALL_TOPICS

from tests.embedded import Api, EmbeddedServer

pytestmark = pytest.mark.integration

API_ROUTES = {
    ("post", "/api/v1/auth/signup"),
    ("post", "/api/v1/auth/login"),
    ("get", "/api/v1/me"),
    ("put", "/api/v1/users/{user_id}/roles"),
    ("post", "/api/v1/tasks"),
    ("get", "/api/v1/tasks"),
    ("get", "/api/v1/tasks/{task_id}"),
    ("patch", "/api/v1/tasks/{task_id}"),
    ("post", "/api/v1/tasks/{task_id}/members"),
    ("post", "/api/v1/tasks/{task_id}/images"),
    ("get", "/api/v1/tasks/{task_id}/images"),
    ("get", "/api/v1/images/{image_id}/file"),
    ("post", "/api/v1/tasks/{task_id}/tutorial"),
    ("get", "/api/v1/tasks/{task_id}/qualification"),
    ("post", "/api/v1/tasks/{task_id}/qualification/attempts"),
    ("get", "/api/v1/tasks/{task_id}/next"),
    ("post", "/api/v1/tasks/{task_id}/submissions"),
    ("get", "/api/v1/images/{image_id}/consensus"),
    ("get", "/api/v1/images/{image_id}/consensus/mask.png"),
    ("get", "/api/v1/tasks/{task_id}/stats"),
    ("get", "/api/v1/tasks/{task_id}/coverage"),
    ("get", "/api/v1/users"),
    ("get", "/api/v1/me/stats"),
    ("post", "/api/v1/tasks/{task_id}/exports"),
    ("get", "/api/v1/exports/{export_id}"),
    ("get", "/api/v1/exports/{export_id}/download"),
}


def test_health_and_readiness(embedded: EmbeddedServer) -> None:
    assert httpx.get(f"{embedded.url}/healthz").status_code == 200
    assert httpx.get(f"{embedded.url}/readyz").status_code == 200


def test_metrics_cover_requests_events_lag_and_consensus(embedded: EmbeddedServer) -> None:
    """Regression: request latency was labelled `/auth/signup`, without the `/api/v1` prefix, because
    FastAPI 0.165 puts the router's own route (not the prefixed copy) in the ASGI scope."""
    Api.sign_up(embedded.url, "metrics@surface.crowdseg")
    text = httpx.get(f"{embedded.url}/metrics").text
    for name in (
        "crowdseg_http_request_seconds",
        "crowdseg_events_consumed_total",
        "crowdseg_events_failed_total",
        "crowdseg_consumer_lag_messages",
        "crowdseg_consensus_seconds",
    ):
        assert name in text, name
    assert 'route="/api/v1/auth/signup"' in text


def test_openapi_has_every_route_of_the_api_contract(embedded: EmbeddedServer) -> None:
    document = httpx.get(f"{embedded.url}/openapi.json").json()
    present = {(method, path) for path, item in document["paths"].items() for method in item}
    assert API_ROUTES - present == set()
    assert httpx.get(f"{embedded.url}/docs").status_code == 200


def test_asyncapi_documents_every_topic(embedded: EmbeddedServer) -> None:
    document = httpx.get(f"{embedded.url}/asyncapi.json").json()
    assert document["asyncapi"].startswith(("2.", "3."))
    channels = json.dumps(document["channels"])
    assert [topic for topic in ALL_TOPICS if topic not in channels] == []


def test_the_web_ui_is_served_with_a_content_security_policy(embedded: EmbeddedServer) -> None:
    page = httpx.get(f"{embedded.url}/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "default-src" in page.headers["content-security-policy"]
    deep_link = httpx.get(f"{embedded.url}/tasks/some-task/annotate")
    assert deep_link.status_code == 200 and "<html" in deep_link.text.lower()


def test_no_generic_top_level_names_leak_into_site_packages(tmp_path_factory: pytest.TempPathFactory) -> None:
    probe = "import importlib.util as u; print([n for n in ('libs', 'services') if u.find_spec(n)])"
    outside = tmp_path_factory.mktemp("elsewhere")
    found = subprocess.run([sys.executable, "-c", probe], cwd=outside, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
    imported = subprocess.run(
        [sys.executable, "-c", "import crowdseg.services.consensus, crowdseg.consensus"], cwd=outside, check=False
    )
    assert imported.returncode == 0
