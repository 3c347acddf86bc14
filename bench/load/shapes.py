"""The contour a simulated annotator submits (bench/load/locustfile.py, bench/load/cycles.py)."""

from __future__ import annotations

import math
import random


def small_polygon(width: int, height: int, rng: random.Random) -> list[list[float]]:
    """A random star-shaped polygon of 6-12 vertices around a point well inside the image: one vertex
    in each of n equal sectors, so it is simple and encloses area."""
    radius = rng.uniform(3.0, max(4.0, min(width, height) / 8))
    cx = rng.uniform(radius + 1, width - radius - 1)
    cy = rng.uniform(radius + 1, height - radius - 1)
    n = rng.randint(6, 12)
    points = []
    for k in range(n):
        angle = 2 * math.pi * (k + rng.uniform(0.1, 0.9)) / n
        r = radius * rng.uniform(0.6, 1.0)
        points.append([round(cx + r * math.cos(angle), 2), round(cy + r * math.sin(angle), 2)])
    return points
