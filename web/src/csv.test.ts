import { describe, expect, it } from "vitest";
import { csvRecords, parseCsv } from "./csv";

describe("parseCsv", () => {
  it("reads what Python's csv module writes: CRLF rows, quoted cells, doubled quotes", () => {
    const text = 'external_id,kind,images\r\nabc,prolific,2\r\n"a,b","say ""hi""","line\r\nbreak"\r\n';
    expect(parseCsv(text)).toEqual([
      ["external_id", "kind", "images"],
      ["abc", "prolific", "2"],
      ["a,b", 'say "hi"', "line\r\nbreak"],
    ]);
  });

  it("keeps empty cells and a last row without a line end", () => {
    expect(parseCsv("a,,c\n,,")).toEqual([
      ["a", "", "c"],
      ["", "", ""],
    ]);
  });
});

describe("csvRecords", () => {
  it("keys each row by the header", () => {
    expect(csvRecords("external_id,images\r\nw1,3\r\n")).toEqual([{ external_id: "w1", images: "3" }]);
    expect(csvRecords("")).toEqual([]);
  });
});
