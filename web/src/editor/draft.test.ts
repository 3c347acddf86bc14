import { describe, expect, it } from "vitest";
import { draftKey, hasWork, loadDraft, onLeaving, saveDraft, type Draft } from "./draft";

function memory(): { getItem(k: string): string | null; setItem(k: string, v: string): void; removeItem(k: string): void } {
  const m = new Map<string, string>();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => void m.set(k, v), removeItem: (k) => void m.delete(k) };
}

describe("drafts", () => {
  it("an open outline is kept as a draft, never submitted; finished shapes are saved on leaving", () => {
    expect(onLeaving({ shapes: 0, openVertices: 2 })).toBe("keep-draft");
    expect(onLeaving({ shapes: 3, openVertices: 1 })).toBe("keep-draft");
    expect(onLeaving({ shapes: 2, openVertices: 0 })).toBe("submit");
    expect(onLeaving({ shapes: 0, openVertices: 0 })).toBe("nothing");
  });

  it("keeps the open outline per user, task and image", () => {
    const s = memory();
    const d: Draft = { id: "sub-1", started_at: "2026-01-01T00:00:00Z", shapes: [], open: [[1, 2], [3, 4]], visible_ms: 5 };
    saveDraft(s, draftKey("u", "t", "i"), d);
    expect(loadDraft(s, draftKey("u", "t", "i"))).toEqual(d);
    expect(loadDraft(s, draftKey("u", "t", "other"))).toBeNull();
    expect(loadDraft(s, draftKey("someone-else", "t", "i"))).toBeNull();
    expect(hasWork(d)).toBe(true);
    expect(hasWork({ ...d, open: [] })).toBe(false);
    s.setItem(draftKey("u", "t", "bad"), "{not json");
    expect(loadDraft(s, draftKey("u", "t", "bad"))).toBeNull();
  });
});
