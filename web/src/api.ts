/** HTTP client for the crowdseg API v1: the session cookie with its CSRF header, or a study link's
 * bearer token (see credentials.ts and shared/API.md). */
import type { CoverageRow } from "./coverage";
import { credentialHeaders } from "./credentials";
import type { Pt } from "./geometry/types";
import { fetchAll, Pager, type Getter } from "./paging";

export type Role = "annotator" | "taskmaster" | "admin";
export type ToolName = "contour" | "polygon" | "point" | "polyline";

export interface Me {
  id: string;
  email: string;
  name: string;
  roles: Role[];
  level?: number;
  xp?: number;
  /** Set for the anonymous account a study link made: the link it belongs to. */
  link_id?: string | null;
}

export type LinkKind = "prolific" | "mturk" | "generic";

export interface StudyLink {
  id: string;
  task_id: string;
  kind: LinkKind;
  quota: number;
  url: string;
  /** What to paste into the panel (with its own placeholders). */
  panel_url: string;
  completion_code: string;
  completion_url: string | null;
  created_at: string;
  revoked_at: string | null;
}

export interface LinkInfo {
  id: string;
  kind: LinkKind;
  quota: number;
  task: { id: string; title: string; instructions: string; tool: ToolName };
}

export interface LinkProgress {
  link_id: string;
  task_id: string;
  images: number;
  quota: number;
  done: boolean;
  completion_code: string | null;
  completion_url: string | null;
}

export interface LinkSession extends LinkProgress {
  preview: boolean;
  created: boolean;
  external_id: string | null;
  user_id: string | null;
  access_token: string | null;
  mturk_submit_to: string | null;
}

export interface Invitation {
  id: string;
  task_id: string;
  url: string;
  email: string | null;
  expires_at: string;
  created_at: string;
  revoked_at: string | null;
  accepted_by: string[];
}

export interface TaskLabel {
  name: string;
  /** `#rrggbb` */
  color: string;
}

export interface Task {
  id: string;
  owner_id?: string;
  title: string;
  instructions: string;
  tool: ToolName;
  replicates: number;
  /** Adaptive replicates: submissions after which an image may retire (= replicates: fixed coverage). */
  min_replicates?: number | null;
  /** The certainty at which such an image retires (0–1). */
  confidence?: number;
  order: "name_asc" | "name_desc" | "random";
  unseen_first: boolean;
  metric: "dice" | "jaccard" | "mhd";
  pass_threshold: number;
  reveal_reference?: "after_passing" | "after_each_attempt" | "never";
  visibility: "public" | "private";
  max_shapes: number;
  labels?: TaskLabel[];
  labels_exclusive?: boolean;
  /** starting share of `next` answers that are reference images (falls with the annotator's count) */
  gold_rate?: number;
  /** a gold answer's response carries the reference's shapes */
  gold_feedback?: boolean;

  /** Stacks: each rater's volume is filled between the frames they drew on. */
  interpolate_frames?: boolean;
  status?: "draft" | "open" | "closed";
  members?: string[];
  /** `null`: off; else raters below `min_quality` (with enough images) are left out of the consensus. */
  screening?: { min_quality: number } | null;
  /** Raters left out of every consensus by hand. */
  excluded_users?: string[];
  /** Raters kept in every consensus by hand, whatever the screening says. */
  admitted_users?: string[];
  [k: string]: unknown;
}

export interface ShapeJson {
  type: ToolName;
  points: Pt[];
  label?: string;
  /** The frame of a stack (0-based). */
  frame?: number;
}

export interface ImageInfo {
  id: string;
  name?: string;
  width: number;
  height: number;
  submissions?: number;
  /** The image has an expert reference. */
  reference?: boolean;
  /** Frames of a stack (1 for a plain image), its voxel spacing (z, y, x) in mm, and its default window. */
  frames?: number;
  spacing?: [number, number, number] | null;
  window?: [number, number] | null;
}

export interface Reference {
  image_id: string;
  shapes: ShapeJson[];
  version: number;
  updated_by?: string | null;
  updated_at?: string | null;
}

export type ReviewDecision = "accept" | "reject";

/** A submission as GET /images/{id}/submissions lists it: ``review`` is the task master's verdict, if any. */
export interface SubmissionRow {
  id: string;
  user_id: string;
  shapes: ShapeJson[];
  duration_ms: number | null;
  created_at: string;
  review: { decision: ReviewDecision; reason: string | null; by: string; at: string } | null;
}

