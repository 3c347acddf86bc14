import { describe, expect, it } from "vitest";
import fixtures from "./__fixtures__/raster.json";
import {
  bezierPath,
  catmullRomToBezier,
  evalCubic,
  flattenBeziers,
  insertVertex,
  nearestEdge,
  nearestVertex,
  pointInPolygon,
  rasterizePolygon,
  rasterizeUnion,
  simplifyClosed,
  simplifyRdp,
  smoothOutline,
  signedArea,
  type Pt,
} from "./index";

describe("RDP simplification", () => {
  it("removes points closer than the tolerance to a straight line", () => {
    const pts: Pt[] = [];
    for (let x = 0; x <= 100; x++) pts.push([x, (x % 2) * 0.4]);
    expect(simplifyRdp(pts, 1)).toEqual([
      [0, 0],
      [100, 0],
    ]);
  });
  it("keeps corners farther than the tolerance", () => {
    const pts: Pt[] = [];
    for (let i = 0; i <= 50; i++) pts.push([i, 0]);
    for (let i = 1; i <= 50; i++) pts.push([50, i]);
    const out = simplifyRdp(pts, 0.5);
    expect(out).toEqual([
      [0, 0],
      [50, 0],
      [50, 50],
    ]);
  });
  it("every removed point lies within the tolerance of the simplified line", () => {
    const pts: Pt[] = [];
    for (let i = 0; i < 400; i++) {
      const a = (i / 400) * Math.PI * 2;
      pts.push([100 + 60 * Math.cos(a) + Math.sin(i * 1.7), 100 + 40 * Math.sin(a) + Math.cos(i * 2.3)]);
    }
    for (const tol of [0.5, 2, 5]) {
      const out = simplifyRdp(pts, tol);
      expect(out.length).toBeLessThan(pts.length);
      for (const p of pts) {
        const e = nearestEdge(out, p, tol + 1e-6, false);
        expect(e).not.toBeNull();
      }
    }
  });
  it("higher tolerance never keeps more points", () => {
    const pts: Pt[] = Array.from({ length: 200 }, (_, i) => [i, Math.sin(i / 7) * 20] as Pt);
    let prev = Infinity;
    for (const tol of [0, 0.1, 0.5, 1, 2, 4, 8]) {
      const n = simplifyRdp(pts, tol).length;
      expect(n).toBeLessThanOrEqual(prev);
      prev = n;
    }
  });
  it("closed ring drops a closing duplicate", () => {
    const ring: Pt[] = [
      [0, 0],
      [0, 0],
      [10, 0],
      [10, 10],
      [0, 10],
      [0.2, 0.1],
    ];
    const out = simplifyClosed(ring, 1);
    expect(out).toEqual([
      [0, 0],
      [10, 0],
      [10, 10],
      [0, 10],
    ]);
  });
});

