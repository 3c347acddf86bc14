"""Generate rasterisation parity vectors for web/src/geometry/raster.ts.

Run once with the project's venv (scikit-image):
    .venv/bin/python web/scripts/gen_raster_fixtures.py
The server rasterises with skimage.draw.polygon(rows=ys, cols=xs, shape=(h, w)).
"""

import json
import pathlib

import numpy as np
from skimage.draw import polygon

rng = np.random.default_rng(20240611)
cases = []


def add(name, xs, ys, h, w):
    xs = [float(v) for v in xs]
    ys = [float(v) for v in ys]
    rr, cc = polygon(np.array(ys), np.array(xs), shape=(h, w))
    m = np.zeros((h, w), dtype=np.uint8)
    m[rr, cc] = 1
    rows = ["".join("1" if v else "0" for v in row) for row in m]
    cases.append({"name": name, "h": h, "w": w, "xs": xs, "ys": ys, "rows": rows})


add("skimage-doc-triangle", [1, 7, 4], [1, 2, 8], 10, 10)
add("integer-square", [2, 8, 8, 2], [2, 2, 8, 8], 12, 12)
add("half-integer-square", [2.5, 8.5, 8.5, 2.5], [2.5, 2.5, 8.5, 8.5], 12, 12)
add("diamond", [6, 11, 6, 1], [1, 6, 11, 6], 13, 13)
add("concave-L", [1, 10, 10, 5, 5, 1], [1, 1, 4, 4, 10, 10], 12, 12)
add("bow-tie-even-odd", [1, 10, 1, 10], [1, 10, 10, 1], 12, 12)
add("star-self-intersecting",
    [10 + 8 * np.cos(np.pi / 2 + k * 4 * np.pi / 5) for k in range(5)],
    [10 - 8 * np.sin(np.pi / 2 + k * 4 * np.pi / 5) for k in range(5)], 21, 21)
add("clipped-outside", [-5, 20, 20, -5], [-3, -3, 6, 6], 10, 12)
add("beyond-shape", [3, 30, 15], [2, 4, 25], 16, 18)
add("thin-sliver", [1, 15, 15.2], [1, 1.4, 1.9], 6, 18)
add("collinear-points", [1, 5, 9, 9, 1], [1, 1, 1, 9, 9], 12, 12)
add("horizontal-edges-integers", [0, 4, 4, 8, 8, 0], [0, 0, 3, 3, 7, 7], 9, 9)
add("single-pixel-triangle", [3, 3.4, 3], [3, 3, 3.4], 6, 6)
add("degenerate-line", [1, 8, 4], [1, 8, 4.5], 10, 10)
add("polygon-on-last-row-col", [5, 11, 11, 5], [5, 5, 9, 9], 10, 12)
for k in range(12):
    n = int(rng.integers(3, 12))
    cx, cy = rng.uniform(8, 24, 2)
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(3, 14, n)
    xs = np.round(cx + rad * np.cos(ang), 3)
    ys = np.round(cy + rad * np.sin(ang), 3)
    add(f"random-star-{k}", xs, ys, 32, 34)
for k in range(8):
    n = int(rng.integers(3, 9))
    xs = rng.integers(-2, 22, n)
    ys = rng.integers(-2, 20, n)
    add(f"random-integer-{k}", xs, ys, 18, 20)
for k in range(6):
    n = int(rng.integers(4, 10))
    xs = rng.integers(0, 40, n) / 2.0
    ys = rng.integers(0, 36, n) / 2.0
    add(f"random-half-{k}", xs, ys, 18, 20)

out = pathlib.Path(__file__).resolve().parent.parent / "src/geometry/__fixtures__/raster.json"
out.write_text(json.dumps({"generator": "skimage.draw.polygon", "cases": cases}, indent=1) + "\n")
print(f"wrote {len(cases)} cases to {out}")
