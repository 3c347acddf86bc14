"""The container image in tests: built by ``scripts/build-image.sh`` (what ``make image`` runs; it is
cached, so a current image costs seconds), read from its OCI archive, and run with buildah.

    archive = build_image()                      # dist/crowdseg-<version>.oci.tar
    config = image_config(archive)               # the image's config JSON (user, healthcheck, labels)
    with ImageContainer(archive) as container:   # `buildah from oci-archive:...`, removed on exit
        stack = ClusterStack(..., launcher=ImageLauncher(container.name, tmp_dir))

Every process of a stack runs in the same working container with ``buildah run --isolation chroot
--network host`` (``podman run`` does not work on this machine), as the image's non-root user, with
its own host directories mounted on the image's volumes /data and /tmp, and only its ``CROWDSEG_*``
settings passed in, as a Kubernetes pod gets them. buildah itself would back each declared volume with
one directory per container (and then ignore ``--volume`` on it), so the working container forgets its
VOLUME declarations and the launcher mounts them, as a container runtime would. buildah cannot mount the
root read-only; ``written_outside_volumes`` shows what a process wrote there instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

from tests.cluster.stack import ROOT, Launcher
from tests.servers import cache_dir

BUILDAH = ["buildah", "--storage-driver", "vfs"]
IMAGE_UID = 10001  # the Containerfile's user; it must be able to write the volumes


def buildah_available() -> bool:
    return shutil.which("buildah") is not None


def build_image(timeout: float = 1500.0) -> Path:
    """Build the image, or find it current; the OCI archive's path."""
    env = {**os.environ, "CROWDSEG_CACHE": str(cache_dir()), "PYTHON": sys.executable}
    done = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/build-image.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def image_config(archive: Path) -> dict[str, Any]:
    """The config JSON of the archive's one image (index → manifest → config, by digest)."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict[str, Any]:
            algorithm, value = digest.split(":", 1)
            member = tar.extractfile(f"blobs/{algorithm}/{value}")
            assert member is not None, digest
            loaded: dict[str, Any] = json.load(member)
            return loaded

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        [entry] = json.load(index_file)["manifests"]
        manifest = blob(entry["digest"])
        return {"ref": entry.get("annotations", {}), "manifest": manifest, **blob(manifest["config"]["digest"])}


class ImageContainer:
    """A working container of the archive's image (``buildah from``), removed with ``buildah rm``."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.name = f"crowdseg-test-{uuid.uuid4().hex[:8]}"
        self.volumes = sorted(image_config(archive)["config"].get("Volumes") or {})
        self.created = 0.0

    def __enter__(self) -> ImageContainer:
        subprocess.run(
            [*BUILDAH, "from", "--quiet", "--name", self.name, f"oci-archive:{self.archive}"],
            check=True,
            capture_output=True,
            timeout=600,
        )
        forget = [f"--volume={volume}-" for volume in self.volumes]
        subprocess.run([*BUILDAH, "config", *forget, self.name], check=True, capture_output=True, timeout=60)
        self.created = time.time()
        return self

    def written_outside_volumes(self) -> list[str]:
        """Files of the container's root file system changed since it was created, outside its volumes
        (and /run, where buildah itself puts run-time files)."""
        done = subprocess.run([*BUILDAH, "mount", self.name], check=True, capture_output=True, text=True, timeout=60)
        root = Path(done.stdout.strip())
        skipped = {root / path.lstrip("/") for path in [*self.volumes, "/run", "/proc", "/sys", "/dev"]}
        written = []
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = [d for d in subdirectories if Path(directory, d) not in skipped]
            for file in files:
                path = Path(directory, file)
                if path.lstat().st_mtime > self.created:
                    written.append(f"/{path.relative_to(root)}")
        return written

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*BUILDAH, "run", "--isolation", "chroot", "--network", "host", self.name, "--", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def __exit__(self, *_: object) -> None:
        subprocess.run([*BUILDAH, "rm", self.name], capture_output=True, timeout=300, check=False)


class ImageLauncher(Launcher):
    """``crowdseg <args>`` inside the image's working container (a buildah process per service)."""

    # buildah forwards neither SIGTERM nor its own death to the contained process: signal the group.
    signals_group = True

    def __init__(self, container: str, volumes: Path) -> None:
        self.container = container
        self.volumes = volumes

    def command(self, name: str, args: list[str], env: dict[str, str]) -> list[str]:
        mounts = []
        for volume in ("data", "tmp"):
            host = self.volumes / name / volume
            host.mkdir(parents=True, exist_ok=True)
            os.chown(host, IMAGE_UID, IMAGE_UID)
            mounts += ["--volume", f"{host}:/{volume}"]
        # The host's paths mean nothing inside: the data directory is the image's /data.
        settings = {k: v for k, v in env.items() if k.startswith("CROWDSEG_") and k != "CROWDSEG_DATA_DIR"}
        settings["CROWDSEG_HOST"] = "127.0.0.1"  # host network: listen on loopback only, as the tests do
        return [
            *BUILDAH,
            "run",
            "--isolation",
            "chroot",
            "--network",
            "host",
            *mounts,
            *[f"--env={key}={value}" for key, value in sorted(settings.items())],
            self.container,
            "--",
            "crowdseg",
            *args,
        ]
