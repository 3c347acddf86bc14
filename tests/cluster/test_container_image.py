"""The container image (``make image``): its config says what a cluster needs, and every service run
from it, each its own ``buildah run`` of the image, carries a crowd from sign-up to export against the
real Kafka, FerretDB and MinIO, as the venv's processes do in test_cluster_flow.py. ``crowdseg up``
runs from it too.

The image is built by ``scripts/build-image.sh`` (cached: the first build takes minutes, a current
image seconds). The stack gets a Kafka of its own: consumer groups are the platform's, so a second
stack on the session's Kafka would take the other stack's events.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.crowd import crowd_reaches_expert_consensus_and_exports_it
from tests.cluster.image import ImageContainer, ImageLauncher, build_image, buildah_available, image_config
from tests.cluster.stack import ROOT, ClusterStack, ServiceProcess, free_port
from tests.embedded import Api
from tests.servers import FerretDBServer, MinioServer, start_kafka

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.timeout(2400),  # the first build of the image (cached afterwards) is part of the first test
    pytest.mark.skipif(not buildah_available(), reason="buildah is not installed (make servers installs it)"),
]

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
LABELS = ("title", "description", "version", "source", "licenses", "revision", "created")


@pytest.fixture(scope="module")
def archive() -> Path:
    return build_image()


@pytest.fixture(scope="module")
def container(archive: Path) -> Iterator[ImageContainer]:
    with ImageContainer(archive) as container:
        yield container


@pytest.fixture(scope="module")
def image_stack(
    container: ImageContainer,
    tmp_path_factory: pytest.TempPathFactory,
    mongo_server: FerretDBServer,
    minio_server: MinioServer,
) -> Iterator[ClusterStack]:
    tmp = tmp_path_factory.mktemp("image-stack")
    kafka = start_kafka(tmp / "kafka")
    try:
        launcher = ImageLauncher(container.name, tmp / "volumes")
        with ClusterStack(tmp, kafka, mongo_server, minio_server, consensus_workers=1, launcher=launcher) as stack:
            yield stack
    finally:
        kafka.stop()


def test_the_archive_names_the_versioned_image_and_its_config_is_hardened(archive: Path) -> None:
    assert archive.name == f"crowdseg-{VERSION}.oci.tar"
    image = image_config(archive)
    assert image["ref"]["org.opencontainers.image.ref.name"] == f"ghcr.io/crowdseg/crowdseg:{VERSION}"
    config = image["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["crowdseg"]
    assert config["Cmd"] == ["up"]
    assert set(config["Volumes"]) == {"/data", "/tmp"}
    assert "8000/tcp" in config["ExposedPorts"]
    health = config["Healthcheck"]["Test"]
    assert health[0] == "CMD" and "/healthz" in " ".join(health)
    labels = config["Labels"]
    for label in LABELS:
        assert labels[f"org.opencontainers.image.{label}"], label
    assert labels["org.opencontainers.image.version"] == VERSION


def test_the_image_runs_as_its_user_with_no_build_tools(container: ImageContainer) -> None:
    found = container.run("sh", "-c", "id -u; for tool in pip pip3 gcc cc make apt-get; do command -v $tool; done")
    assert found.stdout.split() == ["10001"], found.stdout + found.stderr
    usage = container.run("crowdseg", "--help")
    assert usage.returncode == 0, usage.stderr
    assert "serve" in usage.stdout and "up" in usage.stdout


def test_every_service_from_the_image_carries_a_crowd_to_export(image_stack: ClusterStack) -> None:
    for process in image_stack.services.values():
        ready = httpx.get(f"{process.url}/readyz", timeout=5).json()
        assert ready == {"ready": True, "store": "ok", "blobs": "ok", "broker": "ok"}, process.name
    page = httpx.get(f"{image_stack.url}/", timeout=10)
    assert page.status_code == 200
    assert page.text == (ROOT / "web" / "dist" / "index.html").read_text()  # the built UI, not the fallback
    master = Api.sign_up(image_stack.url, "master@image.crowdseg", "Task Master")
    crowd_reaches_expert_consensus_and_exports_it(image_stack.url, master)


def test_the_healthcheck_passes_against_a_running_service(
    image_stack: ClusterStack, container: ImageContainer, archive: Path
) -> None:
    [_, *command] = image_config(archive)["config"]["Healthcheck"]["Test"]
    gateway = image_stack.services["gateway"]
    healthy = container.run("env", f"CROWDSEG_PORT={gateway.port}", *command)
    assert healthy.returncode == 0, healthy.stderr
    unhealthy = container.run("env", f"CROWDSEG_PORT={free_port()}", *command)
    assert unhealthy.returncode != 0


class UpProcess(ServiceProcess):
    @property
    def arguments(self) -> list[str]:
        return ["up", "--port", str(self.port)]


def test_crowdseg_up_runs_from_the_image(container: ImageContainer, tmp_path: Path) -> None:
    """The image's default command: the embedded profile, with its broker and consensus worker inside."""
    volumes = tmp_path / "volumes"
    up = UpProcess("up", "up", {}, tmp_path / "up.log", ImageLauncher(container.name, volumes)).start()
    try:
        up.wait_ready(120)
        page = httpx.get(f"{up.url}/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        Api.sign_up(up.url, "admin@up.crowdseg", "Admin")
        assert (volumes / "up" / "data" / "secret.key").is_file()  # the embedded profile's state is on /data
        assert not (volumes / "up" / "data" / ".calfkit").exists()  # the broker runs from the image
    finally:
        up.stop()


def test_nothing_was_written_outside_the_volumes(container: ImageContainer, image_stack: ClusterStack) -> None:
    """What a read-only root file system would have refused, after the crowd, the export and ``up``."""
    assert container.written_outside_volumes() == []
