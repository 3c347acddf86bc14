"""The export bundle: everything a task produced, as one ZIP for machine-learning pipelines.

Layout (also described in the bundle's manifest.json):
  manifest.json                      what is inside, counts, format versions
  task.json                          the task
  tables/{tasks,images,submissions,users}.{json,csv}   (users without password hashes or emails)
  submissions/<image>/<submission>.json|.png           vertices and rasterised mask
  consensus/<image>/consensus.json|mask.png|probability.png
  consensus/<image>/labels.png, labels/<label>.png   labelled mask tasks: label indices, each label's mask
  staple_parameters.csv              per image and rater: sensitivity, specificity, prior, quality
  user_performance.csv               per user over the task (quality, its images, flagged)
  quality.md                         what every number of the performance tables means
  evaluation.json                    the consensus and every rater against the expert references
  references/<image>.json            the expert reference shapes of every image that has them
  coco/annotations.json, coco/consensus.json          COCO (raw annotations, consensus); images are not
                                     bundled: each COCO image's coco_url is its path on the API; a
                                     labelled task's categories are its labels (ids 1..n, in order)
  masks/<image>.nii.gz, tracks/<image>.csv            stacks: the consensus volume, the tracks of points
                                     and lines; COCO has one image per frame (crowdseg.services.export.stacks)
  masks/<image>.seg.dcm, consensus/<image>/seg.dcm    DICOM uploads (stack, plain): the consensus as a
                                     DICOM SEG referencing the source instances (crowdseg.dicom_seg)
"""

from __future__ import annotations

import json
import unicodedata
import zipfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from crowdseg.dicom_seg import SegUnavailable, consensus_seg_bytes
from crowdseg.domain import Consensus, Image, Submission, Task, Tool, User
from crowdseg.errors import NotFound
from crowdseg.geometry import mask_to_png, png_to_mask, rasterize
from crowdseg.ports import BlobStore, Store
from crowdseg.services.export import stacks
from crowdseg.spreadsheets import csv_bytes
from crowdseg.volumes import is_stack, nifti_volume
from pathvalidate import sanitize_filename
from shapely.geometry import LineString, Polygon

FORMAT_VERSION = 1
IMAGES_NOTE = (
    "The images themselves are not in the bundle. Each image's file_name (COCO) and name (tables) is the"
    " name it was uploaded as; its coco_url is the path of the image on the crowdseg API, relative to the"
    " server (GET with the same bearer token as the export), the rendition annotators outlined on."
)


def image_url(image: Image) -> str:
    return f"/api/v1/images/{image.id}/file"


Progress = Callable[[float], Awaitable[None]]


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    return csv_bytes(rows, columns)


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=str).encode()


def _safe(name: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in unicodedata.normalize("NFC", name))[:120]
    # Valid on Windows too: no reserved device name (CON, NUL, COM1...) and no trailing dot (issue 9).
    safe = sanitize_filename(safe, platform="windows", replacement_text="_")
    # "." and ".." are path components, not folder names: an image called ".." must not escape its folder.
    return safe if safe.strip(".") else "image"


def _folder_key(folder: str) -> str:
    """Names that one file system holds as one (``dup.png``, ``DUP.png`` on Windows and macOS)."""
    return unicodedata.normalize("NFKC", folder).casefold()


def image_folders(images: list[Image]) -> dict[str, str]:
    """A distinct folder name per image: names that sanitise alike (``a/b.png``, ``a_b.png``), differ only
    by case (issue 9: they overwrote each other when extracted on Windows or macOS) or repeat across
    uploads get the image id appended, so no entry of the bundle overwrites another."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for image in images:
        folder = _safe(image.name)
        if _folder_key(folder) in taken:
            folder = f"{folder}-{image.id}"
        number = 1
        while _folder_key(folder) in taken:  # the name with the id is someone's own name
            number += 1
            folder = f"{_safe(image.name)}-{image.id}-{number}"
        taken.add(_folder_key(folder))
        folders[image.id] = folder
    return folders


def rle(mask: np.ndarray[Any, Any]) -> dict[str, Any]:
    """COCO's uncompressed run-length encoding (column-major, starting with a background run)."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _coco_mask(
    annotation_id: int, image_number: int, mask: np.ndarray[Any, Any], category: int, iscrowd: int
) -> dict[str, Any]:
    rows, cols = np.nonzero(mask)
    bbox = (
        [0, 0, 0, 0]
        if rows.size == 0
        else [int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)]
    )
    return {
        "id": annotation_id,
        "image_id": image_number,
        "category_id": category,
        "iscrowd": iscrowd,
        "segmentation": rle(mask),
        "area": int(mask.sum()),
        "bbox": bbox,
    }


