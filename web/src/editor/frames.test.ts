import { describe, expect, it } from "vitest";
import { dragWindow, frameUrl, roundWindow, stackOf } from "./frames";
import { EditorModel } from "./model";
import type { Pt } from "../geometry/types";

const tri = (x: number): Pt[] => [
  [x, 10],
  [x + 20, 10],
  [x + 10, 30],
];

function drawOn(m: EditorModel, x: number): void {
  for (const p of tri(x)) m.addDraftVertex(p);
  expect(m.finishDraft()).toBe(true);
}

describe("shapes on the frames of a stack", () => {
  it("a new shape carries the frame on show, and only that frame's shapes count toward the limit", () => {
    const m = new EditorModel("contour", 1, 100, 100);
    m.frames = 24;
    drawOn(m, 10);
    expect(m.full).toBe(true);
    expect(m.setFrame(5)).toBe(true);
    expect(m.full).toBe(false); // an outline on every slice is one object, not 24
    drawOn(m, 40);
    expect(m.toJson(false).map((s) => s.frame)).toEqual([0, 5]);
    expect([...m.framesWithShapes()].sort((a, b) => a - b)).toEqual([0, 5]);
    expect(m.shapes.filter((s) => m.onFrame(s))).toHaveLength(1);
  });

  it("the frame stays while an outline is open (it belongs to the frame it was begun on)", () => {
    const m = new EditorModel("contour", 5, 100, 100);
    m.frames = 3;
    m.addDraftVertex([1, 1]);
    expect(m.setFrame(2)).toBe(false);
    expect(m.frame).toBe(0);
    m.cancelDraft();
    expect(m.setFrame(99)).toBe(true);
    expect(m.frame).toBe(2); // clamped to the last frame
  });

  it("clearing on a stack clears the frame on show only, in one undoable step", () => {
    const m = new EditorModel("contour", 5, 100, 100);
    m.frames = 2;
    drawOn(m, 10);
    m.setFrame(1);
    drawOn(m, 40);
    m.clearAll();
    expect(m.toJson(false).map((s) => s.frame)).toEqual([0]);
    m.undo();
    expect(m.shapes).toHaveLength(2);
  });

  it("a plain image's shapes carry no frame", () => {
    const m = new EditorModel("contour", 5, 100, 100);
    drawOn(m, 10);
    expect(m.toJson(false)[0]).not.toHaveProperty("frame");
    expect(m.setFrame(3)).toBe(true);
    expect(m.frame).toBe(0);
  });
});

describe("frame renditions and window/level", () => {
  it("asks for the image's own rendition unless a window is chosen, rounded so renditions cache", () => {
    expect(frameUrl("a b", 3)).toBe("/images/a%20b/file?frame=3");
    expect(frameUrl("x", 0, [40.4, 399.6])).toBe("/images/x/file?frame=0&window=40,400");
    expect(roundWindow([0, 0.2])).toEqual([0, 1]);
  });

  it("a drag to the right widens the window, a drag down raises the level, in proportion to the width", () => {
    expect(dragWindow([40, 400], 0, 0)).toEqual([40, 400]);
    expect(dragWindow([40, 400], 64, 0)).toEqual([40, 500]);
    expect(dragWindow([40, 400], 0, -128)).toEqual([-160, 400]);
    expect(dragWindow([40, 400], -10_000, 0)[1]).toBe(1);
  });

  it("only an image with more than one frame is a stack", () => {
    expect(stackOf({ id: "i", width: 1, height: 1 })).toBeNull();
    expect(stackOf({ id: "i", width: 1, height: 1, frames: 1 })).toBeNull();
    expect(stackOf({ id: "i", width: 1, height: 1, frames: 24, window: [40, 400] })).toEqual({ imageId: "i", frames: 24, window: [40, 400] });
  });
});
