"""One cluster stack for the whole cluster suite (Kafka's JVM and eight Python processes are slow to
start on a small machine); every test makes its own task, so tests do not see each other's work."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.stack import ClusterStack
from tests.embedded import Api
from tests.servers import FerretDBServer, KafkaServer, MinioServer


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_server: KafkaServer,
    mongo_server: FerretDBServer,
    minio_server: MinioServer,
) -> Iterator[ClusterStack]:
    stack = ClusterStack(tmp_path_factory.mktemp("cluster"), kafka_server, mongo_server, minio_server)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def master(cluster: ClusterStack) -> Api:
    """The first account of the stack: an admin, who may do all a task master may."""
    return Api.sign_up(cluster.url, "master@cluster.crowdseg", "Task Master")
