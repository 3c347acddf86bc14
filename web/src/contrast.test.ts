import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { atRuleBlock, contrastRatio, customProperties } from "./contrast";

const css = readFileSync(new URL("./styles.css", import.meta.url), "utf8");
const light = customProperties(css, ":root");
const dark = { ...light, ...customProperties(atRuleBlock(css, "@media (prefers-color-scheme: dark)"), ":root") };
const workbench = customProperties(css, ".workbench");

describe("contrast of the stylesheet's colours (WCAG 2)", () => {
  it("computes the WCAG ratio", () => {
    expect(contrastRatio("#000000", "#ffffff")).toBeCloseTo(21, 5);
    expect(contrastRatio("#777", "#777")).toBeCloseTo(1, 5);
  });

  for (const [scheme, v] of [
    ["light", light],
    ["dark", dark],
  ] as const) {
    for (const surface of ["--bg", "--surface", "--surface-2"]) {
      it(`${scheme}: the focus ring stands out 3:1 from ${surface}`, () => {
        expect(contrastRatio(v["--focus-ring"]!, v[surface]!)).toBeGreaterThanOrEqual(3);
      });
      it(`${scheme}: muted text reads 4.5:1 on ${surface}`, () => {
        expect(contrastRatio(v["--muted"]!, v[surface]!)).toBeGreaterThanOrEqual(4.5);
      });
    }
  }

  for (const surface of ["--wb-toolbar", "--wb-button", "--wb-canvas", "--wb-status"]) {
    it(`workbench: the focus ring stands out 3:1 from ${surface}`, () => {
      expect(contrastRatio(workbench["--focus-ring"]!, workbench[surface]!)).toBeGreaterThanOrEqual(3);
    });
    it(`workbench: muted and normal text read 4.5:1 on ${surface}`, () => {
      expect(contrastRatio(workbench["--wb-muted"]!, workbench[surface]!)).toBeGreaterThanOrEqual(4.5);
      expect(contrastRatio(workbench["--wb-text"]!, workbench[surface]!)).toBeGreaterThanOrEqual(4.5);
    });
  }

  it("the focus style draws the ring colour (an outline or a solid shadow, not a faint one)", () => {
    expect(css).toMatch(/:focus-visible \{ outline: 3px solid var\(--focus-ring\)/);
    expect(light["--focus"]).toContain("var(--focus-ring)");
  });
});
