"""Shapes as annotators draw them: validation against a task and rasterisation to masks.

Rasterisation follows scikit-image's ``draw.polygon`` (pixel centres at integer coordinates,
even-odd rule); the web UI implements the same rule, tested on shared vectors.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from crowdseg.domain import Shape, Tool
from crowdseg.errors import InvalidInput
from PIL import Image as PILImage
from shapely.geometry import Polygon
from skimage.draw import polygon as draw_polygon

OUTSIDE_TOLERANCE = 0.05  # a stroke may overshoot the image edge by 5 % of its size; it is clipped


def validate_shapes(
    shapes: list[Shape],
    *,
    tool: Tool,
    width: int,
    height: int,
    max_shapes: int,
    max_points: int,
    labels: Sequence[str] = (),
    frames: int = 1,
) -> list[Shape]:
    """The shapes, clipped to the image; :class:`InvalidInput` says what is wrong otherwise. Where the
    task has ``labels``, every shape carries one of them.

    On a stack (``frames > 1``) every shape names its ``frame`` and ``max_shapes`` holds per frame (an
    object outlined on every slice is one object); on a plain image a ``frame`` of 0 is dropped (stored
    as None), any other is refused."""
    _check_count(shapes, max_shapes, frames)
    if labels:
        _check_labels(shapes, labels)
    return [
        _on_frame(i, _validate_shape(i, shape, tool, width, height, max_points), frames)
        for i, shape in enumerate(shapes)
    ]


def _check_count(shapes: list[Shape], max_shapes: int, frames: int) -> None:
    if frames <= 1:
        if len(shapes) > max_shapes:
            raise InvalidInput(f"{len(shapes)} shapes submitted; this task allows at most {max_shapes}")
        return
    if len(shapes) > max_shapes * frames:
        raise InvalidInput(f"{len(shapes)} shapes submitted; this task allows at most {max_shapes} per frame")
    frame, count = Counter(s.frame for s in shapes).most_common(1)[0] if shapes else (None, 0)
    if count > max_shapes:
        raise InvalidInput(f"{count} shapes on frame {frame}; this task allows at most {max_shapes} per frame")


def _on_frame(index: int, shape: Shape, frames: int) -> Shape:
    where = f"shape {index}"
    if frames <= 1:
        if shape.frame:
            raise InvalidInput(f"{where}: frame {shape.frame} given, but the image is not a stack (no frames)")
        return shape.model_copy(update={"frame": None})
    if shape.frame is None:
        raise InvalidInput(f"{where}: the image is a stack of {frames} frames; every shape needs its frame (0-based)")
    if shape.frame >= frames:
        raise InvalidInput(f"{where}: frame {shape.frame} is outside the stack's {frames} frames (0 to {frames - 1})")
    return shape


def _check_labels(shapes: list[Shape], labels: Sequence[str]) -> None:
    for index, shape in enumerate(shapes):
        if shape.label not in labels:
            given = "no label" if shape.label is None else f"the label {shape.label!r}"
            raise InvalidInput(f"shape {index} has {given}; this task's labels are {', '.join(labels)}")


def _validate_shape(index: int, shape: Shape, tool: Tool, width: int, height: int, max_points: int) -> Shape:
    where = f"shape {index}"
    if shape.type is not tool:
        raise InvalidInput(f"{where} is a {shape.type.value}; this task takes {tool.value} shapes")
    count = len(shape.points)
    if tool is Tool.POINT and count != 1:
        raise InvalidInput(f"{where}: a point has exactly one coordinate pair, got {count}")
    if count < tool.min_points:
        raise InvalidInput(f"{where}: a {tool.value} needs at least {tool.min_points} points, got {count}")
    if count > max_points:
        raise InvalidInput(f"{where}: {count} points; the limit is {max_points}")
    points = np.asarray(shape.points, dtype=np.float64)
    margin_x, margin_y = OUTSIDE_TOLERANCE * width, OUTSIDE_TOLERANCE * height
    outside = (
        (points[:, 0] < -margin_x)
        | (points[:, 0] > width + margin_x)
        | (points[:, 1] < -margin_y)
        | (points[:, 1] > height + margin_y)
    )
    if outside.any():
        x, y = points[int(np.argmax(outside))]
        raise InvalidInput(f"{where}: point ({x:g}, {y:g}) lies outside the {width}×{height} image")
    clipped = np.column_stack((points[:, 0].clip(0, width), points[:, 1].clip(0, height)))
    if tool.makes_masks and Polygon(clipped).area < 0.5:
        raise InvalidInput(f"{where}: the outline encloses no area")
    return shape.model_copy(update={"points": [(float(x), float(y)) for x, y in clipped]})


def rasterize(shapes: list[Shape], width: int, height: int) -> npt.NDArray[np.bool_]:
    """The union of the shapes' interiors as a (height, width) mask."""
    mask = np.zeros((height, width), dtype=np.bool_)
    for shape in shapes:
        points = np.asarray(shape.points, dtype=np.float64)
        rows, cols = draw_polygon(points[:, 1], points[:, 0], shape=(height, width))
        mask[rows, cols] = True
    return mask


def mask_to_png(mask: npt.NDArray[np.bool_]) -> bytes:
    return _png(np.where(mask, 255, 0).astype(np.uint8))


def label_map_to_png(label_map: npt.NDArray[np.uint8]) -> bytes:
    """Label indices as grey values (0 background, 1..n the task's labels)."""
    return _png(label_map)


def probability_to_png(probability: npt.NDArray[np.floating]) -> bytes:
    return _png(np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8))


def png_to_mask(data: bytes) -> npt.NDArray[np.bool_]:
    with PILImage.open(io.BytesIO(data), formats=["PNG"]) as image:
        return np.asarray(image.convert("L")) >= 128


def _png(pixels: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()
