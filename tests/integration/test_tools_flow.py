"""The non-contour tools end to end over the real embedded platform: ``point``, ``polyline``, ``polygon``.

For each tool a task master creates a task (5 replicates) and uploads two synthetic images with known
truth; five annotators (one bad) loop ``next`` → ``submissions``; the consensus of every image is
compared with the truth (points: the true cell centres; lines: the top half of the true outline;
polygons: the true outline and a small round cell), the bad annotator ranks last by precision and
recall, and the export's COCO consensus and per-image consensus.json hold the fused objects.
"""

from __future__ import annotations

import json
import math
import uuid
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from crowdseg.consensus.lines import line_distance, resample_polyline
from crowdseg.simulation import SyntheticImage, careful_clicks, careful_outline, sloppy_outline, synthetic_image
from shapely.geometry import Polygon

from tests.embedded import Api, export_bundle, wait_for

pytestmark = pytest.mark.integration

REPLICATES = 5
ANNOTATORS = 5  # the last one is bad
IMAGES = 2
CELL_RADIUS = 5.0  # the synthetic cells are discs of radius 5
Point = tuple[float, float]


def top_half(outline: list[Point]) -> list[Point]:
    """The part of the outline above its centre (y down), as an open line from one end to the other."""
    n = len(outline)  # blob_outline's vertices run by angle from 0 to 2π: the top half is angles π..2π
    return [outline[i % n] for i in range(n // 2, n + 1)]


def circle(centre: Point, radius: float, vertices: int = 16) -> list[Point]:
    cx, cy = centre
    return [
        (cx + radius * math.cos(2 * math.pi * k / vertices), cy + radius * math.sin(2 * math.pi * k / vertices))
        for k in range(vertices)
    ]


def noisy(points: list[Point], rng: np.random.Generator, sigma: float) -> list[list[float]]:
    return [[float(x + rng.normal(0, sigma)), float(y + rng.normal(0, sigma))] for x, y in points]


def random_points(rng: np.random.Generator, count: int, image: SyntheticImage) -> list[list[float]]:
    return [[float(rng.uniform(0, image.width)), float(rng.uniform(0, image.height))] for _ in range(count)]


def shapes_for(tool: str, image: SyntheticImage, rng: np.random.Generator, bad: bool) -> list[dict[str, Any]]:
    """What one simulated annotator draws on one image with this tool."""
    if tool == "point":
        clicks = random_points(rng, len(image.cells), image) if bad else careful_clicks(image.cells, rng)
        return [{"type": "point", "points": [list(click)]} for click in clicks]
    if tool == "polyline":
        if bad:  # a line somewhere else entirely
            return [{"type": "polyline", "points": random_points(rng, 3, image)}]
        line = noisy(top_half(image.outline), rng, 1.0)
        return [{"type": "polyline", "points": line[::-1] if rng.random() < 0.5 else line}]
    if bad:  # a shrunken, shifted outline and no cell
        return [{"type": "polygon", "points": [list(p) for p in sloppy_outline(image.outline, rng)]}]
    return [
        {"type": "polygon", "points": [list(p) for p in careful_outline(image.outline, rng, noise=1.0)]},
        {"type": "polygon", "points": noisy(circle(image.cells[0], CELL_RADIUS), rng, 0.4)},
    ]


def annotate_until_done(
    api: Api, task_id: str, truth: dict[str, SyntheticImage], tool: str, bad: bool, seed: int
) -> int:
    rng = np.random.default_rng(seed)
    done = 0
    while (response := api.http.get(f"/tasks/{task_id}/next")).status_code == 200:
        image = response.json()["image"]
        submission = {
            "id": str(uuid.uuid4()),
            "image_id": image["id"],
            "duration_ms": int(rng.integers(5_000, 30_000)),
            "shapes": shapes_for(tool, truth[image["name"]], rng, bad),
        }
        stored = api.http.post(f"/tasks/{task_id}/submissions", json=submission)
        assert stored.status_code == 201, stored.text
        done += 1
    assert response.status_code == 204, response.text
    return done


def matched(found: list[Point], truth: list[Point], within: float) -> int:
    """Greedy one-to-one matches of found to true points closer than ``within``."""
    left = list(truth)
    hits = 0
    for point in found:
        if not left:
            break
        nearest = min(left, key=lambda t: math.dist(point, t))
        if math.dist(point, nearest) <= within:
            left.remove(nearest)
            hits += 1
    return hits


def iou(a: list[Point], b: list[Point]) -> float:
    first, second = Polygon(a).buffer(0), Polygon(b).buffer(0)
    return float(first.intersection(second).area / first.union(second).area)


def check_against_truth(tool: str, consensus: dict[str, Any], image: SyntheticImage) -> None:
    if tool == "point":
        centres = [(p["x"], p["y"]) for p in consensus["points"]]
        hits = matched(centres, image.cells, within=3.0)
        assert hits / len(centres) >= 0.9, (centres, image.cells)  # precision
        assert hits / len(image.cells) >= 0.9, (centres, image.cells)  # recall
        assert all(p["support"] >= REPLICATES - 1 for p in consensus["points"])
    elif tool == "polyline":
        [line] = consensus["lines"]
        truth = resample_polyline(np.asarray(top_half(image.outline)))
        assert line_distance(resample_polyline(np.asarray(line["points"])), truth) < 2.0
        assert line["support"] == ANNOTATORS - 1
    else:
        polygons = [[(x, y) for x, y in p["points"]] for p in consensus["polygons"]]
        assert len(polygons) == 2, consensus["polygons"]
        big = max(polygons, key=lambda p: Polygon(p).area)
        small = min(polygons, key=lambda p: Polygon(p).area)
        assert iou(big, image.outline) > 0.9
        assert iou(small, circle(image.cells[0], CELL_RADIUS, 64)) > 0.6
        # the bad outline overlaps the object by about the grouping IoU (0.3): it may or may not count
        assert all(p["support"] >= ANNOTATORS - 1 for p in consensus["polygons"])
        assert consensus["mask_url"].endswith("/consensus/mask.png")


def check_ranking(consensus: dict[str, Any], bad_user: str) -> None:
    """Every rater has precision and recall; the bad annotator's are the lowest of all."""
    raters = {r["user_id"]: r for r in consensus["raters"]}
    assert len(raters) == ANNOTATORS
    for rater in raters.values():
        assert rater["precision"] is not None and rater["recall"] is not None, rater
    score = {user: r["precision"] + r["recall"] for user, r in raters.items()}
    good = [s for user, s in score.items() if user != bad_user]
    assert score[bad_user] < min(good), score
    assert min(good) >= 1.8, score


def check_export(
    tool: str, archive: zipfile.ZipFile, consensus: dict[str, dict[str, Any]], names: dict[str, str]
) -> None:
    coco = json.loads(archive.read("coco/consensus.json"))
    numbers = {image["crowdseg_id"]: image["id"] for image in coco["images"]}
    assert set(numbers) == set(consensus)
    for image_id, found in consensus.items():
        stored = json.loads(archive.read(f"consensus/{names[image_id]}/consensus.json"))
        assert stored["submissions"] == REPLICATES
        entries = [a for a in coco["annotations"] if a["image_id"] == numbers[image_id]]
        if tool == "point":
            assert stored["points"] == found["points"]
            keypoints = sorted(tuple(a["keypoints"][:2]) for a in entries)
            assert keypoints == sorted((round(p["x"], 2), round(p["y"], 2)) for p in found["points"])
        elif tool == "polyline":
            assert stored["lines"] == found["lines"]
            lines = [a for a in entries if "length" in a]
            assert len(lines) == len(found["lines"]) == len(entries)
            for entry, line in zip(lines, found["lines"], strict=True):
                assert len(entry["segmentation"][0]) == 2 * len(line["points"])
                assert entry["length"] > 0 and entry["support"] == line["support"] and entry["raters"] == REPLICATES
                assert entry["bbox"][2] > 0 and entry["bbox"][3] > 0
        else:
            assert stored["polygons"] == found["polygons"]
            masks = [a for a in entries if isinstance(a["segmentation"], dict)]
            polygons = [a for a in entries if isinstance(a["segmentation"], list)]
            # the pixel consensus, the union of the object polygons: a crowd region (issue 9: a contour
            # task's mask, alone, is an object)
            assert len(masks) == 1 and masks[0]["iscrowd"] == 1
            assert len(polygons) == len(found["polygons"]) == 2
            for entry, polygon in zip(polygons, found["polygons"], strict=True):
                assert len(entry["segmentation"][0]) == 2 * len(polygon["points"])
                assert entry["area"] == pytest.approx(Polygon(polygon["points"]).area)
                assert entry["support"] == polygon["support"] and entry["raters"] == REPLICATES


@pytest.mark.parametrize("tool", ["point", "polyline", "polygon"])
def test_tool_consensus_matches_the_truth_and_exports_to_coco(
    tool: str, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    created = taskmaster.http.post(
        "/tasks",
        json={
            "title": f"Synthetic {tool}s",
            "instructions": f"Draw the {tool}s.",
            "tool": tool,
            "replicates": REPLICATES,
            "order": "name_asc",
            "visibility": "private",  # other tests' annotators on the shared platform never take its images
        },
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    images = [synthetic_image(i, seed=23) for i in range(IMAGES)]
    truth = {image.name: image for image in images}
    upload = taskmaster.http.post(
        f"/tasks/{task_id}/images", files=[("files", (image.name, image.png, "image/png")) for image in images]
    )
    assert upload.status_code == 202, upload.text
    assert upload.json()["rejected"] == []
    names = {image["id"]: image["name"] for image in taskmaster.http.get(f"/tasks/{task_id}/images").json()}
    assert sorted(names.values()) == sorted(truth)

    annotators = [annotator_factory() for _ in range(ANNOTATORS)]
    for annotator in annotators:
        added = taskmaster.http.post(f"/tasks/{task_id}/members", json={"user_id": annotator.user["id"]})
        assert added.status_code in (200, 201, 204), added.text
    for n, annotator in enumerate(annotators):
        bad = n == ANNOTATORS - 1
        assert annotate_until_done(annotator, task_id, truth, tool, bad, seed=100 + n) == IMAGES
    bad_user = str(annotators[-1].user["id"])

    def settled() -> dict[str, dict[str, Any]] | None:
        found = {}
        for image_id in names:
            response = taskmaster.http.get(f"/images/{image_id}/consensus")
            if response.status_code != 200 or response.json()["submissions"] != REPLICATES:
                return None
            found[image_id] = response.json()
        return found

    consensus: dict[str, dict[str, Any]] = wait_for(settled, 120, "the consensus of every image over 5 submissions")
    for image_id, found in consensus.items():
        check_against_truth(tool, found, truth[names[image_id]])
        check_ranking(found, bad_user)

    stats = taskmaster.http.get(f"/tasks/{task_id}/stats").json()
    quality = {user["user_id"]: user["quality"] for user in stats["users"]}
    assert quality[bad_user] is not None
    assert quality[bad_user] < min(q for user, q in quality.items() if user != bad_user), quality

    archive = export_bundle(taskmaster, task_id)
    check_export(tool, archive, consensus, names)
