import { describe, expect, it } from "vitest";
import { actionsFor, exclusionPatch, screeningPatch, standing } from "./exclusion";

const task = { excluded_users: ["hand"], admitted_users: ["kept"] };

describe("standing", () => {
  it("puts a choice by hand before the screening", () => {
    expect(standing({ user_id: "hand", excluded: true }, task)).toBe("excluded_by_hand");
    expect(standing({ user_id: "kept", excluded: true }, task)).toBe("admitted");
    expect(standing({ user_id: "low", excluded: true }, task)).toBe("screened_out");
    expect(standing({ user_id: "fine", excluded: false }, {})).toBe("in");
  });
  it("offers re-admission to the excluded and exclusion to the rest", () => {
    expect(actionsFor("screened_out")).toEqual(["readmit"]);
    expect(actionsFor("excluded_by_hand")).toEqual(["readmit"]);
    expect(actionsFor("admitted")).toEqual(["exclude", "follow_screening"]);
    expect(actionsFor("in")).toEqual(["exclude"]);
  });
});

describe("exclusionPatch", () => {
  it("sends the whole list the action changes, once per id", () => {
    expect(exclusionPatch(task, "low", "exclude")).toEqual({ excluded_users: ["hand", "low"] });
    expect(exclusionPatch(task, "hand", "exclude")).toEqual({ excluded_users: ["hand"] });
    expect(exclusionPatch(task, "hand", "readmit")).toEqual({ admitted_users: ["kept", "hand"] });
    expect(exclusionPatch(task, "kept", "follow_screening")).toEqual({ admitted_users: [] });
    expect(exclusionPatch({}, "x", "exclude")).toEqual({ excluded_users: ["x"] });
  });
});

describe("screeningPatch", () => {
  it("switches screening off with null and refuses a minimum outside 0–1", () => {
    expect(screeningPatch(false, "0.7")).toEqual({ screening: null });
    expect(screeningPatch(true, "0.7")).toEqual({ screening: { min_quality: 0.7 } });
    expect(() => screeningPatch(true, "1.5")).toThrow();
    expect(() => screeningPatch(true, "")).toThrow();
    expect(() => screeningPatch(true, "high")).toThrow();
  });
});