describe("Catmull-Rom to cubic Bézier", () => {
  const sq: Pt[] = [
    [0, 0],
    [10, 0],
    [10, 10],
    [0, 10],
  ];
  it("closed curve has one segment per vertex and passes through every vertex", () => {
    const segs = catmullRomToBezier(sq, true);
    expect(segs).toHaveLength(4);
    segs.forEach((s, i) => {
      expect(s.p0).toEqual(sq[i]);
      expect(s.p3).toEqual(sq[(i + 1) % 4]);
      expect(evalCubic(s, 0)).toEqual(sq[i]);
      const end = evalCubic(s, 1);
      expect(end[0]).toBeCloseTo(sq[(i + 1) % 4]![0]);
      expect(end[1]).toBeCloseTo(sq[(i + 1) % 4]![1]);
    });
  });
  it("uses the standard control points (p2 - p0) / 6", () => {
    const s = catmullRomToBezier(sq, true)[0]!;
    // p_-1 = (0,10), p0 = (0,0), p1 = (10,0), p2 = (10,10)
    expect(s.c1[0]).toBeCloseTo(0 + (10 - 0) / 6);
    expect(s.c1[1]).toBeCloseTo(0 + (0 - 10) / 6);
    expect(s.c2[0]).toBeCloseTo(10 - (10 - 0) / 6);
    expect(s.c2[1]).toBeCloseTo(0 - (10 - 0) / 6);
  });
  it("tangent is continuous (C1) at every joint", () => {
    const pts: Pt[] = [
      [0, 0],
      [30, 5],
      [40, 30],
      [10, 40],
      [-5, 20],
    ];
    const segs = catmullRomToBezier(pts, true);
    for (let i = 0; i < segs.length; i++) {
      const a = segs[i]!;
      const b = segs[(i + 1) % segs.length]!;
      const t1: Pt = [a.p3[0] - a.c2[0], a.p3[1] - a.c2[1]];
      const t2: Pt = [b.c1[0] - b.p0[0], b.c1[1] - b.p0[1]];
      expect(t1[0]).toBeCloseTo(t2[0]);
      expect(t1[1]).toBeCloseTo(t2[1]);
    }
  });
  it("tension 0 gives straight edges", () => {
    const segs = catmullRomToBezier(sq, true, 0);
    expect(segs[0]!.c1).toEqual([0, 0]);
    expect(segs[0]!.c2).toEqual([10, 0]);
  });
  it("open curve has n - 1 segments", () => {
    expect(catmullRomToBezier(sq, false)).toHaveLength(3);
  });
  it("flattening keeps the vertices and stays near a circle", () => {
    const circle: Pt[] = Array.from({ length: 12 }, (_, i) => {
      const a = (i / 12) * 2 * Math.PI;
      return [50 + 30 * Math.cos(a), 50 + 30 * Math.sin(a)] as Pt;
    });
    const flat = flattenBeziers(catmullRomToBezier(circle, true), true, 1);
    for (const v of circle) expect(flat.some((p) => p[0] === v[0] && p[1] === v[1])).toBe(true);
    for (const p of flat) expect(Math.abs(Math.hypot(p[0] - 50, p[1] - 50) - 30)).toBeLessThan(0.3);
    // the smoothed outline is closer to the circle's area than the polygon
    const circleArea = Math.PI * 900;
    expect(Math.abs(Math.abs(signedArea(flat)) - circleArea)).toBeLessThan(
      Math.abs(Math.abs(signedArea(circle)) - circleArea),
    );
    expect(smoothOutline(circle, true).length).toBeGreaterThan(circle.length);
  });
  it("svg path", () => {
    expect(bezierPath(sq, true)).toMatch(/^M0 0 C.* Z$/);
    expect(bezierPath(sq.slice(0, 2), false)).toBe("M0 0 L10 0");
  });
});

describe("hit-testing", () => {
  const tri: Pt[] = [
    [0, 0],
    [20, 0],
    [0, 20],
  ];
  it("nearest vertex within radius", () => {
    expect(nearestVertex(tri, [19, 1], 3)).toBe(1);
    expect(nearestVertex(tri, [10, 10], 3)).toBe(-1);
  });
  it("nearest edge, closing edge included when closed", () => {
    const e = nearestEdge(tri, [10, 1], 2, true);
    expect(e?.index).toBe(0);
    expect(e?.point).toEqual([10, 0]);
    expect(nearestEdge(tri, [-1, 10], 2, true)?.index).toBe(2);
    expect(nearestEdge(tri, [-1, 10], 2, false)).toBeNull();
    expect(nearestEdge(tri, [10, 10], 2, true)?.index).toBe(1);
  });
  it("point in polygon (even-odd)", () => {
    expect(pointInPolygon(tri, [3, 3])).toBe(true);
    expect(pointInPolygon(tri, [15, 15])).toBe(false);
    const bow: Pt[] = [
      [0, 0],
      [10, 10],
      [10, 0],
      [0, 10],
    ];
    expect(pointInPolygon(bow, [5, 2])).toBe(false);
    expect(pointInPolygon(bow, [2, 5])).toBe(true);
  });
  it("insert vertex after an edge", () => {
    expect(insertVertex(tri, 0, [10, 0])).toEqual([
      [0, 0],
      [10, 0],
      [20, 0],
      [0, 20],
    ]);
  });
});

interface RasterCase {
  name: string;
  h: number;
  w: number;
  xs: number[];
  ys: number[];
  rows: string[];
}

describe("rasterisation parity with skimage.draw.polygon", () => {
  const cases = (fixtures as { cases: RasterCase[] }).cases;
  it("has shared vectors", () => {
    expect(cases.length).toBeGreaterThan(30);
  });
  for (const c of cases) {
    it(c.name, () => {
      const m = rasterizePolygon(c.xs, c.ys, c.h, c.w);
      const rows: string[] = [];
      for (let r = 0; r < c.h; r++) {
        let s = "";
        for (let col = 0; col < c.w; col++) s += m[r * c.w + col] ? "1" : "0";
        rows.push(s);
      }
      expect(rows).toEqual(c.rows);
    });
  }
  it("union of shapes", () => {
    const a: Pt[] = [
      [1, 1],
      [3, 1],
      [3, 3],
      [1, 3],
    ];
    const b: Pt[] = [
      [5, 5],
      [7, 5],
      [7, 7],
      [5, 7],
    ];
    const m = rasterizeUnion([a, b], 9, 9);
    expect(m.reduce((s, v) => s + v, 0)).toBe(18);
  });
});
