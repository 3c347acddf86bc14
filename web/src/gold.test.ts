import { describe, expect, it } from "vitest";
import { goldFeedback, goldMessage } from "./gold";

const square = { type: "contour", points: [[1, 1], [9, 1], [9, 9], [1, 9]] };

describe("gold feedback", () => {
  it("reads the gold part of a submit answer", () => {
    expect(goldFeedback({ id: "s", gold: { metric: "dice", score: 0.91234, quality: 0.9 }, reference: [square] })).toEqual({
      metric: "dice",
      score: 0.91234,
      reference: [square],
    });
    expect(goldFeedback({ gold: { metric: "jaccard", score: 0.5 }, reference: null })?.reference).toEqual([]);
  });

  it("is null for an ordinary submission or an answer it cannot read", () => {
    for (const answer of [undefined, null, "x", {}, { gold: null }, { gold: { metric: "dice" } }, { gold: { metric: 1, score: 1 } }, { gold: { metric: "dice", score: Number.NaN } }])
      expect(goldFeedback(answer)).toBeNull();
  });

  it("says the score and how to read it", () => {
    expect(goldMessage({ metric: "dice", score: 0.91234, reference: [] })).toBe(
      "Check image: an expert outlined this one. Your Dice against it: 0.912 (1 is a perfect match).",
    );
    expect(goldMessage({ metric: "mhd", score: 2.345, reference: [square] as never })).toContain("2.3 px (lower is closer). Dashed yellow");
  });
});
