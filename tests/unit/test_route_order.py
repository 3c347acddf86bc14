"""The embedded app matches the work path's routes first (issue 8: Starlette tries routes one by one,
and ``next`` came after some thirty others); reordering must not let one route answer another's path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from crowdseg.services.gateway.app import create_embedded_app
from crowdseg.settings import GatewaySettings
from starlette.routing import Match

pytestmark = pytest.mark.unit


def _first_full_match(app: Any, method: str, path: str) -> tuple[int, str | None]:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}
    for index, route in enumerate(app.router.routes):
        if hasattr(route, "_match"):  # an included router: which of its routes matched
            match, _child, inner, _context = route._match(scope)
        else:
            (match, _child), inner = route.matches(scope), route
        if match == Match.FULL:
            return index, getattr(inner, "path_format", None)
    return -1, None


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data: Path = tmp_path_factory.mktemp("route-order")
    return create_embedded_app(GatewaySettings(profile="embedded", data_dir=data))


def test_every_documented_route_answers_its_own_path(app: Any) -> None:
    for template, methods in app.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x-1", template)
        for method in methods:
            _index, matched = _first_full_match(app, method.upper(), concrete)
            assert matched is not None and template.endswith(matched), f"{method} {template} → {matched}"


def test_the_work_path_is_matched_before_the_other_services(app: Any) -> None:
    next_at, _ = _first_full_match(app, "GET", "/api/v1/tasks/t-1/next")
    submit_at, _ = _first_full_match(app, "POST", "/api/v1/tasks/t-1/submissions")
    upload_at, _ = _first_full_match(app, "POST", "/api/v1/tasks/t-1/images")
    assert next_at < upload_at and submit_at < upload_at