/** GET /tasks/{id}/evaluation: masks give dice, jaccard, mhd, pixel_error (consensus) and dice, jaccard,
 * sensitivity, specificity (raters); points and polylines precision, recall, rmse. */
export interface Evaluation {
  images: number;
  consensus: Record<string, number | null>;
  raters: Array<{ user_id: string; images: number } & Record<string, number | null>>;
  per_image?: Array<Record<string, unknown>>;
}

export interface NextImage {
  image: ImageInfo;
  lease_expires_at?: string;
  /** Images the caller submitted on the task before this one, of `quota`: a study link's quota, or
   * (`link_id` null) every image of the task. */
  progress?: { link_id: string | null; images: number; quota: number } | null;
}

export interface Qualification {
  required: boolean;
  passed: boolean;
  images: ImageInfo[];
}

export interface AttemptResult {
  score: number;
  metric: string;
  passed: boolean;
  reference?: ShapeJson[];
  [k: string]: unknown;
}

export interface UserStat {
  user_id: string;
  submissions: number;
  sensitivity?: number | null;
  specificity?: number | null;
  mean_seconds?: number | null;
  /** 0–1: agreement with the other raters' consensus (the rater left out), or with references. */
  quality?: number | null;
  /** The images behind `quality`. */
  quality_images?: number;
  /** Quality below the crowd's median minus 3 MAD, with at least 5 images behind it. */
  flagged?: boolean;
  /** Left out of the task's consensus (screening or by hand); still scored and exported. */
  excluded?: boolean;
  name?: string;
  email?: string;
}

export interface TaskStats {
  images: number;
  submissions: number;
  /** v1.1: a histogram {"<submissions>": <images>} (v1: submissions per image id). */
  coverage: Record<string, number>;
  /** v1.1: images that need no more work (v1: complete_images). */
  complete?: number;
  complete_images?: number;
  users: UserStat[];
  [k: string]: unknown;
}

export interface MeStats {
  submissions: number;
  per_task: Array<Record<string, unknown>>;
  per_day: Record<string, number>;
  sensitivity?: number | null;
  specificity?: number | null;
  quality?: number | null;
  quality_images?: number;
  level?: number;
  xp?: number;
  [k: string]: unknown;
}

export interface ExportJob {
  id: string;
  status: "queued" | "running" | "done" | "failed";
  progress: number;
  error?: string | null;
}

export interface UserRow {
  id: string;
  email: string;
  name: string;
  roles: Role[];
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public detail: string,
    public body: unknown,
  ) {
    super(detail || `HTTP ${status}`);
  }
}

export { API } from "./paths";
import { API } from "./paths";
// Only a study link's worker keeps a bearer token, for this tab (a panel's iframe gets no SameSite
// cookie); everyone else is signed in by the HttpOnly session cookie alone.
const LINK_TOKEN_KEY = "crowdseg.link-token";

let token: string | null = sessionStorage.getItem(LINK_TOKEN_KEY);
let unauthorizedHandler: (() => void) | null = null;

/** The bearer token of a study link's tab (null when the session cookie authenticates). */
export function getToken(): string | null {
  return token;
}
/** A study link's token for this tab; null drops it (the session cookie takes over). */
export function setToken(t: string | null): void {
  token = t;
  if (t) sessionStorage.setItem(LINK_TOKEN_KEY, t);
  else sessionStorage.removeItem(LINK_TOKEN_KEY);
}
export function onUnauthorized(fn: () => void): void {
  unauthorizedHandler = fn;
}

/** What authenticates a request of `method` besides the cookie the browser sends itself. */
export function authHeaders(method = "GET"): Record<string, string> {
  return credentialHeaders(method, document.cookie, token);
}

function detailOf(body: unknown, status: number): string {
  if (body && typeof body === "object" && "detail" in body) {
    const d = (body as { detail: unknown }).detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d))
      return d
        .map((e) => (e && typeof e === "object" && "msg" in e ? String((e as { msg: unknown }).msg) : JSON.stringify(e)))
        .join("; ");
    return JSON.stringify(d);
  }
  return `HTTP ${status}`;
}

export interface RequestOpts {
  method?: string;
  body?: unknown;
  form?: FormData;
  keepalive?: boolean;
  signal?: AbortSignal;
  /** Do not trigger the global sign-out on 401 (login form, probes). */
  quiet401?: boolean;
}

/** Raw fetch against the API; returns the Response (throws ApiError on 4xx/5xx). */
export function raw(path: string, opts: RequestOpts = {}): Promise<Response> {
  return rawUrl(API + path, opts);
}

