"""What the export bundle holds for stacks (images with ``frames > 1``).

- ``masks/<image>.nii.gz``: the consensus volume (NIfTI-1, voxels 0/1, the image's spacing and affine);
  ``consensus/<image>/probability.nii.gz`` its posterior probability (0–255).
- COCO: one COCO image per frame, ``file_name`` ``<image name>#frame=007`` (the frame, 0-based, three
  digits or as many as the stack needs) and ``coco_url`` the frame's rendition, ``.../file?frame=7``.
- ``tracks/<image>.csv`` (point and polyline tasks): ``frame, x, y, track_id, support``, one row per
  consensus point (a polyline by its centroid), pixels, frames 0-based; what FIJI's TrackMate CSV
  importer reads (X, Y and frame mandatory, a track column optional; headless:
  ``--frameCol=0 --xCol=1 --yCol=2``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from crowdseg.domain import Consensus, Image
from crowdseg.spreadsheets import csv_bytes
from crowdseg.volumes import is_stack

TRACK_COLUMNS = ["frame", "x", "y", "track_id", "support"]


def frame_name(image: Image, frame: int) -> str:
    digits = max(3, len(str(image.frames - 1)))
    return f"{image.name}#frame={frame:0{digits}d}"


def coco_image_ids(images: list[Image]) -> dict[str, list[int]]:
    """COCO image ids: one per plain image (1, 2, ... as before stacks), one per frame of a stack."""
    ids: dict[str, list[int]] = {}
    next_id = 1
    for image in images:
        ids[image.id] = list(range(next_id, next_id + image.frames))
        next_id += image.frames
    return ids


def coco_images(image: Image, ids: list[int], url: str) -> list[dict[str, Any]]:
    base = {"width": image.width, "height": image.height, "crowdseg_id": image.id}
    if not is_stack(image):
        return [{"id": ids[0], "file_name": image.name, "coco_url": url, **base}]
    return [
        {
            "id": number,
            "file_name": frame_name(image, frame),
            "coco_url": f"{url}?frame={frame}",
            "frame": frame,
            **base,
        }
        for frame, number in enumerate(ids)
    ]


def coco_id(ids: list[int], frame: int | None) -> int:
    return ids[frame or 0] if (frame or 0) < len(ids) else ids[0]


def tracks_csv(consensus: Consensus) -> bytes | None:
    """The consensus points (or polyline centroids) with their frame and track; None without any."""
    rows = [
        {"frame": p["frame"], "x": p["x"], "y": p["y"], "track_id": p.get("track"), "support": p.get("support")}
        for p in consensus.points or []
        if "frame" in p
    ]
    for line in consensus.lines or []:
        if "frame" in line:
            x, y = np.asarray(line["points"], dtype=np.float64).reshape(-1, 2).mean(axis=0)
            rows.append(
                {
                    "frame": line["frame"],
                    "x": round(float(x), 3),
                    "y": round(float(y), 3),
                    "track_id": line.get("track"),
                    "support": line.get("support"),
                }
            )
    if not rows:
        return None
    rows.sort(key=lambda row: (row["track_id"] or 0, row["frame"]))
    return csv_bytes(rows, TRACK_COLUMNS)
