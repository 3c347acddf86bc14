import type { Pt } from "./types";

/** Squared distance from p to segment ab, with the parameter t of the closest point. */
export function segmentDistance2(p: Pt, a: Pt, b: Pt): { d2: number; t: number; q: Pt } {
  const vx = b[0] - a[0];
  const vy = b[1] - a[1];
  const len2 = vx * vx + vy * vy;
  let t = len2 === 0 ? 0 : ((p[0] - a[0]) * vx + (p[1] - a[1]) * vy) / len2;
  t = Math.max(0, Math.min(1, t));
  const q: Pt = [a[0] + t * vx, a[1] + t * vy];
  const dx = p[0] - q[0];
  const dy = p[1] - q[1];
  return { d2: dx * dx + dy * dy, t, q };
}

/** Index of the vertex nearest to p within `radius`, or -1. */
export function nearestVertex(points: readonly Pt[], p: Pt, radius: number): number {
  let best = -1;
  let bestD = radius * radius;
  points.forEach((v, i) => {
    const d = (v[0] - p[0]) ** 2 + (v[1] - p[1]) ** 2;
    if (d <= bestD) {
      bestD = d;
      best = i;
    }
  });
  return best;
}

export interface EdgeHit {
  /** Edge from vertex `index` to vertex `index + 1` (wrapping when closed). */
  index: number;
  t: number;
  point: Pt;
  distance: number;
}

/** Nearest edge within `radius`; a new vertex belongs at position index + 1. */
export function nearestEdge(points: readonly Pt[], p: Pt, radius: number, closed: boolean): EdgeHit | null {
  const n = points.length;
  if (n < 2) return null;
  let best: EdgeHit | null = null;
  const count = closed ? n : n - 1;
  for (let i = 0; i < count; i++) {
    const a = points[i]!;
    const b = points[(i + 1) % n]!;
    const { d2, t, q } = segmentDistance2(p, a, b);
    const d = Math.sqrt(d2);
    if (d <= radius && (!best || d < best.distance)) best = { index: i, t, point: q, distance: d };
  }
  return best;
}

/** Even-odd point-in-polygon test (boundary handling is unspecified; see raster.ts for the exact rule). */
export function pointInPolygon(points: readonly Pt[], p: Pt): boolean {
  let inside = false;
  const [x, y] = p;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i]!;
    const [xj, yj] = points[j]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Insert `q` after vertex `index` (returns a new array). */
export function insertVertex(points: readonly Pt[], index: number, q: Pt): Pt[] {
  const out = points.map((v) => [v[0], v[1]] as Pt);
  out.splice(index + 1, 0, [q[0], q[1]]);
  return out;
}