/** The absolute URL of an API path (what the pagination helpers work with). */
export function apiUrl(path: string): string {
  return new URL(API + path, location.href).href;
}

/** `raw` for a URL already made (a page's rel="next" link, same origin). */
export async function rawUrl(url: string, opts: RequestOpts = {}): Promise<Response> {
  let body: BodyInit | undefined;
  if (opts.form) body = opts.form;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  const method = opts.method ?? (body ? "POST" : "GET");
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders(method) };
  if (opts.body !== undefined && !opts.form) headers["Content-Type"] = "application/json";
  const res = await fetch(url, {
    method,
    headers,
    body,
    credentials: "same-origin",
    keepalive: opts.keepalive,
    signal: opts.signal,
  });
  if (!res.ok) {
    let parsed: unknown = null;
    try {
      parsed = await res.json();
    } catch {
      /* not JSON */
    }
    if (res.status === 401 && !opts.quiet401 && unauthorizedHandler) unauthorizedHandler();
    throw new ApiError(res.status, detailOf(parsed, res.status), parsed);
  }
  return res;
}

export async function call<T>(path: string, opts: RequestOpts = {}): Promise<T> {
  const res = await raw(path, opts);
  if (res.status === 204) return null as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : null) as T;
}

export async function blob(path: string): Promise<Blob> {
  return (await raw(path)).blob();
}

/** Fetch an image from the API and decode it. */
export async function bitmap(path: string): Promise<ImageBitmap> {
  return createImageBitmap(await blob(path));
}

export interface UploadResult {
  accepted: Array<{ id: string; name: string }>;
  rejected: Array<{ name: string; reason: string }>;
}

/** Multipart upload with progress (XMLHttpRequest: fetch has no upload progress). */
export function upload<T>(path: string, form: FormData, onProgress: (fraction: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", API + path);
    for (const [k, v] of Object.entries(authHeaders("POST"))) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      let body: unknown = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body as T);
      } else {
        if (xhr.status === 401 && unauthorizedHandler) unauthorizedHandler();
        reject(new ApiError(xhr.status, detailOf(body, xhr.status), body));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "network error", null));
    xhr.send(form);
  });
}

/** The authenticated GET that the pagination helpers use. */
export const apiGet: Getter = (url, signal) => rawUrl(url, { signal });

/** Every item of a list route, page after page (for lists that stay small: tasks, users, tutorials). */
export function listAll<T>(path: string, maxItems?: number): Promise<T[]> {
  return fetchAll<T>(apiUrl(path), apiGet, { maxItems });
}

/** Next / previous through a list route, `limit` items a page. */
export function pager<T>(path: string, limit: number): Pager<T> {
  return new Pager<T>(apiUrl(`${path}${path.includes("?") ? "&" : "?"}limit=${limit}`), apiGet);
}

/** The server's largest page (API.md v1.1). */
export const MAX_LIMIT = 5000;

