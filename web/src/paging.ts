/**
 * Cursor pagination of the API's list routes (API.md v1.1 "Lists at scale"): a list route answers one
 * page as a JSON array and names the next page in a `Link: <url>; rel="next"` header (RFC 8288).
 *
 * Nothing here knows about tokens or the API's base path: the caller hands in a `Getter` that performs
 * the request (api.ts gives the authenticated one), so the helpers run unchanged under vitest against
 * a real HTTP server.
 */
import LinkHeader from "http-link-header";
import { fmtInt } from "./dom";

/** Performs a GET of an absolute URL; throws on an HTTP error. */
export type Getter = (url: string, signal?: AbortSignal) => Promise<Response>;

export interface Page<T> {
  /** The absolute URL that answered this page. */
  url: string;
  items: T[];
  /** The absolute URL of the next page, or null on the last page. */
  next: string | null;
}

/**
 * The rel="next" target of a Link header value, resolved against the URL that answered.
 * A link to another origin is refused: the getter sends the user's bearer token.
 */
export function nextLink(header: string | null | undefined, base: string): string | null {
  if (!header) return null;
  let refs: LinkHeader.Reference[];
  try {
    refs = LinkHeader.parse(header).rel("next");
  } catch {
    return null;
  }
  const ref = refs[0];
  if (!ref) return null;
  const target = new URL(ref.uri, base);
  if (target.origin !== new URL(base).origin) throw new Error(`refusing a next page on another origin: ${target.origin}`);
  return target.href;
}

/** One page: the JSON array the URL answers, and where the next page is. */
export async function fetchPage<T>(url: string, get: Getter, signal?: AbortSignal): Promise<Page<T>> {
  const res = await get(url, signal);
  const answered = res.url || url; // after redirects; a Response built by hand has no url
  const body: unknown = await res.json();
  if (!Array.isArray(body)) throw new Error(`expected a JSON list from ${url}`);
  return { url: answered, items: body as T[], next: nextLink(res.headers.get("Link"), answered) };
}

export interface FetchAllOptions<T> {
  signal?: AbortSignal;
  /** Stop once this many items are in hand (the result may hold a little more: whole pages). */
  maxItems?: number;
  /** Called after each page, e.g. to render progressively. */
  onPage?: (page: Page<T>, soFar: T[]) => void;
}

/** Every item of a list route, following rel="next" until the last page (or maxItems). */
export async function fetchAll<T>(url: string, get: Getter, opts: FetchAllOptions<T> = {}): Promise<T[]> {
  const out: T[] = [];
  const seen = new Set<string>();
  let at: string | null = url;
  while (at !== null) {
    if (seen.has(at)) throw new Error(`the list loops back to a page already read: ${at}`);
    seen.add(at);
    const page: Page<T> = await fetchPage<T>(at, get, opts.signal);
    out.push(...page.items);
    opts.onPage?.(page, out);
    if (opts.maxItems !== undefined && out.length >= opts.maxItems) break;
    at = page.next;
  }
  return out;
}

/**
 * Next / previous through a list route, one page in memory. The URLs of the pages already visited
 * are kept, so "previous" goes back exactly and `reload()` refreshes the page on show (polling).
 * A load overtaken by a later one (a second click) resolves to null and changes nothing.
 */
export class Pager<T> {
  private urls: string[];
  private offsets: number[] = [0];
  private index = 0;
  private seq = 0;
  private moving: Promise<Page<T> | null> | null = null;
  page: Page<T> | null = null;

  constructor(
    first: string,
    private readonly get: Getter,
  ) {
    this.urls = [first];
  }

  /** 0-based position of the page's first item in the whole list. */
  get offset(): number {
    return this.offsets[this.index] ?? 0;
  }
  get pageNumber(): number {
    return this.index + 1;
  }
  get hasPrev(): boolean {
    return this.index > 0;
  }
  get hasNext(): boolean {
    return !!this.page?.next;
  }

  /**
   * Fetch the current page again (the first one on the first call). During a move to another page
   * (next / previous / first) this is that move: a poll never undoes a click.
   */
  reload(signal?: AbortSignal): Promise<Page<T> | null> {
    return this.moving ?? this.load(this.index, signal);
  }

  next(signal?: AbortSignal): Promise<Page<T> | null> {
    const at = this.page?.next;
    if (!at) return Promise.resolve(null);
    this.urls = this.urls.slice(0, this.index + 1);
    this.urls.push(at);
    this.offsets = this.offsets.slice(0, this.index + 1);
    this.offsets.push(this.offset + (this.page?.items.length ?? 0));
    return this.move(this.index + 1, signal);
  }

  prev(signal?: AbortSignal): Promise<Page<T> | null> {
    if (!this.hasPrev) return Promise.resolve(null);
    return this.move(this.index - 1, signal);
  }

  /** Back to the first page. */
  first(signal?: AbortSignal): Promise<Page<T> | null> {
    return this.move(0, signal);
  }

  private move(index: number, signal?: AbortSignal): Promise<Page<T> | null> {
    const moving: Promise<Page<T> | null> = this.load(index, signal).finally(() => {
      if (this.moving === moving) this.moving = null;
    });
    this.moving = moving;
    return moving;
  }

  private async load(index: number, signal?: AbortSignal): Promise<Page<T> | null> {
    const mine = ++this.seq;
    const page = await fetchPage<T>(this.urls[index]!, this.get, signal);
    if (mine !== this.seq) return null;
    this.index = index;
    this.page = page;
    return page;
  }
}

/** "201–400 of 100 000" (or "201–400" when the total is not known). */
export function windowLabel(offset: number, count: number, total?: number | null): string {
  const span = count ? `${fmtInt(offset + 1)}–${fmtInt(offset + count)}` : "none";
  return total === undefined || total === null ? span : `${span} of ${fmtInt(total)}`;
}

/** Client-side paging of a list already in memory (so the DOM never holds more than a page). */
export function slicePage<T>(items: T[], page: number, size: number): { rows: T[]; page: number; offset: number; hasPrev: boolean; hasNext: boolean } {
  const pages = Math.max(1, Math.ceil(items.length / size));
  const p = Math.min(Math.max(0, page), pages - 1);
  const offset = p * size;
  return { rows: items.slice(offset, offset + size), page: p, offset, hasPrev: p > 0, hasNext: p < pages - 1 };
}
