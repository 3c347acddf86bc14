import simplifyJs from "simplify-js";
import type { Pt } from "./types";

/**
 * Ramer–Douglas–Peucker simplification of a stroke (wraps simplify-js in its
 * high-quality mode, i.e. pure RDP without the radial-distance pre-pass).
 * `tolerance` is the largest distance, in the same units as the points
 * (image pixels), that a removed point may lie from the simplified line.
 */
export function simplifyRdp(points: readonly Pt[], tolerance: number): Pt[] {
  if (points.length <= 2) return points.map((p) => [p[0], p[1]] as Pt);
  const tol = Math.max(0, tolerance);
  const out = simplifyJs(
    points.map(([x, y]) => ({ x, y })),
    tol,
    true,
  );
  return out.map((p) => [p.x, p.y] as Pt);
}

/**
 * Simplify a closed freehand ring. The stroke is treated as open (start and end
 * are kept) and a closing point that duplicates the start is dropped.
 */
export function simplifyClosed(points: readonly Pt[], tolerance: number): Pt[] {
  const pts = dedupe(points);
  let out = simplifyRdp(pts, tolerance);
  if (out.length > 3) {
    const a = out[0]!;
    const b = out[out.length - 1]!;
    if (Math.hypot(a[0] - b[0], a[1] - b[1]) <= Math.max(tolerance, 1e-9)) out = out.slice(0, -1);
  }
  return out;
}

/** Drop consecutive duplicate points. */
export function dedupe(points: readonly Pt[]): Pt[] {
  const out: Pt[] = [];
  for (const p of points) {
    const q = out[out.length - 1];
    if (!q || q[0] !== p[0] || q[1] !== p[1]) out.push([p[0], p[1]]);
  }
  return out;
}
