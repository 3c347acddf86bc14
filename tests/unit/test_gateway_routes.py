"""The cluster gateway's routing table: every public route goes to the service that owns it."""

from __future__ import annotations

import re

import pytest
from crowdseg.services.gateway.app import ROUTED_SERVICES
from crowdseg.services.gateway.proxy import MissingServiceUrl, RouteTable
from fastapi.routing import APIRoute

pytestmark = pytest.mark.unit

URLS = {part.name: f"http://{part.name}:8000/" for part in ROUTED_SERVICES}


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return RouteTable(ROUTED_SERVICES, URLS)


def test_every_route_of_every_service_resolves_to_its_owner(table: RouteTable) -> None:
    checked = 0
    for part in ROUTED_SERVICES:
        for make in part.routers:
            for route in make().routes:
                assert isinstance(route, APIRoute)
                path = re.sub(r"\{[^}]+\}", "some-id", route.path)
                for method in route.methods:
                    target = table.resolve(method, path)
                    assert target is not None and target.service == part.name, (method, path)
                    assert target.base_url == f"http://{part.name}:8000"
                    checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    ("method", "path", "owner"),
    [
        ("GET", "/tasks", "ingest"),
        ("POST", "/tasks/t1/images", "ingest"),
        ("GET", "/tasks/t1/next", "assign"),
        ("POST", "/tasks/t1/submissions", "annotate"),
        ("GET", "/tasks/t1/stats", "consensus"),
        ("GET", "/tasks/t1/coverage", "consensus"),
        ("GET", "/tasks/t1/images", "ingest"),
        ("GET", "/images/i1/consensus/mask.png", "consensus"),
        ("GET", "/images/i1/file", "ingest"),
        ("POST", "/tasks/t1/exports", "export"),
        ("GET", "/exports/e1/download", "export"),
        ("HEAD", "/exports/e1/download", "export"),
        ("DELETE", "/tasks/t1", "ingest"),  # not allowed there: the owner answers 405
        ("DELETE", "/tasks/t1/members/u1", "ingest"),
        ("POST", "/tasks/t1/links", "assign"),
        ("DELETE", "/tasks/t1/links/l1", "assign"),
        ("GET", "/tasks/t1/ledger", "assign"),
        ("GET", "/links/l1", "assign"),
        ("POST", "/links/l1/sessions", "assign"),
        ("GET", "/links/l1/progress", "assign"),
        ("POST", "/tasks/t1/invitations", "assign"),
        ("DELETE", "/tasks/t1/invitations/i1", "assign"),
        ("POST", "/invitations/i1/accept", "assign"),
    ],
)
def test_known_routes(table: RouteTable, method: str, path: str, owner: str) -> None:
    target = table.resolve(method, path)
    assert target is not None and target.service == owner


@pytest.mark.parametrize("path", ["/nothing", "/tasks/t1/next/extra", "/images"])
def test_unknown_paths_resolve_to_nobody(table: RouteTable, path: str) -> None:
    assert table.resolve("GET", path) is None


def test_a_missing_service_url_is_named() -> None:
    with pytest.raises(MissingServiceUrl, match=r"assign.*CROWDSEG_SERVICE_URLS"):
        RouteTable(ROUTED_SERVICES, {k: v for k, v in URLS.items() if k != "assign"})
