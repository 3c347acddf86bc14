import { describe, expect, it } from "vitest";
import { backoffMs, fetchTransport, SubmissionQueue, type SubmissionBody, type Transport } from "./saver";

class MemStorage {
  m = new Map<string, string>();
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.m.set(k, v);
  }
  removeItem(k: string) {
    this.m.delete(k);
  }
}

const body = (id: string): SubmissionBody => ({
  id,
  image_id: "img",
  shapes: [{ type: "contour", points: [[0, 0], [5, 0], [5, 5]] }],
  started_at: "2024-01-01T00:00:00Z",
  duration_ms: 1234,
});

describe("SubmissionQueue", () => {
  it("removes a submission once acknowledged", async () => {
    const sent: string[] = [];
    const t: Transport = { send: async (_t, b) => (sent.push(b.id), { status: 201 }) };
    const st = new MemStorage();
    const q = new SubmissionQueue(t, st);
    expect(await q.submit("task", body("a"))).toBe(true);
    expect(sent).toEqual(["a"]);
    expect(q.list()).toEqual([]);
    expect(st.m.size).toBe(0);
  });

  it("keeps the drawing in storage on network failure and retries with backoff", async () => {
    let fail = true;
    const sent: string[] = [];
    const t: Transport = {
      send: async (_t, b) => {
        sent.push(b.id);
        if (fail) throw new Error("offline");
        return { status: 200 };
      },
    };
    const scheduled: Array<{ fn: () => void; ms: number }> = [];
    const st = new MemStorage();
    const q = new SubmissionQueue(t, st, (fn, ms) => {
      scheduled.push({ fn, ms });
      return 0 as unknown as ReturnType<typeof setTimeout>;
    });
    expect(await q.submit("task", body("b"))).toBe(false);
    expect(q.list()).toHaveLength(1);
    expect(q.list()[0]!.body.shapes[0]!.points).toHaveLength(3);
    expect(scheduled[0]!.ms).toBe(1000);
    await q.flush();
    expect(scheduled[1]!.ms).toBe(2000);
    // a fresh queue (page reload) still sees it
    const q2 = new SubmissionQueue(t, st);
    expect(q2.list()).toHaveLength(1);
    fail = false;
    await q2.flush();
    expect(q2.list()).toHaveLength(0);
    expect(sent).toEqual(["b", "b", "b"]);
  });

  it("retries 5xx, keeps but stops retrying 4xx", async () => {
    const st = new MemStorage();
    const q = new SubmissionQueue({ send: async () => ({ status: 422, detail: "bad" }) }, st, () => 0 as never);
    await q.submit("t", body("c"));
    expect(q.list()[0]!.rejected).toBe(true);
    expect(q.list()[0]!.last_error).toBe("bad");
    expect(q.list()[0]!.last_status).toBe(422);
    const q5 = new SubmissionQueue({ send: async () => ({ status: 503 }) }, new MemStorage(), () => 0 as never);
    await q5.submit("t", body("d"));
    expect(q5.list()[0]!.rejected).toBeUndefined();
  });

  it("re-putting the same id replaces, not duplicates", () => {
    const q = new SubmissionQueue({ send: async () => ({ status: 500 }) }, new MemStorage());
    q.put("t", body("e"));
    q.put("t", body("e"));
    expect(q.list()).toHaveLength(1);
  });

  it("backoff doubles up to a cap", () => {
    expect([1, 2, 3, 4, 10].map((a) => backoffMs(a))).toEqual([1000, 2000, 4000, 8000, 30000]);
  });

  it("sends the click times with the submission, its credentials and keepalive", async () => {
    const calls: Array<{ url: string; init: RequestInit }> = [];
    const orig = globalThis.fetch;
    globalThis.fetch = (async (url: string, init: RequestInit) => {
      calls.push({ url, init });
      return new Response(null, { status: 201 });
    }) as typeof fetch;
    try {
      const t = fetchTransport("/api/v1", () => ({ "X-CSRF-Token": "csrf" }));
      const r = await t.send("task 1", { ...body("f"), click_times: [1, 2, 3] }, true);
      expect(r.status).toBe(201);
    } finally {
      globalThis.fetch = orig;
    }
    expect(calls[0]!.url).toBe("/api/v1/tasks/task%201/submissions");
    expect(calls[0]!.init.keepalive).toBe(true);
    expect((calls[0]!.init.headers as Record<string, string>)["X-CSRF-Token"]).toBe("csrf");
    expect(calls[0]!.init.credentials).toBe("same-origin");
    expect(JSON.parse(calls[0]!.init.body as string).click_times).toEqual([1, 2, 3]);
  });
});

describe("SubmissionQueue answers", () => {
  it("hands the server's answer of an acknowledged submission to its listeners (a gold score)", async () => {
    const answer = { id: "g", gold: { metric: "dice", score: 0.8 } };
    const t: Transport = { send: async () => ({ status: 201, answer }) };
    const q = new SubmissionQueue(t, new MemStorage());
    const seen: Array<[string, unknown]> = [];
    const off = q.onAccepted((id, a) => seen.push([id, a]));
    await q.submit("task", body("g"));
    off();
    await q.submit("task", body("h"));
    expect(seen).toEqual([["g", answer]]);
  });

  it("reads the JSON answer of an acknowledged POST", async () => {
    const orig = globalThis.fetch;
    globalThis.fetch = (async () => new Response(JSON.stringify({ gold: null }), { status: 201 })) as typeof fetch;
    try {
      expect((await fetchTransport("/api/v1", () => ({})).send("t", body("i"), false)).answer).toEqual({ gold: null });
    } finally {
      globalThis.fetch = orig;
    }
  });
});
