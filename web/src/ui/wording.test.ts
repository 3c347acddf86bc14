import { describe, expect, it } from "vitest";
import type { ToolName } from "../api";
import { drawingStatus, shortcutRows, toolHelp, tourDrawText, tourEditText, tourZoomText } from "./wording";

const TOOLS: ToolName[] = ["contour", "polygon", "point", "polyline"];
const MOUSE_WORDS = /\b(click|clicks|press|enter|esc|keyboard|mouse|wheel|alt|shift|ctrl)\b/i;

describe("touch wording", () => {
  it("tells touch users to tap, never to click or press keys", () => {
    const texts = [
      ...TOOLS.map((t) => toolHelp(t, true)),
      ...TOOLS.map((t) => tourDrawText(t, true)),
      drawingStatus(3, true),
      tourEditText(true),
      tourZoomText(true),
      ...shortcutRows(true).flat(),
    ];
    for (const text of texts) expect(text).not.toMatch(MOUSE_WORDS);
    expect(toolHelp("contour", true)).toMatch(/\btap\b/i);
    expect(toolHelp("polygon", true)).toMatch(/double-tap to close/);
    expect(drawingStatus(3, true)).toMatch(/double-tap to close/);
  });

  it("keeps the keyboard and mouse wording for a fine pointer", () => {
    expect(toolHelp("contour", false)).toMatch(/Click/);
    expect(drawingStatus(3, false)).toMatch(/Enter/);
    expect(shortcutRows(false).map(([k]) => k)).toContain("E");
  });
});
