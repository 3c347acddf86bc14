import { describe, expect, it } from "vitest";
import { byQuality } from "./quality";

describe("byQuality", () => {
  it("puts the lowest quality first and annotators without one last", () => {
    const users = [
      { user_id: "a", submissions: 3, quality: 0.9 },
      { user_id: "b", submissions: 9, quality: null },
      { user_id: "c", submissions: 1, quality: 0.2, flagged: true },
      { user_id: "d", submissions: 5, quality: 0.9 },
    ];
    expect([...users].sort(byQuality).map((u) => u.user_id)).toEqual(["c", "d", "a", "b"]);
  });
});
