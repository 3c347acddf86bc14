/**
 * Durable submission queue. A submission is written to localStorage before it is
 * sent and removed only when the server acknowledges it (2xx). Network errors and
 * 5xx/408/429 are retried with exponential backoff; the client-chosen `id` makes
 * retries idempotent on the server.
 */
import type { ShapeJson } from "./api";

export interface SubmissionBody {
  id: string;
  image_id: string;
  shapes: ShapeJson[];
  started_at: string;
  duration_ms: number;
  click_times?: number[];
}

export interface Pending {
  task_id: string;
  body: SubmissionBody;
  attempts: number;
  last_error?: string;
  /** HTTP status of the last attempt (0: network error) */
  last_status?: number;
  /** permanent client error: kept for the user, not retried automatically */
  rejected?: boolean;
  queued_at: string;
}

export interface Transport {
  /** `answer`: the server's JSON answer to an acknowledged submission (its gold score, if any). */
  send(taskId: string, body: SubmissionBody, keepalive: boolean): Promise<{ status: number; detail?: string; answer?: unknown }>;
}

export interface StorageLike {
  getItem(k: string): string | null;
  setItem(k: string, v: string): void;
  removeItem(k: string): void;
}

const KEY = "crowdseg.pending-submissions.v1";

export function backoffMs(attempt: number, base = 1000, cap = 30000): number {
  return Math.min(cap, base * 2 ** Math.max(0, attempt - 1));
}

export class SubmissionQueue {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private flushing: Promise<void> | null = null;
  private listeners = new Set<(q: Pending[]) => void>();
  private accepted = new Set<(id: string, answer: unknown) => void>();

  constructor(
    private transport: Transport,
    private storage: StorageLike,
    private schedule: (fn: () => void, ms: number) => ReturnType<typeof setTimeout> = (fn, ms) => setTimeout(fn, ms),
  ) {}

  list(): Pending[] {
    try {
      const v = JSON.parse(this.storage.getItem(KEY) ?? "[]") as unknown;
      return Array.isArray(v) ? (v as Pending[]) : [];
    } catch {
      return [];
    }
  }

  private save(items: Pending[]): void {
    if (items.length) this.storage.setItem(KEY, JSON.stringify(items));
    else this.storage.removeItem(KEY);
    for (const fn of this.listeners) fn(items);
  }

  onChange(fn: (q: Pending[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Called with the server's answer whenever a submission is acknowledged. */
  onAccepted(fn: (id: string, answer: unknown) => void): () => void {
    this.accepted.add(fn);
    return () => this.accepted.delete(fn);
  }

  /** Persist a submission (replacing one with the same id). Synchronous, so it is safe in pagehide. */
  put(taskId: string, body: SubmissionBody): void {
    const items = this.list().filter((p) => p.body.id !== body.id);
    items.push({ task_id: taskId, body, attempts: 0, queued_at: new Date().toISOString() });
    this.save(items);
  }

  /** Persist then try to send now. Resolves true when the server acknowledged it. */
  async submit(taskId: string, body: SubmissionBody): Promise<boolean> {
    this.put(taskId, body);
    await this.flush();
    return !this.list().some((p) => p.body.id === body.id && !p.rejected);
  }

  has(id: string): boolean {
    return this.list().some((p) => p.body.id === id);
  }

  /** Send everything pending once; schedule a retry for what failed. */
  flush(keepalive = false): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = this.doFlush(keepalive).finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async doFlush(keepalive: boolean): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    let retry = false;
    let maxAttempts = 0;
    for (const item of this.list()) {
      if (item.rejected) continue;
      let outcome: "ok" | "retry" | "rejected";
      let detail = "";
      let status = 0;
      let answer: unknown;
      try {
        const r = await this.transport.send(item.task_id, item.body, keepalive);
        detail = r.detail ?? `HTTP ${r.status}`;
        status = r.status;
        answer = r.answer;
        if (r.status >= 200 && r.status < 300) outcome = "ok";
        else if (r.status === 0 || r.status >= 500 || r.status === 408 || r.status === 429 || r.status === 401 || r.status === 403)
          outcome = "retry";
        else outcome = "rejected";
      } catch (err) {
        outcome = "retry";
        detail = err instanceof Error ? err.message : String(err);
      }
      const items = this.list();
      const cur = items.find((p) => p.body.id === item.body.id);
      if (!cur) continue;
      if (outcome === "ok") {
        this.save(items.filter((p) => p !== cur));
        for (const fn of this.accepted) fn(item.body.id, answer);
      } else {
        cur.attempts += 1;
        cur.last_error = detail;
        cur.last_status = status;
        if (outcome === "rejected") cur.rejected = true;
        else {
          retry = true;
          maxAttempts = Math.max(maxAttempts, cur.attempts);
        }
        this.save(items);
      }
    }
    if (retry) this.timer = this.schedule(() => void this.flush(), backoffMs(maxAttempts));
  }

  /** Retry a submission the server had rejected (e.g. after the user fixed it). */
  discard(id: string): void {
    this.save(this.list().filter((p) => p.body.id !== id));
  }
}

/** Sends with the session cookie; `credentials` adds what else authenticates a POST (its CSRF header,
 * or a study link's bearer token). */
export function fetchTransport(api: string, credentials: () => Record<string, string>): Transport {
  return {
    async send(taskId, body, keepalive) {
      const headers: Record<string, string> = { "Content-Type": "application/json", Accept: "application/json", ...credentials() };
      // click_times (epoch ms of every pointer press) is stored with the submission
      const wire = body;
      const res = await fetch(`${api}/tasks/${encodeURIComponent(taskId)}/submissions`, {
        method: "POST",
        headers,
        body: JSON.stringify(wire),
        credentials: "same-origin",
        keepalive,
      });
      let detail: string | undefined;
      let answer: unknown;
      if (res.ok) answer = await res.json().catch(() => undefined);
      else {
        try {
          const j = (await res.json()) as { detail?: unknown };
          detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail);
        } catch {
          detail = undefined;
        }
      }
      return { status: res.status, detail, answer };
    },
  };
}
