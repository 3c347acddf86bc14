"""An upgrade keeps the data: crowdseg starts on a data directory made by the previous release.

The fixture (tests/fixtures/data-dir-<release>.tar.gz, made by tests/fixtures/make_data_dir.py with that
release) holds a task master, two annotators, a task, three images, their submissions, consensus and
an export. This code starts on it, upgrades it, and everything is still there and still works.
"""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from crowdseg import __version__
from crowdseg.consensus.quality import SCORING
from crowdseg.migrations import SCHEMA_VERSION
from PIL import Image as PILImage

from tests.embedded import Api, EmbeddedServer, wait_for
from tests.fixtures import make_data_dir

pytestmark = pytest.mark.integration

FIXTURES = Path(make_data_dir.__file__).parent
PREVIOUS_RELEASE = "0.1.0"


def unpack(release: str, into: Path) -> tuple[Path, dict[str, Any]]:
    with tarfile.open(FIXTURES / f"data-dir-{release}.tar.gz") as tar:
        tar.extractall(into, filter="data")
    data = into / "data"
    return data, json.loads((data / "fixture.json").read_text())


def recorded_schema(data: Path) -> dict[str, str]:
    """The schema version a data directory records, and the release that wrote it (not the digest of
    the store's own schema script, which the store keeps to replace changed triggers)."""
    with sqlite3.connect(data / "crowdseg.sqlite3") as db:
        rows = db.execute("SELECT key, value FROM meta WHERE key LIKE 'schema.%' AND key != 'schema.digest'")
        return dict(rows.fetchall())


def dump(data: Path) -> list[str]:
    with sqlite3.connect(data / "crowdseg.sqlite3") as db:
        return list(db.iterdump())


def test_a_data_directory_of_the_previous_release_is_upgraded_and_keeps_everything(tmp_path: Path) -> None:
    data, made = unpack(PREVIOUS_RELEASE, tmp_path)
    assert made["version"] == PREVIOUS_RELEASE
    assert recorded_schema(data) == {}  # 0.1.0 recorded no version
    server = EmbeddedServer(data).start()
    try:
        master = Api.login(server.url, made["taskmaster"], made["password"])
        assert master.user["email"] == made["taskmaster"] and "taskmaster" in master.user["roles"]  # type: ignore[operator]
        task_id = made["task_id"]
        task = master.http.get(f"/tasks/{task_id}")
        assert task.status_code == 200 and task.json()["title"] == "Outline the bright ellipse"
        listed = master.http.get(f"/tasks/{task_id}/images").json()
        assert {image["id"]: image["name"] for image in listed} == made["images"]
        for image_id in made["images"]:
            original = master.http.get(f"/images/{image_id}/file")
            assert original.status_code == 200
            assert PILImage.open(io.BytesIO(original.content)).size == (make_data_dir.SIZE, make_data_dir.SIZE)
            assert master.http.get(f"/images/{image_id}/thumbnail").status_code == 200
            consensus = master.http.get(f"/images/{image_id}/consensus")
            assert consensus.status_code == 200 and consensus.json()["submissions"] == 2
            assert master.http.get(f"/images/{image_id}/consensus/mask.png").status_code == 200
        stats = master.http.get(f"/tasks/{task_id}/stats").json()
        assert {key: stats[key] for key in made["stats"]} == made["stats"]
        assert len(stats["users"]) == 2

        def rescored() -> bool:  # the first reconciliation scores every old image anew, as of today's scoring
            for image_id in made["images"]:
                found = master.http.get(f"/images/{image_id}/consensus").json()
                if found.get("scoring") != SCORING or any(r.get("quality") is None for r in found["raters"]):
                    return False
            return True

        wait_for(rescored, 60, "every old consensus rescored with rater quality")
        rows = master.http.get(f"/tasks/{task_id}/stats").json()["users"]
        assert all(row["quality_images"] == len(made["images"]) and 0 <= row["quality"] <= 1 for row in rows)
        coverage = master.http.get(f"/tasks/{task_id}/coverage").json()
        assert all(row["submissions"] == 2 and row["complete"] for row in coverage)
        export = master.http.get(f"/exports/{made['export_id']}").json()
        assert export["status"] == "done"
        bundle = master.http.get(f"/exports/{made['export_id']}/download")
        assert bundle.status_code == 200
        assert "manifest.json" in zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()
        annotators = [Api.login(server.url, email, made["password"]) for email in made["annotators"]]
        for annotator in annotators:
            own = annotator.http.get("/me/stats")
            assert own.status_code == 200, own.text
            assert annotator.http.get(f"/tasks/{task_id}/next").status_code == 204  # all of theirs are done

        # ... and it still works: a new image, annotated by a new annotator and an old one, gets consensus.
        upload = master.http.post(
            f"/tasks/{task_id}/images", files=[("files", ("ellipse-9.png", make_data_dir.image_png(1), "image/png"))]
        )
        assert upload.status_code == 202, upload.text
        newcomer = Api.sign_up(server.url, "newcomer@upgrade.crowdseg", "Newcomer")
        for api in (newcomer, annotators[0]):
            work = api.http.get(f"/tasks/{task_id}/next")
            assert work.status_code == 200, work.text
            submission = {
                "id": uuid.uuid4().hex,
                "image_id": work.json()["image"]["id"],
                "duration_ms": 15_000,
                "shapes": [{"type": "contour", "points": make_data_dir.outline(1)}],
            }
            assert api.http.post(f"/tasks/{task_id}/submissions", json=submission).status_code == 201
        new_id = upload.json()["accepted"][0]["id"]

        def fused() -> bool:
            found = master.http.get(f"/images/{new_id}/consensus")
            return found.status_code == 200 and found.json()["submissions"] == 2

        wait_for(fused, 120, "consensus on the image added after the upgrade")
        stats = master.http.get(f"/tasks/{task_id}/stats").json()
        assert (stats["images"], stats["complete"], stats["submissions"]) == (4, 4, 8)
        assert stats["coverage"]["2"] == 4
    finally:
        server.stop()
    assert recorded_schema(data) == {"schema.version": str(SCHEMA_VERSION), "schema.written_by": __version__}
    assert f"to schema {SCHEMA_VERSION}" in server.log_path.read_text()
    # a second start finds the current schema and upgrades nothing
    logged = server.log_path.read_text().count("upgrading")
    EmbeddedServer(data, port=server.port).start().stop()
    assert server.log_path.read_text().count("upgrading") == logged


def test_a_data_directory_newer_than_the_code_is_refused_with_one_line(tmp_path: Path) -> None:
    import subprocess

    from tests.embedded import CROWDSEG

    data, _ = unpack(PREVIOUS_RELEASE, tmp_path)
    with sqlite3.connect(data / "crowdseg.sqlite3") as db:
        db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("schema.version", str(SCHEMA_VERSION + 1)), ("schema.written_by", "99.0.0")],
        )
    before = dump(data)
    result = subprocess.run(
        [str(CROWDSEG), "up", "--data", str(data), "--port", "1"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"holds schema version {SCHEMA_VERSION + 1} (written by crowdseg 99.0.0)" in result.stderr
    assert "upgrade crowdseg" in result.stderr
    assert dump(data) == before  # every table, index, trigger and row as it was
