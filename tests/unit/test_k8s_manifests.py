"""The Kubernetes manifests (deploy/k8s) parse, and every service's Deployment has what a cluster needs."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import load_manifest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("gateway", "ingest", "assign", "annotate", "consensus", "export")
IMAGE = "ghcr.io/crowdseg/crowdseg"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_every_yaml_file_parses() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= len(SERVICES) + 6
    for path in files:
        for doc in documents(path):
            assert isinstance(doc, dict), path
            assert doc.get("apiVersion") and doc.get("kind"), path


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_hardened_deployment_and_a_service(service: str) -> None:
    docs = {doc["kind"]: doc for doc in documents(K8S / "base" / f"{service}.yaml")}
    assert set(docs) == {"Deployment", "Service"}
    deployment, svc = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["args"][:2] == ["serve", service]
    assert container["image"] == f"{IMAGE}:{VERSION}"  # what `make image` builds
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    limits = container["resources"]["limits"]
    assert limits["cpu"] and limits["memory"]
    assert container["resources"]["requests"]["memory"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable place under a read-only root
    env_from = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert env_from == {"crowdseg-config", "crowdseg-secrets"}


def test_base_lists_every_service_and_overlays_pick_images_and_components() -> None:
    [base] = documents(K8S / "base" / "kustomization.yaml")
    assert base["resources"] == [f"{service}.yaml" for service in SERVICES]
    config = " ".join(base["configMapGenerator"][0]["literals"])
    assert "CROWDSEG_PROFILE=cluster" in config
    for service in ("ingest", "assign", "annotate", "consensus", "export"):
        assert f"http://crowdseg-{service}:8000" in config
    for component in ("kafka", "mongodb", "minio", "consensus-autoscaling"):
        [doc] = documents(K8S / "components" / component / "kustomization.yaml")
        assert doc["kind"] == "Component"
    assert base["images"] == [{"name": IMAGE, "newTag": VERSION}]
    for overlay in ("dev", "prod"):
        [doc] = documents(K8S / "overlays" / overlay / "kustomization.yaml")
        assert doc["resources"] == ["../../base"]
        assert all(image["newTag"] not in ("", "latest") for image in doc.get("images", []))
        assert {"../../components/kafka", "../../components/mongodb", "../../components/minio"} <= set(
            doc["components"]
        )


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_build_with_kustomize(overlay: str) -> None:
    kustomize = load_manifest()["kustomize"]["bin"]  # provisioned by `make servers`
    built = subprocess.run(
        [kustomize, "build", str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=True, timeout=60
    )
    docs = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    deployments = [doc for doc in docs if doc["kind"] == "Deployment"]
    assert len(deployments) == len(SERVICES)
    for deployment in deployments:
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {item["name"] for item in container["env"]}
        assert {"CROWDSEG_MONGODB_URL", "CROWDSEG_S3_ACCESS_KEY", "CROWDSEG_S3_SECRET_KEY"} <= env
        # dev runs the base's tag (this checkout's `make image`); prod pins the release, bumped with it
        assert container["image"] == f"{IMAGE}:{VERSION}"
    [config] = [doc for doc in docs if doc["kind"] == "ConfigMap"]
    assert config["data"]["CROWDSEG_KAFKA_BOOTSTRAP_SERVERS"]
    assert config["data"]["CROWDSEG_S3_ENDPOINT"]
