/**
 * Outlines between drawn frames of a stack, for a task that interpolates (`interpolate_frames`): on a
 * frame with no outline of a label, between the nearest frames before and after that have one, the
 * workbench shows the in-between outline dashed and labelled "interpolated". The server fills the
 * rater's volume by signed-distance (shape-based) interpolation of the two masks; on screen the two
 * outlines are resampled by arc length, put in correspondence (same orientation, the cyclic shift of
 * least squared distance) and blended linearly, which for one object a frame draws nearly the same
 * outline. Pure geometry: no DOM, no API.
 */
import type { Pt } from "../geometry/types";

export interface FrameShape {
  type: string;
  points: readonly Pt[];
  frame?: number;
  label?: string;
}

export interface InterpolatedOutline {
  points: Pt[];
  label?: string;
  /** The drawn frames it lies between. */
  from: number;
  to: number;
}

const SAMPLES = 64;

function isOutline(s: FrameShape): boolean {
  return (s.type === "contour" || s.type === "polygon") && s.points.length >= 3;
}

/** Twice the signed area (positive counter-clockwise in a y-up frame). */
export function signedArea(points: readonly Pt[]): number {
  let sum = 0;
  for (let i = 0; i < points.length; i++) {
    const [x0, y0] = points[i]!;
    const [x1, y1] = points[(i + 1) % points.length]!;
    sum += x0 * y1 - x1 * y0;
  }
  return sum;
}

/** `n` points evenly spaced by arc length along the closed outline, starting at its first vertex. */
export function resampleClosed(points: readonly Pt[], n: number = SAMPLES): Pt[] {
  const edges = points.map((p, i) => {
    const q = points[(i + 1) % points.length]!;
    return Math.hypot(q[0] - p[0], q[1] - p[1]);
  });
  const total = edges.reduce((a, b) => a + b, 0);
  if (total === 0) return Array.from({ length: n }, () => [points[0]![0], points[0]![1]] as Pt);
  const out: Pt[] = [];
  let edge = 0;
  let walked = 0;
  for (let k = 0; k < n; k++) {
    const at = (k * total) / n;
    while (edge < edges.length - 1 && walked + edges[edge]! < at) walked += edges[edge++]!;
    const p = points[edge]!;
    const q = points[(edge + 1) % points.length]!;
    const t = edges[edge]! > 0 ? (at - walked) / edges[edge]! : 0;
    out.push([p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t]);
  }
  return out;
}

/** `b` resampled like `a`, turned the same way round and shifted so that its points face `a`'s. */
export function corresponding(a: readonly Pt[], b: readonly Pt[]): Pt[] {
  const same = Math.sign(signedArea(a)) === Math.sign(signedArea(b));
  const turned = same ? [...b] : [...b].reverse();
  let best = 0;
  let bestCost = Infinity;
  for (let shift = 0; shift < turned.length; shift++) {
    let cost = 0;
    for (let i = 0; i < a.length && cost < bestCost; i++) {
      const q = turned[(i + shift) % turned.length]!;
      cost += (a[i]![0] - q[0]) ** 2 + (a[i]![1] - q[1]) ** 2;
    }
    if (cost < bestCost) [best, bestCost] = [shift, cost];
  }
  return a.map((_, i) => turned[(i + best) % turned.length]!);
}

/** The outline a fraction `t` (0 at `a`, 1 at `b`) of the way from one outline to the other. */
export function blendOutlines(a: readonly Pt[], b: readonly Pt[], t: number, n: number = SAMPLES): Pt[] {
  const from = resampleClosed(a, n);
  const to = corresponding(from, resampleClosed(b, n));
  return from.map((p, i) => [p[0] + (to[i]![0] - p[0]) * t, p[1] + (to[i]![1] - p[1]) * t]);
}

function centroid(points: readonly Pt[]): Pt {
  const n = points.length;
  return [points.reduce((s, p) => s + p[0], 0) / n, points.reduce((s, p) => s + p[1], 0) / n];
}

/** Pairs of outlines (by index) nearest centroid first, each outline in at most one pair. */
function pairs(a: readonly FrameShape[], b: readonly FrameShape[]): Array<[number, number]> {
  const ca = a.map((s) => centroid(s.points));
  const cb = b.map((s) => centroid(s.points));
  const all: Array<[number, number, number]> = [];
  ca.forEach((p, i) => cb.forEach((q, j) => all.push([Math.hypot(p[0] - q[0], p[1] - q[1]), i, j])));
  all.sort((x, y) => x[0] - y[0]);
  const usedA = new Set<number>();
  const usedB = new Set<number>();
  const out: Array<[number, number]> = [];
  for (const [, i, j] of all) {
    if (usedA.has(i) || usedB.has(j)) continue;
    usedA.add(i);
    usedB.add(j);
    out.push([i, j]);
  }
  return out;
}

/**
 * The interpolated outlines on `frame`: for every label (or the one group of an unlabelled task)
 * with no outline on `frame` but outlines on a frame before and one after it, the blend of the
 * nearest such frames' outlines, paired by nearest centroid.
 */
export function interpolatedOutlines(shapes: readonly FrameShape[], frame: number): InterpolatedOutline[] {
  const groups = new Map<string, Map<number, FrameShape[]>>();
  for (const s of shapes) {
    if (!isOutline(s)) continue;
    const key = s.label ?? "";
    const byFrame = groups.get(key) ?? new Map<number, FrameShape[]>();
    const k = s.frame ?? 0;
    byFrame.set(k, [...(byFrame.get(k) ?? []), s]);
    groups.set(key, byFrame);
  }
  const out: InterpolatedOutline[] = [];
  for (const byFrame of groups.values()) {
    if (byFrame.has(frame)) continue;
    const drawn = [...byFrame.keys()];
    const before = Math.max(...drawn.filter((k) => k < frame));
    const after = Math.min(...drawn.filter((k) => k > frame));
    if (!Number.isFinite(before) || !Number.isFinite(after)) continue;
    const a = byFrame.get(before)!;
    const b = byFrame.get(after)!;
    const t = (frame - before) / (after - before);
    for (const [i, j] of pairs(a, b)) {
      const label = a[i]!.label;
      out.push({ points: blendOutlines(a[i]!.points, b[j]!.points, t), ...(label !== undefined ? { label } : {}), from: before, to: after });
    }
  }
  return out;
}
