/**
 * Annotation state: shapes in image pixels, an in-progress draft, selection and
 * undo/redo. Pure (no DOM), so it is unit-tested on its own.
 */
import { simplifyClosed, simplifyRdp, dedupe } from "../geometry/rdp";
import { smoothOutline } from "../geometry/bezier";
import { insertVertex } from "../geometry/hittest";
import { clonePts, type Pt } from "../geometry/types";
import type { ShapeJson, TaskLabel, ToolName } from "../api";

export interface Shape {
  type: ToolName;
  points: Pt[];
  label?: string;
  /** The frame of a stack the shape is on (0-based); absent on a plain image. */
  frame?: number;
}

export interface Selection {
  shape: number;
  vertex: number | null;
}

export function minPoints(tool: ToolName): number {
  return tool === "point" ? 1 : tool === "polyline" ? 2 : 3;
}

export function isClosed(tool: ToolName): boolean {
  return tool === "contour" || tool === "polygon";
}

function cloneShapes(s: readonly Shape[]): Shape[] {
  return s.map((x) => ({ ...x, points: clonePts(x.points) }));
}

/** One step of the history: the shapes and the outline being drawn. */
interface Snapshot {
  shapes: Shape[];
  draft: Pt[];
}

/** The palette's label for digit key `key` ("1" is the first label), or null past the palette. */
export function labelForKey(labels: readonly TaskLabel[], key: string): TaskLabel | null {
  if (!/^[1-9]$/.test(key)) return null;
  return labels[Number(key) - 1] ?? null;
}

export class EditorModel {
  shapes: Shape[] = [];
  /** The task's labels; new shapes carry the active one (the first until another is chosen). */
  labels: TaskLabel[] = [];
  activeLabel: string | null = null;
  draft: Pt[] = [];
  selection: Selection | null = null;
  // Every step, drawing ones included, is a snapshot: undo right after closing an outline re-opens
  // it, the next undo removes its last vertex (issue 11: it deleted the whole shape).
  private past: Snapshot[] = [];
  private future: Snapshot[] = [];
  private listeners = new Set<() => void>();
  /** Count of edits since load (for "unsaved" hints). */
  revision = 0;
  /** Frames of the image (1 for a plain one) and the one on show: shapes are drawn on it. */
  frames = 1;
  frame = 0;

  constructor(
    public tool: ToolName,
    public maxShapes: number,
    public width: number,
    public height: number,
  ) {}

  setLabels(labels: readonly TaskLabel[]): void {
    this.labels = [...labels];
    this.activeLabel = labels[0]?.name ?? null;
    this.emit();
  }

  chooseLabel(name: string): boolean {
    if (!this.labels.some((l) => l.name === name)) return false;
    this.activeLabel = name;
    this.emit();
    return true;
  }

  /** The colour of a shape's label, or null for a shape without one (the view's palette then). */
  colorOf(shape: Shape): string | null {
    return this.labels.find((l) => l.name === shape.label)?.color ?? null;
  }

