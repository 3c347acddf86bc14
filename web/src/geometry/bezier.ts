import type { Pt } from "./types";

/** One cubic Bézier segment: start, two control points, end. */
export interface Cubic {
  p0: Pt;
  c1: Pt;
  c2: Pt;
  p3: Pt;
}

/**
 * Convert a Catmull-Rom spline through `points` into cubic Bézier segments.
 * The curve passes through every vertex. `tension` 0 gives straight edges,
 * 1 the standard (uniform) Catmull-Rom spline. For an open curve the end
 * tangents use the duplicated end points.
 */
export function catmullRomToBezier(points: readonly Pt[], closed: boolean, tension = 1): Cubic[] {
  const n = points.length;
  if (n < 2) return [];
  const segs: Cubic[] = [];
  const k = tension / 6;
  const at = (i: number): Pt => {
    if (closed) return points[((i % n) + n) % n]!;
    return points[Math.min(n - 1, Math.max(0, i))]!;
  };
  const count = closed ? n : n - 1;
  for (let i = 0; i < count; i++) {
    const p0 = at(i - 1);
    const p1 = at(i);
    const p2 = at(i + 1);
    const p3 = at(i + 2);
    segs.push({
      p0: [p1[0], p1[1]],
      c1: [p1[0] + (p2[0] - p0[0]) * k, p1[1] + (p2[1] - p0[1]) * k],
      c2: [p2[0] - (p3[0] - p1[0]) * k, p2[1] - (p3[1] - p1[1]) * k],
      p3: [p2[0], p2[1]],
    });
  }
  return segs;
}

export function evalCubic(s: Cubic, t: number): Pt {
  const u = 1 - t;
  const a = u * u * u;
  const b = 3 * u * u * t;
  const c = 3 * u * t * t;
  const d = t * t * t;
  return [
    a * s.p0[0] + b * s.c1[0] + c * s.c2[0] + d * s.p3[0],
    a * s.p0[1] + b * s.c1[1] + c * s.c2[1] + d * s.p3[1],
  ];
}

/**
 * Flatten Bézier segments into a polyline. Each segment is split into pieces of
 * about `step` pixels (at least 1, at most `maxPerSegment`). The original
 * vertices are kept exactly. For a closed curve the last point (== first) is omitted.
 */
export function flattenBeziers(segs: readonly Cubic[], closed: boolean, step = 2, maxPerSegment = 16): Pt[] {
  const out: Pt[] = [];
  for (const s of segs) {
    const len =
      Math.hypot(s.c1[0] - s.p0[0], s.c1[1] - s.p0[1]) +
      Math.hypot(s.c2[0] - s.c1[0], s.c2[1] - s.c1[1]) +
      Math.hypot(s.p3[0] - s.c2[0], s.p3[1] - s.c2[1]);
    const pieces = Math.max(1, Math.min(maxPerSegment, Math.ceil(len / Math.max(step, 1e-6))));
    out.push([s.p0[0], s.p0[1]]);
    for (let i = 1; i < pieces; i++) out.push(evalCubic(s, i / pieces));
  }
  const last = segs[segs.length - 1];
  if (!closed && last) out.push([last.p3[0], last.p3[1]]);
  return out;
}

/** Smooth outline through `points` as a flattened polygon/polyline (vertices preserved). */
export function smoothOutline(points: readonly Pt[], closed: boolean, step = 2): Pt[] {
  if (points.length < 3) return points.map((p) => [p[0], p[1]] as Pt);
  return flattenBeziers(catmullRomToBezier(points, closed), closed, step);
}

/** SVG path data for the smoothed curve (used for previews and thumbnails). */
export function bezierPath(points: readonly Pt[], closed: boolean): string {
  if (points.length === 0) return "";
  if (points.length < 3) {
    return points.map((p, i) => `${i ? "L" : "M"}${p[0]} ${p[1]}`).join(" ") + (closed ? " Z" : "");
  }
  const segs = catmullRomToBezier(points, closed);
  const first = segs[0]!;
  let d = `M${first.p0[0]} ${first.p0[1]}`;
  for (const s of segs) d += ` C${s.c1[0]} ${s.c1[1]} ${s.c2[0]} ${s.c2[1]} ${s.p3[0]} ${s.p3[1]}`;
  return closed ? d + " Z" : d;
}