def _coco_shape(
    annotation_id: int, image_number: int, tool: Tool, points: list[tuple[float, float]], category: int = 1
) -> dict[str, Any]:
    flat = [round(c, 2) for point in points for c in point]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    entry: dict[str, Any] = {
        "id": annotation_id,
        "image_id": image_number,
        "category_id": category,
        "iscrowd": 0,
        "bbox": bbox,
    }
    if tool is Tool.POINT:
        entry.update(segmentation=[], area=0.0, keypoints=[*flat, 2], num_keypoints=1)
    elif tool is Tool.POLYLINE:
        entry.update(segmentation=[flat], area=0.0, length=LineString(points).length)
    else:
        entry.update(segmentation=[flat], area=float(Polygon(points).area))
    return entry


class BundleWriter:
    """Writes the bundle image by image, reporting progress as it goes."""

    def __init__(self, store: Store, blobs: BlobStore, task: Task, target: Path, progress: Progress) -> None:
        self.store, self.blobs, self.task, self.target, self.progress = store, blobs, task, target, progress
        self.files: list[str] = []
        self._taken: set[str] = set()
        self.staple_rows: list[dict[str, Any]] = []
        self.coco_raw: list[dict[str, Any]] = []
        self.coco_consensus: list[dict[str, Any]] = []
        self.consensus_images = 0
        self.folders: dict[str, str] = {}
        self.coco_ids: dict[str, list[int]] = {}
        self.seg_unavailable: dict[str, str] = {}

    def add(self, archive: zipfile.ZipFile, name: str, data: bytes) -> str:
        """Write one entry; a name that only case tells from an earlier one (client-chosen submission
        ids ``abcdefgh`` and ``ABCDEFGH``) gets ``~2``, ``~3``... so extraction anywhere keeps both."""
        path, number = PurePosixPath(name), 1
        while _folder_key(name) in self._taken:
            number += 1
            name = str(path.with_name(f"{path.stem}~{number}{path.suffix}"))
        self._taken.add(_folder_key(name))
        archive.writestr(name, data)
        self.files.append(name)
        return name

    async def write(self) -> None:
        task, store = self.task, self.store
        images = await store.images.list_for_task(task.id, tutorial=None)
        submissions = await store.submissions.list_for_task(task.id)
        users = {user.id: user for user in await store.users.all()}
        by_image: dict[str, list[Submission]] = {}
        for submission in submissions:
            by_image.setdefault(submission.image_id, []).append(submission)
        self.folders = image_folders(images)
        self.coco_ids = stacks.coco_image_ids(images)
        with zipfile.ZipFile(self.target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            self.add(archive, "task.json", _json(task.model_dump(mode="json")))
            for number, image in enumerate(images, start=1):
                await self._image(archive, image, by_image.get(image.id, []))
                await self.progress(0.05 + 0.9 * number / max(1, len(images)))
            await self._tables(archive, images, submissions, users)
            self._coco(archive, images)
            self.add(archive, "manifest.json", self._manifest(images, submissions))

    async def _image(self, archive: zipfile.ZipFile, image: Image, subs: list[Submission]) -> None:
        folder = self.folders[image.id]
        for submission in subs:
            base = f"submissions/{folder}/{submission.id}"
            self.add(archive, f"{base}.json", _json(submission.model_dump(mode="json", exclude={"outbox"})))
            mask = await self._rater_mask(image, submission)
            if mask is not None:
                self.add(archive, f"{base}.png", mask)
            for shape in submission.shapes:
                category = self._category(shape.label)
                coco_image = stacks.coco_id(self.coco_ids[image.id], shape.frame)
                entry = _coco_shape(len(self.coco_raw) + 1, coco_image, self.task.tool, shape.points, category)
                self.coco_raw.append({**entry, "user_id": submission.user_id, "submission_id": submission.id})
        consensus = await self.store.consensus.get(image.id)
        if consensus is not None:
            await self._consensus(archive, image, consensus)

    async def _rater_mask(self, image: Image, submission: Submission) -> bytes | None:
        """The rater's mask as PNG (mask tools on plain images): rasterised from the stored shapes, as
        the consensus does; a submission stored with a mask blob (by 0.2.0 and earlier) keeps that one."""
        if submission.mask_key:
            return await self.blobs.get(submission.mask_key)
        if not self.task.tool.makes_masks or is_stack(image):
            return None
        return mask_to_png(rasterize(submission.shapes, image.width, image.height))

    async def _consensus(self, archive: zipfile.ZipFile, image: Image, consensus: Consensus) -> None:
        folder = f"consensus/{self.folders[image.id]}"
        self.consensus_images += 1
        self.add(archive, f"{folder}/consensus.json", _json(consensus.model_dump(mode="json", exclude={"outbox"})))
        for rater in consensus.raters:
            self.staple_rows.append(
                {
                    "image_id": image.id,
                    "image_name": image.name,
                    "user_id": rater.user_id,
                    "submission_id": rater.submission_id,
                    "sensitivity": rater.sensitivity,
                    "specificity": rater.specificity,
                    "precision": rater.precision,
                    "recall": rater.recall,
                    "quality": rater.quality,
                    "quality_basis": rater.quality_basis,
                    "excluded": rater.excluded,
                    "prior": consensus.prior,
                    "method": consensus.method,
                    "version": consensus.version,
                }
            )
        ids = self.coco_ids[image.id]
        if consensus.mask_key and image.source_format == "DICOM":
            seg_path = f"masks/{self.folders[image.id]}.seg.dcm" if is_stack(image) else f"{folder}/seg.dcm"
            await self._seg(archive, seg_path, image, consensus)
        if consensus.mask_key and consensus.probability_key and is_stack(image):
            await self._volume(archive, image, consensus.mask_key, consensus.probability_key, bool(consensus.labels))
        elif consensus.mask_key and consensus.probability_key:
            mask_png = await self.blobs.get(consensus.mask_key)
            self.add(archive, f"{folder}/mask.png", mask_png)
            self.add(archive, f"{folder}/probability.png", await self.blobs.get(consensus.probability_key))
            if not consensus.labels:
                self._coco_mask(ids[0], png_to_mask(mask_png), crowd=bool(consensus.polygons))
        if consensus.labels and is_stack(image) and consensus.label_map_key:
            await self._label_volumes(archive, image, folder, consensus)
            return
        if consensus.labels and not is_stack(image):
            await self._label_consensus(archive, folder, ids[0], consensus)
            return
        for point in consensus.points or []:
            coco_image = stacks.coco_id(ids, point.get("frame"))
            entry = _coco_shape(len(self.coco_consensus) + 1, coco_image, Tool.POINT, [(point["x"], point["y"])])
            self.coco_consensus.append({**entry, "support": point.get("support")})
        # Fused lines and object polygons: one entry each, as the raw annotations of their tool
        # (flat segmentation, bbox, length or area), with the raters behind them.
        for tool, objects in ((Tool.POLYLINE, consensus.lines), (Tool.POLYGON, consensus.polygons)):
            for fused in objects or []:
                points = [(float(x), float(y)) for x, y in fused["points"]]
                if len(points) < tool.min_points:
                    continue
                coco_image = stacks.coco_id(ids, fused.get("frame"))
                entry = _coco_shape(len(self.coco_consensus) + 1, coco_image, tool, points)
                self.coco_consensus.append({**entry, "support": fused.get("support"), "raters": consensus.submissions})
        tracks = stacks.tracks_csv(consensus) if is_stack(image) else None
        if tracks is not None:
            self.add(archive, f"tracks/{self.folders[image.id]}.csv", tracks)

    def _coco_mask(self, coco_image: int, mask: np.ndarray[Any, Any], *, crowd: bool, category: int = 1) -> None:
        # An object, which COCOeval scores (issue 9: as iscrowd 1 it ignored every consensus mask) —
        # unless the image's object polygons are listed too: then the mask is their union, a crowd
        # region beside them that must not count as one more object.
        entry = _coco_mask(len(self.coco_consensus) + 1, coco_image, mask, category, 1 if crowd else 0)
        self.coco_consensus.append(entry)

    async def _seg(self, archive: zipfile.ZipFile, path: str, image: Image, consensus: Consensus) -> None:
        """The consensus as a DICOM SEG; a source it cannot reference is listed in the manifest instead."""
        try:
            self.add(archive, path, await consensus_seg_bytes(self.blobs, image, consensus))
        except SegUnavailable as exc:
            self.seg_unavailable[image.name] = exc.reason

    async def _volume(
        self, archive: zipfile.ZipFile, image: Image, mask_key: str, probability_key: str, labelled: bool
    ) -> None:
        """A stack's consensus: the volume, its probability, and (unless the task has labels, whose
        volumes give them per label) COCO masks of the frames with foreground."""
        volume = await self.blobs.get(mask_key)
        self.add(archive, f"masks/{self.folders[image.id]}.nii.gz", volume)
        self.add(
            archive, f"consensus/{self.folders[image.id]}/probability.nii.gz", await self.blobs.get(probability_key)
        )
        if not labelled:
            self._coco_volume(image, volume)

    def _coco_volume(self, image: Image, volume: bytes, category: int = 1) -> None:
        for frame, mask in enumerate(nifti_volume(volume) > 0):
            if mask.any():
                self._coco_mask(self.coco_ids[image.id][frame], mask, crowd=False, category=category)

    async def _label_volumes(self, archive: zipfile.ZipFile, image: Image, folder: str, consensus: Consensus) -> None:
        """A labelled stack's consensus: ``labels.nii.gz`` (voxels the label indices), one volume per
        label (0/1) and the label's COCO masks frame by frame."""
        self.add(archive, f"{folder}/labels.nii.gz", await self.blobs.get(consensus.label_map_key or ""))
        for name, key in (consensus.label_mask_keys or {}).items():
            volume = await self.blobs.get(key)
            self.add(archive, f"{folder}/labels/{_safe(name)}.nii.gz", volume)
            self._coco_volume(image, volume, self._category(name))

    def _category(self, label: str | None) -> int:
        """The COCO category of a shape: its label's 1-based index, or the one category of an unlabelled task."""
        names = self.task.label_names
        return names.index(label) + 1 if label in names else 1

    async def _label_consensus(self, archive: zipfile.ZipFile, folder: str, number: int, consensus: Consensus) -> None:
        """Per label: its mask (``labels.png`` holds the label indices) and its COCO objects."""
        if consensus.label_map_key:
            self.add(archive, f"{folder}/labels.png", await self.blobs.get(consensus.label_map_key))
        for name, key in (consensus.label_mask_keys or {}).items():
            mask_png = await self.blobs.get(key)
            self.add(archive, f"{folder}/labels/{_safe(name)}.png", mask_png)
            self._coco_mask(number, png_to_mask(mask_png), crowd=False, category=self._category(name))
        for entry in consensus.labels or []:
            category = self._category(entry["label"])
            for point in entry.get("points", []):
                click = [(point["x"], point["y"])]
                shape = _coco_shape(len(self.coco_consensus) + 1, number, Tool.POINT, click, category)
                self.coco_consensus.append({**shape, "support": point.get("support")})
            for line in entry.get("lines", []):
                points = [(float(x), float(y)) for x, y in line["points"]]
                if len(points) >= Tool.POLYLINE.min_points:
                    shape = _coco_shape(len(self.coco_consensus) + 1, number, Tool.POLYLINE, points, category)
                    support = {"support": line.get("support"), "raters": consensus.submissions}
                    self.coco_consensus.append({**shape, **support})

    async def _tables(
        self, archive: zipfile.ZipFile, images: list[Image], subs: list[Submission], users: dict[str, User]
    ) -> None:
        from crowdseg.services.consensus.handlers import evaluation, task_stats

        task_row = self.task.model_dump(mode="json")
        image_rows = [image.model_dump(mode="json", exclude={"outbox", "leases"}) for image in images]
        submission_rows = [_submission_row(s) for s in subs]
        involved = {s.user_id for s in subs} | {self.task.owner_id}
        user_rows = [
            {"id": u.id, "name": u.name, "roles": [r.value for r in u.roles]}
            for u in users.values()
            if u.id in involved
        ]
        for name, rows in (
            ("tasks", [task_row]),
            ("images", image_rows),
            ("submissions", submission_rows),
            ("users", user_rows),
        ):
            self.add(archive, f"tables/{name}.json", _json(rows))
            columns = list(rows[0]) if rows else ["id"]
            self.add(archive, f"tables/{name}.csv", _csv(rows, columns))
        staple_columns = [
            "image_id",
            "image_name",
            "user_id",
            "submission_id",
            "sensitivity",
            "specificity",
            "precision",
            "recall",
            "quality",
            "quality_basis",
            "excluded",
            "prior",
            "method",
            "version",
        ]
        self.add(archive, "staple_parameters.csv", _csv(self.staple_rows, staple_columns))
        stats = await task_stats(self.store, self.task)
        performance_columns = [
            "user_id",
            "name",
            "submissions",
            "sensitivity",
            "specificity",
            "quality",
            "quality_images",
            "flagged",
            "excluded",
            "mean_seconds",
        ]
        self.add(archive, "user_performance.csv", _csv(stats["users"], performance_columns))
        self.add(archive, "quality.md", QUALITY_NOTE.encode())
        self.add(archive, "evaluation.json", _json(await evaluation(self.store, self.blobs, self.task)))
        for image in images:
            if image.reference_shapes and not image.tutorial:
                reference = {
                    "image_id": image.id,
                    "name": image.name,
                    "version": image.reference_version,
                    "shapes": [shape.model_dump(mode="json") for shape in image.reference_shapes],
                }
                self.add(archive, f"references/{self.folders[image.id]}.json", _json(reference))

    def _coco(self, archive: zipfile.ZipFile, images: list[Image]) -> None:
        base = {
            "info": {
                "description": self.task.title,
                "version": str(FORMAT_VERSION),
                "date_created": datetime.now(UTC).isoformat(),
            },
            # file_name: the name the image was uploaded as (images are not bundled); a stack's frame by frame
            "images": [
                entry
                for image in images
                for entry in stacks.coco_images(image, self.coco_ids[image.id], image_url(image))
            ],
            "categories": self._categories(),
        }
        self.add(archive, "coco/annotations.json", _json({**base, "annotations": self.coco_raw}))
        self.add(archive, "coco/consensus.json", _json({**base, "annotations": self.coco_consensus}))

    def _categories(self) -> list[dict[str, Any]]:
        if not self.task.labels:
            return [{"id": 1, "name": self.task.title, "supercategory": self.task.tool.value}]
        return [
            {"id": i, "name": label.name, "supercategory": self.task.title, "color": label.color}
            for i, label in enumerate(self.task.labels, start=1)
        ]

    def _manifest(self, images: list[Image], subs: list[Submission]) -> bytes:
        return _json(
            {
                "format": "crowdseg-export",
                "format_version": FORMAT_VERSION,
                "task_id": self.task.id,
                "title": self.task.title,
                "tool": self.task.tool.value,
                "created_at": datetime.now(UTC).isoformat(),
                "counts": {"images": len(images), "submissions": len(subs), "consensus": self.consensus_images},
                "images": IMAGES_NOTE,
                "files": sorted(self.files),
                **({"seg_unavailable": self.seg_unavailable} if self.seg_unavailable else {}),
            }
        )


QUALITY_NOTE = """# What the performance numbers mean

- sensitivity: the share of the consensus foreground (pixels for masks, objects for points and lines)
  the rater marked too, pooled over every image they annotated.
- specificity (masks): the share of the consensus background the rater left unmarked, over the whole
  image (every pixel, not only where someone drew).
- quality: one number in 0–1 to sort raters by. Per image, the rater's agreement with the consensus of
  the other raters (the rater left out): Dice against the others' majority vote for masks, F1 of the
  matches within the task's radius for points and lines; on an image with an expert reference, the same
  agreement with the reference instead (`quality_basis` in staple_parameters.csv). Per user, the mean
  over `quality_images` images.
- flagged: quality below the task's crowd median minus 3 × MAD (scaled to a standard deviation, at
  least 0.05) with at least 5 images behind it.
"""


async def load_task(store: Store, task_id: str) -> Task:
    task = await store.tasks.get(task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def _submission_row(submission: Submission) -> dict[str, Any]:
    """A submission flat enough for CSV: its shape count, its review as four columns, and whether it
    is a gold answer (never in a consensus) with its score against the reference as three more."""
    row = submission.model_dump(mode="json", exclude={"outbox", "shapes", "review", "gold"})
    review, gold = submission.review, submission.gold
    return {
        **row,
        "shapes": len(submission.shapes),
        "review": None if review is None else review.decision,
        "review_reason": None if review is None else review.reason,
        "review_by": None if review is None else review.by,
        "review_at": None if review is None else review.at.isoformat(),
        "gold": gold is not None,
        "gold_metric": None if gold is None else gold.metric.value,
        "gold_score": None if gold is None else gold.score,
        "gold_quality": None if gold is None else gold.quality,
    }
