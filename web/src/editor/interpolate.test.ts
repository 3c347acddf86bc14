import { describe, expect, it } from "vitest";
import { blendOutlines, corresponding, interpolatedOutlines, resampleClosed, signedArea } from "./interpolate";
import type { Pt } from "../geometry/types";

const circle = (cx: number, cy: number, r: number, n = 24, clockwise = false): Pt[] =>
  Array.from({ length: n }, (_, k) => {
    const a = ((clockwise ? -1 : 1) * 2 * Math.PI * k) / n;
    return [cx + r * Math.cos(a), cy + r * Math.sin(a)] as Pt;
  });
const radiusOf = (points: Pt[], cx: number, cy: number): number =>
  points.reduce((s, p) => s + Math.hypot(p[0] - cx, p[1] - cy), 0) / points.length;

describe("outlines between drawn frames", () => {
  it("resamples a closed outline evenly by arc length", () => {
    const square: Pt[] = [[0, 0], [10, 0], [10, 10], [0, 10]];
    const pts = resampleClosed(square, 8);
    expect(pts).toHaveLength(8);
    expect(pts[1]).toEqual([5, 0]);
    expect(pts[2]).toEqual([10, 0]);
    expect(pts[5]).toEqual([5, 10]);
  });

  it("puts two outlines drawn the other way round and from another start into correspondence", () => {
    const a = resampleClosed(circle(50, 50, 10), 32);
    const b = resampleClosed(circle(50, 50, 10, 24, true).slice(7).concat(circle(50, 50, 10, 24, true).slice(0, 7)), 32);
    expect(Math.sign(signedArea(a))).not.toBe(Math.sign(signedArea(b)));
    const matched = corresponding(a, b);
    const worst = Math.max(...a.map((p, i) => Math.hypot(p[0] - matched[i]![0], p[1] - matched[i]![1])));
    expect(worst).toBeLessThan(2.5);
  });

  it("blends a small circle into a big one that has moved", () => {
    const mid = blendOutlines(circle(20, 20, 4), circle(60, 40, 12), 0.5);
    const cx = mid.reduce((s, p) => s + p[0], 0) / mid.length;
    const cy = mid.reduce((s, p) => s + p[1], 0) / mid.length;
    expect(cx).toBeCloseTo(40, 0);
    expect(cy).toBeCloseTo(30, 0);
    expect(radiusOf(mid, cx, cy)).toBeCloseTo(8, 0);
  });

  it("shows an outline only on frames strictly between two drawn ones, per label", () => {
    const shapes = [
      { type: "contour", points: circle(50, 50, 10), frame: 2, label: "organ" },
      { type: "contour", points: circle(50, 50, 20), frame: 6, label: "organ" },
      { type: "contour", points: circle(20, 20, 5), frame: 4, label: "lesion" },
      { type: "point", points: [[5, 5]] as Pt[], frame: 3 },
    ];
    expect(interpolatedOutlines(shapes, 2)).toEqual([]); // drawn there
    expect(interpolatedOutlines(shapes, 1)).toEqual([]); // before the first drawn frame
    expect(interpolatedOutlines(shapes, 7)).toEqual([]);
    const [mid, ...rest] = interpolatedOutlines(shapes, 4);
    expect(rest).toEqual([]); // the lesion is drawn on frame 4; the organ is not
    expect(mid!.label).toBe("organ");
    expect([mid!.from, mid!.to]).toEqual([2, 6]);
    expect(radiusOf(mid!.points, 50, 50)).toBeCloseTo(15, 0);
    expect(radiusOf(interpolatedOutlines(shapes, 3)[0]!.points, 50, 50)).toBeCloseTo(12.5, 0);
  });

  it("pairs two objects on each frame by their nearest centroids", () => {
    const shapes = [
      { type: "polygon", points: circle(20, 20, 5), frame: 0 },
      { type: "polygon", points: circle(80, 80, 5), frame: 0 },
      { type: "polygon", points: circle(82, 80, 9), frame: 2 },
      { type: "polygon", points: circle(22, 20, 9), frame: 2 },
    ];
    const between = interpolatedOutlines(shapes, 1);
    expect(between).toHaveLength(2);
    const centres = between.map((o) => o.points.reduce((s, p) => s + p[0], 0) / o.points.length).sort((a, b) => a - b);
    expect(centres[0]).toBeCloseTo(21, 0);
    expect(centres[1]).toBeCloseTo(81, 0);
  });
});