export const api = {
  signup: (b: { email: string; password: string; name: string }) =>
    call<Me>("/auth/signup", { body: b, quiet401: true }),
  login: (b: { email: string; password: string }) =>
    call<{ access_token: string; token_type: string }>("/auth/login", { body: b, quiet401: true }),
  logout: () => call<unknown>("/auth/logout", { method: "POST", quiet401: true }),
  me: () => call<Me>("/me", { quiet401: true }),
  meStats: () => call<MeStats>("/me/stats"),
  users: () => listAll<UserRow>(`/users?limit=${MAX_LIMIT}`),
  setRoles: (id: string, roles: Role[]) => call<unknown>(`/users/${enc(id)}/roles`, { method: "PUT", body: { roles } }),
  tasks: () => listAll<Task>(`/tasks?limit=${MAX_LIMIT}`),
  task: (id: string) => call<Task>(`/tasks/${enc(id)}`),
  createTask: (t: Partial<Task>) => call<Task>("/tasks", { body: t }),
  patchTask: (id: string, t: Partial<Task>) => call<Task>(`/tasks/${enc(id)}`, { method: "PATCH", body: t }),
  addMember: (id: string, who: string) =>
    call<Task>(`/tasks/${enc(id)}/members`, { body: who.includes("@") ? { email: who } : { user_id: who } }),
  /** The task's images, a page at a time (a task may hold 100 000). */
  images: (id: string, limit = 200) => pager<ImageInfo>(`/tasks/${enc(id)}/images`, limit),
  /** Who submitted for each image, a page at a time, in name order. */
  coverage: (id: string, limit = 200) => pager<CoverageRow>(`/tasks/${enc(id)}/coverage`, limit),
  tutorialImages: (id: string) => listAll<ImageInfo>(`/tasks/${enc(id)}/images?tutorial=true&limit=${MAX_LIMIT}`),
  qualification: (id: string) => call<Qualification>(`/tasks/${enc(id)}/qualification`),
  attempt: (id: string, image_id: string, shapes: ShapeJson[]) =>
    call<AttemptResult>(`/tasks/${enc(id)}/qualification/attempts`, { body: { image_id, shapes } }),
  /** The next image; `skip`: images passed over this visit (their leases are given back). */
  next: (id: string, skip: readonly string[] = []) =>
    call<NextImage | null>(`/tasks/${enc(id)}/next${skip.length ? "?" + skip.map((s) => `skip=${enc(s)}`).join("&") : ""}`),
  stats: (id: string) => call<TaskStats>(`/tasks/${enc(id)}/stats`),
  consensus: (imageId: string) => call<Record<string, unknown>>(`/images/${enc(imageId)}/consensus`),
  evaluation: (id: string) => call<Evaluation>(`/tasks/${enc(id)}/evaluation`),
  reference: (imageId: string) => call<Reference>(`/images/${enc(imageId)}/reference`),
  submissions: (imageId: string) => call<SubmissionRow[]>(`/images/${enc(imageId)}/submissions`),
  review: (submissionId: string, decision: ReviewDecision, reason?: string) =>
    call<SubmissionRow>(`/submissions/${enc(submissionId)}/review`, { body: reason ? { decision, reason } : { decision } }),
  putReference: (imageId: string, shapes: ShapeJson[]) =>
    call<Reference>(`/images/${enc(imageId)}/reference`, { method: "PUT", body: { shapes } }),
  startExport: (id: string) => call<{ id: string }>(`/tasks/${enc(id)}/exports`, { method: "POST" }),
  exportStatus: (id: string) => call<ExportJob>(`/exports/${enc(id)}`),
  removeMember: (id: string, userId: string) => call<Task>(`/tasks/${enc(id)}/members/${enc(userId)}`, { method: "DELETE" }),
  // external crowds: study links (the task's owner), opening one (the panel's worker), the ledger
  links: (id: string) => listAll<StudyLink>(`/tasks/${enc(id)}/links?limit=${MAX_LIMIT}`),
  createLink: (id: string, b: { kind: LinkKind; quota: number; completion_url?: string; completion_code?: string }) =>
    call<StudyLink>(`/tasks/${enc(id)}/links`, { body: b }),
  revokeLink: (id: string, linkId: string) => call<StudyLink>(`/tasks/${enc(id)}/links/${enc(linkId)}`, { method: "DELETE" }),
  ledgerCsv: async (id: string) => (await raw(`/tasks/${enc(id)}/ledger`, { method: "GET" })).text(),
  linkInfo: (linkId: string) => call<LinkInfo>(`/links/${enc(linkId)}`, { quiet401: true }),
  openLink: (linkId: string, params: Record<string, string>) =>
    call<LinkSession>(`/links/${enc(linkId)}/sessions`, { body: params, quiet401: true }),
  linkProgress: (linkId: string) => call<LinkProgress>(`/links/${enc(linkId)}/progress`),
  // invitations
  invitations: (id: string) => listAll<Invitation>(`/tasks/${enc(id)}/invitations?limit=${MAX_LIMIT}`),
  createInvitation: (id: string, b: { email?: string; expires_in_hours: number }) =>
    call<Invitation>(`/tasks/${enc(id)}/invitations`, { body: b }),
  revokeInvitation: (id: string, invitationId: string) =>
    call<Invitation>(`/tasks/${enc(id)}/invitations/${enc(invitationId)}`, { method: "DELETE" }),
  acceptInvitation: (invitationId: string) =>
    call<{ task_id: string; title: string }>(`/invitations/${enc(invitationId)}/accept`, { method: "POST" }),
};

export function enc(s: string): string {
  return encodeURIComponent(s);
}

/** RFC 4122 v4 UUID (crypto.randomUUID needs a secure context; fall back to getRandomValues). */
export function uuid(): string {
  if (typeof crypto !== "undefined" && "randomUUID" in crypto && typeof crypto.randomUUID === "function") {
    try {
      return crypto.randomUUID();
    } catch {
      /* insecure context */
    }
  }
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
