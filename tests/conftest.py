from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.embedded import Api, EmbeddedServer

# The real Kafka, FerretDB and MinIO fixtures (kafka_server, mongo_server, minio_server).
pytest_plugins = ["tests.servers"]


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One shared embedded platform for the integration tests that need no restart."""
    server = EmbeddedServer(tmp_path_factory.mktemp("embedded") / "data").start()
    try:
        Api.sign_up(server.url, ADMIN_EMAIL, "Admin")  # the first account: the admin of this platform
        yield server
    finally:
        server.stop()


ADMIN_EMAIL = "admin@embedded.crowdseg"


@pytest.fixture
def admin(embedded: EmbeddedServer) -> Api:
    return Api.login(embedded.url, ADMIN_EMAIL)


@pytest.fixture
def taskmaster(embedded: EmbeddedServer, admin: Api) -> Api:
    """A fresh task master on the shared platform."""
    api = Api.sign_up(embedded.url, f"tm-{uuid.uuid4().hex[:10]}@embedded.crowdseg", "Task Master")
    granted = admin.http.put(f"/users/{api.user['id']}/roles", json={"roles": ["annotator", "taskmaster"]})
    assert granted.status_code == 200, granted.text
    return api


@pytest.fixture
def annotator_factory(embedded: EmbeddedServer) -> Callable[[], Api]:
    def make() -> Api:
        return Api.sign_up(embedded.url, f"an-{uuid.uuid4().hex[:10]}@embedded.crowdseg", "Annotator")

    return make


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
