/**
 * Polygon rasterisation with exactly the rule of scikit-image's
 * `skimage.draw.polygon(rows=ys, cols=xs, shape=(h, w))`, which the server
 * uses to turn contours into masks: pixel (r, c) — its centre at integer
 * coordinates (x = c, y = r) — is set when it is a vertex, lies on an edge,
 * or is inside by the even-odd crossing rule; only pixels inside the
 * polygon's bounding box, clipped to the image, are tested.
 */
export function rasterizePolygon(xs: readonly number[], ys: readonly number[], h: number, w: number): Uint8Array {
  const mask = new Uint8Array(h * w);
  const n = xs.length;
  if (n === 0 || h <= 0 || w <= 0) return mask;
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (let i = 0; i < n; i++) {
    minX = Math.min(minX, xs[i]!);
    maxX = Math.max(maxX, xs[i]!);
    minY = Math.min(minY, ys[i]!);
    maxY = Math.max(maxY, ys[i]!);
  }
  // skimage: minr = int(max(0, r.min())); maxr = int(ceil(r.max())); clipped to shape - 1.
  const minr = Math.trunc(Math.max(0, minY));
  const maxr = Math.min(h - 1, Math.ceil(maxY));
  const minc = Math.trunc(Math.max(0, minX));
  const maxc = Math.min(w - 1, Math.ceil(maxX));
  for (let r = minr; r <= maxr; r++) {
    for (let c = minc; c <= maxc; c++) {
      if (pointInPolygonSk(xs, ys, c, r) !== 0) mask[r * w + c] = 1;
    }
  }
  return mask;
}

/** 0 outside, 1 inside, 2 on a vertex, 3 on an edge (skimage's point_in_polygon). */
export function pointInPolygonSk(xp: readonly number[], yp: readonly number[], x: number, y: number): number {
  const n = xp.length;
  let c = 0;
  let j = n - 1;
  for (let i = 0; i < n; i++) {
    const xi = xp[i]!;
    const yi = yp[i]!;
    const xj = xp[j]!;
    const yj = yp[j]!;
    if (x === xi && y === yi) return 2;
    if (onSegment(xi, yi, xj, yj, x, y)) return 3;
    if (((yi <= y && y < yj) || (yj <= y && y < yi)) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) c = 1 - c;
    j = i;
  }
  return c;
}

function onSegment(x1: number, y1: number, x2: number, y2: number, x: number, y: number): boolean {
  if (x < Math.min(x1, x2) || x > Math.max(x1, x2) || y < Math.min(y1, y2) || y > Math.max(y1, y2)) return false;
  return (x - x1) * (y2 - y1) === (x2 - x1) * (y - y1);
}

/** Rasterise a shape given as [[x, y], ...]. */
export function rasterizePoints(points: readonly (readonly [number, number])[], h: number, w: number): Uint8Array {
  return rasterizePolygon(
    points.map((p) => p[0]),
    points.map((p) => p[1]),
    h,
    w,
  );
}

/** Union of several polygons (logical or of their masks), as the server combines contours. */
export function rasterizeUnion(shapes: readonly (readonly (readonly [number, number])[])[], h: number, w: number): Uint8Array {
  const out = new Uint8Array(h * w);
  for (const s of shapes) {
    const m = rasterizePoints(s, h, w);
    for (let i = 0; i < m.length; i++) if (m[i]) out[i] = 1;
  }
  return out;
}
