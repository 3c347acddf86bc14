/** A point in image pixel coordinates: x to the right, y down. */
export type Pt = [number, number];

export function dist2(a: Pt, b: Pt): number {
  const dx = a[0] - b[0];
  const dy = a[1] - b[1];
  return dx * dx + dy * dy;
}

export function dist(a: Pt, b: Pt): number {
  return Math.sqrt(dist2(a, b));
}

export function clonePts(points: readonly Pt[]): Pt[] {
  return points.map((p) => [p[0], p[1]] as Pt);
}

/** Signed area (shoelace); positive for clockwise rings in image (y-down) coordinates. */
export function signedArea(points: readonly Pt[]): number {
  let a = 0;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const pi = points[i]!;
    const pj = points[j]!;
    a += pj[0] * pi[1] - pi[0] * pj[1];
  }
  return a / 2;
}

export function bbox(points: readonly Pt[]): { x0: number; y0: number; x1: number; y1: number } {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [x, y] of points) {
    if (x < x0) x0 = x;
    if (y < y0) y0 = y;
    if (x > x1) x1 = x;
    if (y > y1) y1 = y;
  }
  return { x0, y0, x1, y1 };
}

export function round2(p: Pt): Pt {
  return [Math.round(p[0] * 100) / 100, Math.round(p[1] * 100) / 100];
}
