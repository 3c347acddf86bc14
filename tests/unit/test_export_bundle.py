"""Pure parts of the export bundle."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from crowdseg.domain import Consensus, Image, RaterScore, Task, Tool
from crowdseg.services.export.bundle import BundleWriter, image_folders, rle

pytestmark = pytest.mark.unit


def image(image_id: str, name: str) -> Image:
    return Image(
        id=image_id, task_id="t", name=name, width=1, height=1, source_format="png", original_key="o",
        display_key="d", display_media_type="image/png", thumbnail_key="t", thumbnail_media_type="image/png",
    )


def test_images_whose_names_sanitise_alike_get_distinct_folders() -> None:
    """Regression: `a/b.png` and `a_b.png` (or one name uploaded twice) shared one export folder, and the
    second image's submissions and consensus overwrote the first's entries in the ZIP."""
    folders = image_folders([image("1", "a/b.png"), image("2", "a_b.png"), image("3", "a/b.png"), image("4", "c.png")])
    assert len(set(folders.values())) == 4
    assert folders["1"] == "a_b.png" and folders["4"] == "c.png"


def test_rle_is_column_major_and_starts_with_a_background_run() -> None:
    mask = np.array([[1, 0], [1, 1]], dtype=bool)
    assert rle(mask) == {"counts": [0, 2, 1, 1], "size": [2, 2]}


def object_consensus(tool: Tool, **objects: object) -> Consensus:
    raters = [RaterScore(user_id=f"u{i}", submission_id=f"s{i}", precision=1.0, recall=1.0) for i in range(3)]
    return Consensus(
        image_id="1", task_id="t", version=3, submissions=3, submission_ids=["s0", "s1", "s2"],
        method="fusion", tool=tool, raters=raters, **objects,
    )


def coco_consensus_of(tool: Tool, consensus: Consensus, tmp_path: Path) -> list[dict[str, object]]:
    writer = BundleWriter(None, None, Task(owner_id="o", title="T", tool=tool), tmp_path / "x.zip", None)  # type: ignore[arg-type]
    writer.folders, writer.coco_ids = {"1": "one.png"}, {"1": [1]}
    with zipfile.ZipFile(io.BytesIO(), "w") as archive:
        asyncio.run(writer._consensus(archive, image("1", "one.png"), consensus))
        assert json.loads(archive.read("consensus/one.png/consensus.json"))["submissions"] == 3
    return writer.coco_consensus


def test_coco_consensus_has_the_fused_lines_and_polygons(tmp_path: Path) -> None:
    """Regression: coco/consensus.json held entries for consensus points and masks only; the fused
    lines of polyline tasks and the object polygons of polygon tasks were missing from it."""
    lines = object_consensus(Tool.POLYLINE, lines=[{"points": [[0, 0], [3, 4], [3, 10]], "support": 3}])
    [line] = coco_consensus_of(Tool.POLYLINE, lines, tmp_path)
    assert line["segmentation"] == [[0, 0, 3, 4, 3, 10]] and line["bbox"] == [0, 0, 3, 10]
    assert line["length"] == pytest.approx(11.0) and line["area"] == 0.0
    assert line["support"] == 3 and line["raters"] == 3 and line["image_id"] == 1 and line["id"] == 1

    square = [[10, 10], [20, 10], [20, 20], [10, 20]]
    polygons = object_consensus(
        Tool.POLYGON, polygons=[{"points": square, "support": 2}, {"points": [[0, 0], [1, 1]], "support": 2}]
    )
    [polygon] = coco_consensus_of(Tool.POLYGON, polygons, tmp_path)  # a degenerate ring is skipped
    assert polygon["segmentation"] == [[10, 10, 20, 10, 20, 20, 10, 20]] and polygon["bbox"] == [10, 10, 10, 10]
    assert polygon["area"] == pytest.approx(100.0) and polygon["support"] == 2 and polygon["raters"] == 3

    points = object_consensus(Tool.POINT, points=[{"x": 5.0, "y": 6.0, "support": 3}])
    [point] = coco_consensus_of(Tool.POINT, points, tmp_path)
    assert point["keypoints"] == [5.0, 6.0, 2] and point["support"] == 3


def test_folders_are_unique_without_case_and_valid_on_windows() -> None:
    """issue 9 item 3: `dup.png`, `DUP.png` and `Dup.PNG` became three folders that overwrite each other
    when the ZIP is extracted on Windows or macOS, and `CON.png` or a trailing dot were kept as folder
    names; folders are now unique case-insensitively and valid Windows names."""
    from pathvalidate import validate_filename

    names = ["dup.png", "DUP.png", "Dup.PNG", "CON.png", "nul", "lpt1.tif", "trail.png.", "a.", "Straße", "STRASSE"]
    folders = image_folders([image(str(n), name) for n, name in enumerate(names)])
    assert len({folder.casefold() for folder in folders.values()}) == len(names)
    for folder in folders.values():
        validate_filename(folder, platform="windows")
    assert folders["0"] == "dup.png" and folders["1"] == "DUP.png-1"
    # a name that is another image's name plus its id still gets a folder of its own
    clash = image_folders([image("x", "a.png"), image("y", "a.png-x"), image("x2", "a.png")])
    assert len({folder.casefold() for folder in clash.values()}) == 3


def test_entries_that_differ_only_by_case_are_kept_apart(tmp_path: Path) -> None:
    """issue 9 item 3: submission ids are the client's (`abcdefgh`, `ABCDEFGH`), so their files could
    differ only by case too; the later one gets `~2`."""
    writer = BundleWriter(None, None, Task(owner_id="o", title="T", tool=Tool.CONTOUR), tmp_path / "x.zip", None)  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(), "w") as archive:
        names = ("s/abcdefgh.json", "s/ABCDEFGH.json", "s/AbcdefgH.json")
        written = [writer.add(archive, name, b"x") for name in names]
    assert written == ["s/abcdefgh.json", "s/ABCDEFGH~2.json", "s/AbcdefgH~3.json"]


@pytest.mark.parametrize("cell", ["=cmd|'/C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_that_would_run_as_formulas_are_escaped(cell: str) -> None:
    """issue 9 item 5: image names and display names went raw into the export's CSV files; a cell
    beginning with = + - @ tab or CR now starts with an apostrophe (OWASP's rule); numbers stay numbers."""
    from crowdseg.services.export.bundle import _csv

    rows = [{"name": cell, "score": -0.5, "roles": ["annotator"]}]
    text = _csv(rows, ["name", "score", "roles"]).decode()
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[1] == [f"'{cell}", "-0.5", '["annotator"]']
