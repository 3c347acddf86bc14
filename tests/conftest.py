from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedded import EmbeddedServer

# The real Kafka, FerretDB and MinIO fixtures (kafka_server, mongo_server, minio_server).
pytest_plugins = ["tests.servers"]


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One shared embedded platform for the integration tests that need no restart."""
    server = EmbeddedServer(tmp_path_factory.mktemp("embedded") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
