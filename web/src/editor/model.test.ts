import { describe, expect, it } from "vitest";
import { EditorModel, labelForKey } from "./model";
import type { Pt } from "../geometry/types";

describe("EditorModel", () => {
  it("click-drawn contour closes with enough vertices; undo removes draft vertices first", () => {
    const m = new EditorModel("contour", 3, 100, 100);
    m.addDraftVertex([10, 10]);
    m.addDraftVertex([50, 10]);
    expect(m.finishDraft()).toBe(false);
    m.addDraftVertex([50, 50]);
    m.undo();
    expect(m.draft).toHaveLength(2);
    m.addDraftVertex([30, 60]);
    expect(m.finishDraft()).toBe(true);
    expect(m.shapes[0]!.points).toEqual([
      [10, 10],
      [50, 10],
      [30, 60],
    ]);
    m.undo();
    expect(m.shapes).toHaveLength(0);
    m.redo();
    expect(m.shapes).toHaveLength(1);
  });

  it("undo undoes one step: closing re-opens the outline, then the last vertex goes; redo replays them", () => {
    const m = new EditorModel("contour", 3, 100, 100);
    const tri: Pt[] = [
      [10, 10],
      [50, 10],
      [30, 60],
    ];
    for (const p of tri) m.addDraftVertex(p);
    expect(m.finishDraft()).toBe(true);
    m.undo(); // re-opens the outline: its three vertices are back in the draft
    expect(m.shapes).toHaveLength(0);
    expect(m.draft).toEqual(tri);
    m.undo(); // then only the last vertex goes
    expect(m.draft).toEqual(tri.slice(0, 2));
    expect(m.canRedo).toBe(true);
    m.redo();
    m.redo();
    expect(m.draft).toEqual([]);
    expect(m.shapes[0]!.points).toEqual(tri);
    // a cancelled outline comes back with undo too
    m.addDraftVertex([70, 70]);
    m.addDraftVertex([90, 70]);
    m.cancelDraft();
    m.undo();
    expect(m.draft).toEqual([
      [70, 70],
      [90, 70],
    ]);
  });

  it("an outline restored by load() keeps its open vertices, undone one by one", () => {
    const m = new EditorModel("polygon", 3, 100, 100);
    m.load([], [
      [1, 1],
      [5, 1],
    ]);
    expect(m.draft).toHaveLength(2);
    expect(m.canUndo).toBe(true);
    m.undo();
    expect(m.draft).toEqual([[1, 1]]);
  });

  it("freehand stroke is simplified with RDP at the tolerance", () => {
    const m = new EditorModel("contour", 5, 200, 200);
    const stroke: Pt[] = [];
    for (let i = 0; i <= 40; i++) stroke.push([10 + i * 2, 10 + (i % 2) * 0.3]);
    for (let i = 1; i <= 40; i++) stroke.push([90, 10 + i * 2]);
    for (let i = 1; i <= 40; i++) stroke.push([90 - i * 2, 90]);
    expect(m.addStroke(stroke, 1)).toBe(true);
    expect(m.shapes[0]!.points).toEqual([
      [10, 10],
      [90, 10],
      [90, 90],
      [10, 90],
    ]);
  });

  it("insert, move and delete vertices; deleting below the minimum removes the shape", () => {
    const m = new EditorModel("polygon", 5, 100, 100);
    m.load([{ type: "polygon", points: [[0, 0], [10, 0], [0, 10]] }]);
    m.insertVertex(0, 0, [5, -3]);
    expect(m.shapes[0]!.points[1]).toEqual([5, 0]); // clamped into the image
    m.checkpoint();
    m.moveVertex(0, 1, [5, 2]);
    expect(m.shapes[0]!.points[1]).toEqual([5, 2]);
    m.deleteVertex(0, 1);
    expect(m.shapes[0]!.points).toHaveLength(3);
    m.deleteVertex(0, 0);
    expect(m.shapes).toHaveLength(0);
    m.undo();
    m.undo();
    expect(m.shapes[0]!.points).toHaveLength(4);
  });

  it("translating keeps the shape inside the image", () => {
    const m = new EditorModel("contour", 5, 50, 50);
    m.load([{ type: "contour", points: [[10, 10], [20, 10], [20, 20]] }]);
    const origin = m.shapes[0]!.points.map((p) => [...p] as Pt);
    m.translateShape(0, origin, 100, -100);
    expect(m.shapes[0]!.points).toEqual([
      [39, 0],
      [49, 0],
      [49, 10],
    ]);
  });

  it("respects max_shapes", () => {
    const m = new EditorModel("point", 2, 50, 50);
    expect(m.addPoint([1, 1])).toBe(true);
    expect(m.addPoint([2, 2])).toBe(true);
    expect(m.addPoint([3, 3])).toBe(false);
    expect(m.toJson(true)).toEqual([
      { type: "point", points: [[1, 1]] },
      { type: "point", points: [[2, 2]] },
    ]);
  });

  it("smoothed output passes through every vertex", () => {
    const m = new EditorModel("contour", 5, 100, 100);
    const pts: Pt[] = [
      [10, 10],
      [80, 12],
      [70, 70],
      [15, 60],
    ];
    m.load([{ type: "contour", points: pts }]);
    const out = m.toJson(true)[0]!.points;
    expect(out.length).toBeGreaterThan(4);
    for (const v of pts) expect(out).toContainEqual(v);
    expect(m.toJson(false)[0]!.points).toEqual(pts);
  });

  it("new shapes carry the active label: the first one, then the one chosen (keys 1–9)", () => {
    const labels = [
      { name: "cell", color: "#ff0000" },
      { name: "nucleus", color: "#00ff00" },
    ];
    const m = new EditorModel("point", 5, 100, 100);
    m.setLabels(labels);
    m.addPoint([10, 10]);
    expect(labelForKey(labels, "2")?.name).toBe("nucleus");
    expect(labelForKey(labels, "3")).toBeNull();
    expect(labelForKey(labels, "0")).toBeNull();
    expect(m.chooseLabel("nucleus")).toBe(true);
    expect(m.chooseLabel("vesicle")).toBe(false);
    m.addPoint([20, 20]);
    expect(m.toJson(false).map((s) => s.label)).toEqual(["cell", "nucleus"]);
    expect(m.colorOf(m.shapes[1]!)).toBe("#00ff00");
  });

  it("a task without labels gives shapes without a label", () => {
    const m = new EditorModel("point", 5, 100, 100);
    m.setLabels([]);
    m.addPoint([10, 10]);
    expect(m.toJson(false)[0]).not.toHaveProperty("label");
    expect(m.colorOf(m.shapes[0]!)).toBeNull();
  });
});
