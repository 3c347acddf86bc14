import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { coverageHistogram, denseBins, leaseCount, matrixColumns, progressOf, type CoverageRow } from "./coverage";
import { fetchAll, fetchPage, nextLink, Pager, slicePage, windowLabel, type Getter } from "./paging";

/**
 * A real HTTP server with the API's pagination: /items?limit&cursor over a list that can grow while
 * it is read (the cursor is the last name seen, as a keyset would be), plus a few misbehaving routes.
 */
const names: string[] = Array.from({ length: 1234 }, (_, k) => `img-${String(k).padStart(5, "0")}.png`);
let server: Server;
let base = "";
const requests: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    requests.push(url.pathname + url.search);
    const json = (body: unknown, link?: string): void => {
      res.setHeader("Content-Type", "application/json");
      if (link) res.setHeader("Link", link);
      res.end(JSON.stringify(body));
    };
    if (url.pathname === "/items") {
      const limit = Math.min(Number(url.searchParams.get("limit") ?? 500), 5000);
      const cursor = url.searchParams.get("cursor");
      const sorted = [...names].sort();
      const from = cursor === null ? 0 : sorted.findIndex((n) => n > cursor);
      const page = from < 0 ? [] : sorted.slice(from, from + limit);
      const more = from >= 0 && from + limit < sorted.length;
      const next = more ? `</items?limit=${limit}&cursor=${encodeURIComponent(page[page.length - 1]!)}>; rel="next"` : undefined;
      // the next link among others, as RFC 8288 allows
      json(page.map((name) => ({ name })), next ? `</items?limit=${limit}>; rel="first", ${next}` : undefined);
    } else if (url.pathname === "/absolute") {
      json([1], url.searchParams.has("cursor") ? undefined : `<${base}/absolute?cursor=2>; rel="next"`);
    } else if (url.pathname === "/foreign") {
      json([1], `<http://example.invalid/steal?cursor=2>; rel="next"`);
    } else if (url.pathname === "/loop") {
      json([1], `</loop>; rel="next"`);
    } else if (url.pathname === "/object") {
      json({ detail: "not a list" });
    } else {
      res.statusCode = 404;
      json({ detail: "no such route" });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const get: Getter = async (url, signal) => {
  const res = await fetch(url, { signal });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res;
};

describe("nextLink", () => {
  it("finds rel=next among other links and resolves it against the answering URL", () => {
    const h = '<https://a.test/api/v1/x?cursor=1>; rel="prev", </api/v1/x?cursor=9&limit=2>; rel="next"';
    expect(nextLink(h, "https://a.test/api/v1/x?limit=2")).toBe("https://a.test/api/v1/x?cursor=9&limit=2");
  });
  it("accepts an unquoted rel and a rel with several values", () => {
    expect(nextLink("</p2>; rel=next", "https://a.test/p1")).toBe("https://a.test/p2");
    expect(nextLink('</p2>; rel="last next"', "https://a.test/p1")).toBe("https://a.test/p2");
  });
  it("is null without a header or without a next link", () => {
    expect(nextLink(null, "https://a.test/")).toBeNull();
    expect(nextLink("", "https://a.test/")).toBeNull();
    expect(nextLink('</p0>; rel="prev"', "https://a.test/")).toBeNull();
  });
  it("refuses a next page on another origin", () => {
    expect(() => nextLink('<https://evil.test/p2>; rel="next"', "https://a.test/p1")).toThrow(/another origin/);
  });
});

describe("fetchAll against a real server", () => {
  it("reads every page once, in order, with no gap or duplicate", async () => {
    requests.length = 0;
    const items = await fetchAll<{ name: string }>(`${base}/items?limit=100`, get);
    expect(items.map((i) => i.name)).toEqual([...names].sort());
    expect(requests.length).toBe(13); // 12 full pages of 100 and one of 34
  });
  it("one request for a list that fits in a page", async () => {
    requests.length = 0;
    const items = await fetchAll<{ name: string }>(`${base}/items?limit=5000`, get);
    expect(items.length).toBe(names.length);
    expect(requests).toEqual(["/items?limit=5000"]);
  });
  it("stops at maxItems and reports each page", async () => {
    const pages: number[] = [];
    const items = await fetchAll<{ name: string }>(`${base}/items?limit=100`, get, { maxItems: 250, onPage: (p) => pages.push(p.items.length) });
    expect(items.length).toBe(300);
    expect(pages).toEqual([100, 100, 100]);
  });
  it("follows an absolute next link", async () => {
    expect(await fetchAll<number>(`${base}/absolute`, get)).toEqual([1, 1]);
  });
  it("never follows a link to another origin", async () => {
    await expect(fetchAll<number>(`${base}/foreign`, get)).rejects.toThrow(/another origin/);
  });
  it("stops on a list that loops back", async () => {
    await expect(fetchAll<number>(`${base}/loop`, get)).rejects.toThrow(/loops back/);
  });
  it("rejects an answer that is not a list, and passes HTTP errors on", async () => {
    await expect(fetchPage(`${base}/object`, get)).rejects.toThrow(/JSON list/);
    await expect(fetchPage(`${base}/nowhere`, get)).rejects.toThrow(/HTTP 404/);
  });
});

describe("Pager against a real server", () => {
  it("goes next and previous, keeping offsets, and ends on the last page", async () => {
    const p = new Pager<{ name: string }>(`${base}/items?limit=500`, get);
    const first = await p.reload();
    expect(first?.items[0]?.name).toBe("img-00000.png");
    expect([p.pageNumber, p.offset, p.hasPrev, p.hasNext]).toEqual([1, 0, false, true]);
    await p.next();
    expect([p.pageNumber, p.offset, p.page?.items[0]?.name]).toEqual([2, 500, "img-00500.png"]);
    await p.next();
    expect([p.pageNumber, p.offset, p.page?.items.length, p.hasNext]).toEqual([3, 1000, 234, false]);
    expect(await p.next()).toBeNull(); // nothing past the end
    await p.prev();
    expect([p.pageNumber, p.offset, p.page?.items[0]?.name]).toEqual([2, 500, "img-00500.png"]);
    await p.first();
    expect([p.pageNumber, p.offset, p.hasPrev]).toEqual([1, 0, false]);
  });
  it("reload shows what was added to the current page, and a last page gains a next link", async () => {
    const p = new Pager<{ name: string }>(`${base}/items?limit=1000`, get);
    await p.reload();
    await p.next();
    expect([p.page?.items.length, p.hasNext]).toEqual([234, false]);
    const added = Array.from({ length: 800 }, (_, k) => `img-${String(2000 + k).padStart(5, "0")}.png`);
    names.push(...added);
    try {
      await p.reload();
      expect([p.page?.items.length, p.hasNext]).toEqual([1000, true]);
      await p.next();
      expect([p.offset, p.page?.items.length, p.page?.items[0]?.name]).toEqual([2000, 34, "img-02766.png"]);
    } finally {
      names.splice(names.length - added.length);
    }
  });
  it("a load overtaken by a later one changes nothing", async () => {
    const p = new Pager<{ name: string }>(`${base}/items?limit=10`, get);
    await p.reload();
    const [stale, fresh] = await Promise.all([p.next(), p.first()]);
    expect(stale).toBeNull();
    expect(fresh?.items[0]?.name).toBe("img-00000.png");
    expect(p.pageNumber).toBe(1);
  });
  it("a poll during a click does not undo the click", async () => {
    const p = new Pager<{ name: string }>(`${base}/items?limit=10`, get);
    await p.reload();
    const [moved, polled] = await Promise.all([p.next(), p.reload()]);
    expect(polled).toBe(moved);
    expect([p.pageNumber, p.page?.items[0]?.name]).toEqual([2, "img-00010.png"]);
    const before = p.reload(); // a poll, then a click: the click wins
    const after = p.prev();
    expect(await before).toBeNull();
    expect((await after)?.items[0]?.name).toBe("img-00000.png");
    expect(p.pageNumber).toBe(1);
  });
  it("a single page has neither next nor previous", async () => {
    const p = new Pager<number>(`${base}/absolute?cursor=2`, get);
    await p.reload();
    expect([p.hasPrev, p.hasNext, p.page?.items]).toEqual([false, false, [1]]);
  });
});

describe("windowLabel", () => {
  it("names the rows on show", () => {
    expect(windowLabel(200, 200, 100000)).toBe("201–400 of 100\u202f000");
    expect(windowLabel(0, 3)).toBe("1–3");
    expect(windowLabel(0, 0, 0)).toBe("none of 0");
  });
});

describe("coverage", () => {
  it("reads the v1.1 histogram and bins v1's per-image counts", () => {
    expect(coverageHistogram({ "0": 99000, "3": 700, "1": 300 })).toEqual([[0, 99000], [1, 300], [3, 700]]);
    expect(coverageHistogram({ "ab-1": 2, "ab-2": 0, "ab-3": 2 })).toEqual([[0, 1], [2, 2]]);
    expect(coverageHistogram(undefined)).toEqual([]);
    expect(denseBins([[0, 5], [3, 2]])).toEqual([[0, 5], [1, 0], [2, 0], [3, 2]]);
  });
  it("takes the server's complete count, else counts images at replicates", () => {
    expect(progressOf({ images: 100000, complete: 2500, coverage: { "3": 1 } }, 3)).toEqual({ complete: 2500, images: 100000, fraction: 0.025 });
    expect(progressOf({ images: 4, complete_images: 1, coverage: {} }, 3).complete).toBe(1);
    expect(progressOf({ images: 10, coverage: { "2": 4, "3": 5, "4": 1 } }, 3)).toEqual({ complete: 6, images: 10, fraction: 0.6 });
    expect(progressOf({ images: 0, coverage: {} }, 3).fraction).toBe(0);
  });
  it("puts the page's users in columns, preferred first, at most max", () => {
    const row = (users: string[]): CoverageRow => ({ image_id: users.join(), name: "n", submissions: users.length, leased: 0, complete: false, users });
    const rows = [row(["u3", "u1"]), row(["u9"]), row([])];
    expect(matrixColumns(rows, ["u1", "u2", "u3"], 10)).toEqual({ columns: ["u1", "u3", "u9"], hidden: 0 });
    expect(matrixColumns(rows, ["u1", "u2", "u3"], 2)).toEqual({ columns: ["u1", "u3"], hidden: 1 });
    expect(leaseCount({ leased: 2 }) + leaseCount({ leased: true }) + leaseCount({ leased: false })).toBe(3);
  });
});

describe("slicePage", () => {
  it("cuts a list in memory into pages and clamps the page number", () => {
    const xs = Array.from({ length: 120 }, (_, k) => k);
    expect(slicePage(xs, 0, 50)).toMatchObject({ page: 0, offset: 0, hasPrev: false, hasNext: true });
    expect(slicePage(xs, 2, 50)).toMatchObject({ rows: xs.slice(100), page: 2, offset: 100, hasPrev: true, hasNext: false });
    expect(slicePage(xs, 9, 50).page).toBe(2);
    expect(slicePage([], 3, 50)).toMatchObject({ rows: [], page: 0, hasPrev: false, hasNext: false });
  });
});