  /** A new shape of the tool, with the active label, on the frame on show (of a stack). */
  private newShape(points: Pt[]): Shape {
    return {
      type: this.tool,
      points,
      ...(this.activeLabel !== null ? { label: this.activeLabel } : {}),
      ...(this.frames > 1 ? { frame: this.frame } : {}),
    };
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(): void {
    for (const fn of this.listeners) fn();
  }

  get closed(): boolean {
    return isClosed(this.tool);
  }

  /** On a stack the shape limit is per frame: an outline on every slice is one object. */
  get full(): boolean {
    return this.shapes.filter((s) => this.onFrame(s)).length >= this.maxShapes;
  }

  /** Whether a shape is on the frame on show (every shape is, on a plain image). */
  onFrame(s: Shape): boolean {
    return this.frames <= 1 || (s.frame ?? 0) === this.frame;
  }

  /** The frames that have at least one shape (for the thumbnail strip). */
  framesWithShapes(): Set<number> {
    return new Set(this.shapes.map((s) => s.frame ?? 0));
  }

  /**
   * Show frame k. Refused (false) while an outline is open: it belongs to the frame it was begun on.
   */
  setFrame(k: number): boolean {
    const frame = Math.min(Math.max(Math.round(k), 0), this.frames - 1);
    if (frame === this.frame) return true;
    if (this.draft.length) return false;
    this.frame = frame;
    this.selection = null;
    this.emit();
    return true;
  }

  clamp(p: Pt): Pt {
    const x = Math.min(Math.max(p[0], 0), Math.max(0, this.width - 1));
    const y = Math.min(Math.max(p[1], 0), Math.max(0, this.height - 1));
    return [Math.round(x * 100) / 100, Math.round(y * 100) / 100];
  }

  private snapshot(): Snapshot {
    return { shapes: cloneShapes(this.shapes), draft: clonePts(this.draft) };
  }

  private restore(s: Snapshot): void {
    this.shapes = s.shapes;
    this.draft = s.draft;
  }

  /** Record the current state for undo before a change. */
  checkpoint(): void {
    this.past.push(this.snapshot());
    if (this.past.length > 200) this.past.shift();
    this.future = [];
    this.revision++;
  }

  /** Drop the last checkpoint (a drag that did not move anything). */
  dropCheckpoint(): void {
    this.past.pop();
    this.revision--;
  }

  get canUndo(): boolean {
    return this.past.length > 0 || this.draft.length > 0;
  }
  get canRedo(): boolean {
    return this.future.length > 0;
  }

  /** Undo one step: a vertex, a closing, a move, a deletion. */
  undo(): void {
    const prev = this.past.pop();
    if (prev) {
      this.future.push(this.snapshot());
      this.restore(prev);
    } else if (this.draft.length > 0) {
      this.draft.pop(); // a restored outline has no history of its own: its vertices go one by one
    } else return;
    this.revision++;
    this.selection = null;
    this.emit();
  }

  redo(): void {
    const next = this.future.pop();
    if (!next) return;
    this.past.push(this.snapshot());
    this.restore(next);
    this.selection = null;
    this.revision++;
    this.emit();
  }

  /** Start from these shapes (and an outline left open), with no history. */
  load(shapes: readonly Shape[], draft: readonly Pt[] = []): void {
    this.shapes = cloneShapes(shapes);
    this.draft = clonePts(draft);
    this.selection = null;
    this.past = [];
    this.future = [];
    this.revision = 0;
    this.emit();
  }

  /** Remove every shape (on a stack: every shape of the frame on show) and the open outline. */
  clearAll(): void {
    const kept = this.shapes.filter((s) => !this.onFrame(s));
    if (kept.length === this.shapes.length && !this.draft.length) return;
    this.checkpoint();
    this.shapes = kept;
    this.draft = [];
    this.selection = null;
    this.emit();
  }

  // ---- drawing -------------------------------------------------------------

  addDraftVertex(p: Pt): boolean {
    if (this.tool === "point") return this.addPoint(p);
    if (this.full && this.draft.length === 0) return false;
    this.checkpoint();
    this.draft.push(this.clamp(p));
    this.selection = null;
    this.emit();
    return true;
  }

  /** Close/finish the draft if it has enough vertices. Returns true when a shape was added. */
  finishDraft(): boolean {
    const pts = dedupe(this.draft);
    if (pts.length < minPoints(this.tool) || this.full) {
      return false;
    }
    this.checkpoint();
    this.shapes.push(this.newShape(pts));
    this.draft = [];
    this.selection = { shape: this.shapes.length - 1, vertex: null };
    this.emit();
    return true;
  }

  cancelDraft(): void {
    if (!this.draft.length) return;
    this.checkpoint();
    this.draft = [];
    this.emit();
  }

  /**
   * A freehand stroke (raw pointer samples, image pixels) simplified with RDP at
   * `tolerance` pixels. Without a draft it becomes a shape on its own; with a
   * draft it extends the draft.
   */
  addStroke(stroke: readonly Pt[], tolerance: number): boolean {
    if (this.tool === "point") return false;
    const pts = stroke.map((p) => this.clamp(p));
    if (this.draft.length > 0) {
      const simplified = simplifyRdp(pts, tolerance);
      this.checkpoint();
      this.draft.push(...simplified);
      this.draft = dedupe(this.draft);
      this.emit();
      return true;
    }
    if (this.full) return false;
    const simplified = this.closed ? simplifyClosed(pts, tolerance) : simplifyRdp(dedupe(pts), tolerance);
    if (simplified.length < minPoints(this.tool)) return false;
    this.checkpoint();
    this.shapes.push(this.newShape(simplified));
    this.selection = { shape: this.shapes.length - 1, vertex: null };
    this.emit();
    return true;
  }

  addPoint(p: Pt): boolean {
    if (this.full) return false;
    this.checkpoint();
    this.shapes.push(this.newShape([this.clamp(p)]));
    this.selection = { shape: this.shapes.length - 1, vertex: 0 };
    this.emit();
    return true;
  }

  // ---- editing -------------------------------------------------------------

  select(sel: Selection | null): void {
    this.selection = sel;
    this.emit();
  }

  /** Live move during a drag (call checkpoint() once when the drag starts). */
  moveVertex(shape: number, vertex: number, p: Pt): void {
    const s = this.shapes[shape];
    if (!s || !s.points[vertex]) return;
    s.points[vertex] = this.clamp(p);
    this.emit();
  }

  insertVertex(shape: number, edge: number, p: Pt): number {
    const s = this.shapes[shape];
    if (!s) return -1;
    this.checkpoint();
    s.points = insertVertex(s.points, edge, this.clamp(p));
    this.selection = { shape, vertex: edge + 1 };
    this.emit();
    return edge + 1;
  }

  deleteVertex(shape: number, vertex: number): void {
    const s = this.shapes[shape];
    if (!s) return;
    this.checkpoint();
    if (s.points.length - 1 < minPoints(s.type)) {
      this.shapes.splice(shape, 1);
      this.selection = null;
    } else {
      s.points.splice(vertex, 1);
      this.selection = { shape, vertex: null };
    }
    this.emit();
  }

  deleteShape(shape: number): void {
    if (!this.shapes[shape]) return;
    this.checkpoint();
    this.shapes.splice(shape, 1);
    this.selection = null;
    this.emit();
  }

  /** Delete what is selected: a vertex when one is, otherwise the whole shape. */
  deleteSelection(): boolean {
    const sel = this.selection;
    if (!sel) return false;
    const s = this.shapes[sel.shape];
    if (!s) return false;
    if (sel.vertex !== null && s.type !== "point") this.deleteVertex(sel.shape, sel.vertex);
    else this.deleteShape(sel.shape);
    return true;
  }

  /** Live translation during a drag, from the shape's points at drag start. */
  translateShape(shape: number, origin: readonly Pt[], dx: number, dy: number): void {
    const s = this.shapes[shape];
    if (!s) return;
    // keep the whole shape inside the image
    let minX = Infinity;
    let minY = Infinity;
    let maxX = -Infinity;
    let maxY = -Infinity;
    for (const [x, y] of origin) {
      minX = Math.min(minX, x);
      minY = Math.min(minY, y);
      maxX = Math.max(maxX, x);
      maxY = Math.max(maxY, y);
    }
    const cdx = Math.min(Math.max(dx, -minX), this.width - 1 - maxX);
    const cdy = Math.min(Math.max(dy, -minY), this.height - 1 - maxY);
    s.points = origin.map(([x, y]) => [Math.round((x + cdx) * 100) / 100, Math.round((y + cdy) * 100) / 100] as Pt);
    this.emit();
  }

  // ---- output --------------------------------------------------------------

  /**
   * Shapes for the API. With `smooth`, closed contours (and polylines) are sent as
   * their flattened Bézier outline, which passes through every vertex, so the
   * stored mask is what the annotator saw.
   */
  toJson(smooth: boolean): ShapeJson[] {
    return this.shapes
      .filter((s) => s.points.length >= minPoints(s.type))
      .map((s) => {
        let pts = s.points;
        if (smooth && s.type !== "point" && s.type !== "polygon" && pts.length >= 3) {
          pts = smoothOutline(pts, isClosed(s.type), 2).map((p) => this.clamp(p));
        }
        const out: ShapeJson = { type: s.type, points: clonePts(pts) };
        if (s.label) out.label = s.label;
        if (s.frame !== undefined) out.frame = s.frame;
        return out;
      });
  }
}
