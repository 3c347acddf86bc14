/** Coverage of a task as the console shows it: pure functions over the API's answers (unit-tested). */

/** One row of `GET /tasks/{id}/coverage`: an image and who submitted for it. */
export interface CoverageRow {
  image_id: string;
  name: string;
  submissions: number;
  /** Leases held on the image now (a count; a boolean from a server that only says whether). */
  leased: number | boolean;
  /** The image needs no more work. */
  complete: boolean;
  users: string[];
}

/**
 * `coverage` of `/tasks/{id}/stats` as sorted [submissions, images] bins. API v1.1 gives the histogram
 * `{"<submissions>": <images>}`; a v1 server gave a count per image id, which is binned here.
 */
export function coverageHistogram(coverage: Record<string, number> | null | undefined): Array<[number, number]> {
  const entries = Object.entries(coverage ?? {});
  const bins = new Map<number, number>();
  const histogram = entries.every(([k]) => /^\d+$/.test(k));
  for (const [k, v] of entries) {
    const [submissions, images] = histogram ? [Number(k), v] : [v, 1];
    bins.set(submissions, (bins.get(submissions) ?? 0) + images);
  }
  return [...bins.entries()].sort((a, b) => a[0] - b[0]);
}

/** The bins from 0 to the highest, empty ones included, so a bar chart's x axis has no holes. */
export function denseBins(bins: Array<[number, number]>): Array<[number, number]> {
  const top = bins.reduce((m, [s]) => Math.max(m, s), 0);
  const at = new Map(bins);
  return Array.from({ length: top + 1 }, (_, s) => [s, at.get(s) ?? 0] as [number, number]);
}

export interface Progress {
  complete: number;
  images: number;
  fraction: number;
}

/**
 * Images that need no more work out of all images: the server's `complete` (v1.1), else v1's
 * `complete_images`, else the images with at least `replicates` submissions in the histogram.
 */
export function progressOf(stats: { images?: number; complete?: number; complete_images?: number; coverage?: Record<string, number> }, replicates: number): Progress {
  const bins = coverageHistogram(stats.coverage);
  const images = stats.images ?? bins.reduce((n, [, c]) => n + c, 0);
  const complete = stats.complete ?? stats.complete_images ?? bins.filter(([s]) => s >= replicates).reduce((n, [, c]) => n + c, 0);
  return { complete, images, fraction: images > 0 ? Math.min(1, complete / images) : 0 };
}

/**
 * The user columns of a page of the coverage matrix: the users who submitted for an image of the
 * page, in the given order of preference (e.g. most submissions first), then any others; at most `max`.
 */
export function matrixColumns(rows: CoverageRow[], preferred: string[], max: number): { columns: string[]; hidden: number } {
  const onPage = new Set(rows.flatMap((r) => r.users));
  const known = new Set(preferred);
  const ordered = [...preferred.filter((u) => onPage.has(u)), ...[...onPage].filter((u) => !known.has(u)).sort()];
  return { columns: ordered.slice(0, max), hidden: Math.max(0, ordered.length - max) };
}

/** How many leases a row reports. */
export function leaseCount(row: Pick<CoverageRow, "leased">): number {
  return typeof row.leased === "number" ? row.leased : row.leased ? 1 : 0;
}
