"""Synthetic images with known ground truth and simulated annotators.

Used by ``crowdseg demo``, the tests and the benchmarks: a new user sees a working platform at
once, and every end-to-end check can compare the consensus with the truth.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from crowdseg.domain import Shape, Tool
from crowdseg.geometry import rasterize
from PIL import Image as PILImage


@dataclass(frozen=True)
class SyntheticImage:
    name: str
    png: bytes
    width: int
    height: int
    outline: list[tuple[float, float]]  # the true object's outline
    cells: list[tuple[float, float]]  # the true centres of small round objects

    def truth(self) -> npt.NDArray[np.bool_]:
        return rasterize([Shape(type=Tool.CONTOUR, points=self.outline)], self.width, self.height)


def blob_outline(
    rng: np.random.Generator, cx: float, cy: float, radius: float, vertices: int = 48
) -> list[tuple[float, float]]:
    """A smooth irregular closed outline around (cx, cy)."""
    angles = np.linspace(0, 2 * math.pi, vertices, endpoint=False)
    harmonics = np.zeros_like(angles)
    for k in (2, 3, 5):
        harmonics += rng.uniform(0.03, 0.12) * np.cos(k * angles + rng.uniform(0, 2 * math.pi))
    radii = radius * (1 + harmonics)
    return [(float(cx + r * math.cos(a)), float(cy + r * math.sin(a))) for a, r in zip(angles, radii, strict=True)]


def synthetic_image(index: int, width: int = 256, height: int = 256, seed: int = 7) -> SyntheticImage:
    """A noisy grey 'micrograph': one large irregular object and a few small round cells."""
    rng = np.random.default_rng(seed * 10_007 + index)
    outline = blob_outline(
        rng, width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6), min(width, height) * 0.25
    )
    pixels = rng.normal(60, 12, size=(height, width))
    truth = rasterize([Shape(type=Tool.CONTOUR, points=outline)], width, height)
    pixels[truth] += 90
    cells: list[tuple[float, float]] = []
    yy, xx = np.mgrid[0:height, 0:width]
    spacing, margin = min(30.0, min(width, height) / 5), min(12.0, min(width, height) / 8)
    for _attempt in range(10_000):  # small images have room for fewer cells
        if len(cells) == 6:
            break
        x, y = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
        if truth[int(y), int(x)] or any(math.dist((x, y), c) < spacing for c in cells):
            continue
        cells.append((float(x), float(y)))
        pixels[(xx - x) ** 2 + (yy - y) ** 2 <= 25] += 120
    buffer = io.BytesIO()
    PILImage.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return SyntheticImage(f"image-{index:03d}.png", buffer.getvalue(), width, height, outline, cells)


def careful_outline(
    truth: list[tuple[float, float]], rng: np.random.Generator, noise: float = 1.5
) -> list[tuple[float, float]]:
    """A good annotator: the outline with small boundary noise."""
    points = np.asarray(truth) + rng.normal(0, noise, size=(len(truth), 2))
    return [(float(x), float(y)) for x, y in points]


def sloppy_outline(truth: list[tuple[float, float]], rng: np.random.Generator) -> list[tuple[float, float]]:
    """A bad annotator: a shrunken, shifted, very noisy outline."""
    points = np.asarray(truth)
    centre = points.mean(axis=0)
    shifted = centre + 0.55 * (points - centre) + rng.normal(0, 6, size=points.shape) + rng.uniform(-25, 25, size=2)
    return [(float(x), float(y)) for x, y in shifted]


def careful_clicks(cells: list[tuple[float, float]], rng: np.random.Generator) -> list[tuple[float, float]]:
    return [(float(x + rng.normal(0, 1.0)), float(y + rng.normal(0, 1.0))) for x, y in cells]


def sloppy_clicks(
    cells: list[tuple[float, float]], rng: np.random.Generator, width: int, height: int
) -> list[tuple[float, float]]:
    kept = [(x + rng.normal(0, 3), y + rng.normal(0, 3)) for x, y in cells if rng.random() < 0.5]
    spurious = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(3)]
    return [(float(x), float(y)) for x, y in [*kept, *spurious]]
