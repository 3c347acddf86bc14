/**
 * The drawing surface: Konva stage (image layer + annotation layer) with zoom,
 * pan and pointer input (mouse, touch pad, pen and touch via Pointer Events).
 * Rendering goes through Konva; hit-testing uses the tested geometry module.
 */
import Konva from "konva";
import { catmullRomToBezier } from "../geometry/bezier";
import { nearestEdge, nearestVertex, pointInPolygon, segmentDistance2 } from "../geometry/hittest";
import type { Pt } from "../geometry/types";
import type { ShapeJson } from "../api";
import { interpolatedOutlines } from "./interpolate";
import { EditorModel, isClosed, minPoints } from "./model";

export interface ViewOptions {
  smooth: boolean;
  tolerance: number;
  readonly?: boolean;
}

type Drag =
  | { kind: "vertex"; shape: number; vertex: number; moved: boolean }
  | { kind: "shape"; shape: number; origin: Pt[]; start: Pt; moved: boolean }
  | { kind: "stroke"; start: Pt; startScreen: Pt; points: Pt[]; freehand: boolean; appendDraft: boolean }
  | { kind: "pan"; last: Pt }
  | { kind: "window"; start: Pt }
  | null;

const COLORS = ["#22d3ee", "#f472b6", "#a3e635", "#fb923c", "#a78bfa", "#facc15", "#34d399", "#f87171"];
const HIT_PX = 9;
const FREEHAND_PX = 5;
const WHEEL_NOTCH_PX = 40;

export class EditorView {
  readonly stage: Konva.Stage;
  private imageLayer = new Konva.Layer({ listening: false });
  private shapeLayer = new Konva.Layer({ listening: false });
  private kImage = new Konva.Image({ image: undefined, x: 0, y: 0 });
  private overlay: Konva.Shape;
  private drag: Drag = null;
  private pointers = new Map<number, Pt>();
  private pinch: { dist: number; mid: Pt } | null = null;
  private hover: Pt | null = null;
  private spaceDown = false;
  private ro: ResizeObserver;
  private disposed = false;
  /** Whether the view shows the fitted image (nobody zoomed or panned since): a resize refits it. */
  private fitted = true;
  reference: ShapeJson[] = [];
  /** A stack of a task that interpolates: outlines between drawn frames are shown, dashed and labelled. */
  interpolate = false;
  /** Optional consensus/probability overlay drawn above the image. */
  clickTimes: number[] = [];
  opts: ViewOptions;
  onStatus: ((msg: string) => void) | null = null;
  /** Set where the image can be windowed: a right-button drag (dx, dy in screen pixels) adjusts it. */
  onWindowDrag: ((dx: number, dy: number, done: boolean) => void) | null = null;
  /** Set on a stack: a mouse wheel moves this many frames instead of zooming. */
  onFrameWheel: ((frames: number) => void) | null = null;
  private wheelFrames = 0;
  private unsub: () => void;

  constructor(
    readonly container: HTMLElement,
    readonly model: EditorModel,
    opts: Partial<ViewOptions> = {},
  ) {
    this.opts = { smooth: true, tolerance: 2, readonly: false, ...opts };
    container.classList.add("editor-surface");
    container.tabIndex = 0;
    const { width, height } = container.getBoundingClientRect();
    this.stage = new Konva.Stage({ container: container as HTMLDivElement, width: Math.max(1, width), height: Math.max(1, height) });
    this.imageLayer.add(this.kImage);
    this.overlay = new Konva.Shape({
      listening: false,
      perfectDrawEnabled: false,
      sceneFunc: (ctx) => this.drawScene(ctx._context),
    });
    this.shapeLayer.add(this.overlay);
    this.stage.add(this.imageLayer, this.shapeLayer);
    this.unsub = model.onChange(() => this.redraw());
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(container);
    const el = this.stage.content;
    el.style.touchAction = "none";
    el.addEventListener("pointerdown", this.onDown);
    el.addEventListener("pointermove", this.onMove);
    el.addEventListener("pointerup", this.onUp);
    el.addEventListener("pointercancel", this.onCancel);
    el.addEventListener("pointerleave", this.onLeave);
    el.addEventListener("wheel", this.onWheel, { passive: false });
    el.addEventListener("contextmenu", (e) => e.preventDefault());
    window.addEventListener("keydown", this.onKeySpace);
    window.addEventListener("keyup", this.onKeySpace);
    window.addEventListener("orientationchange", this.onOrientation);
    screen.orientation?.addEventListener?.("change", this.onOrientation);
    this.fit();
  }

  /** A phone turned: the whole image again, whatever the zoom was (issue 11: it was not re-fitted). */
  private onOrientation = (): void => {
    this.resize();
    this.fit(); // fitted from now on, so the resize that may still follow fits again
  };

  destroy(): void {
    this.disposed = true;
    this.unsub();
    this.ro.disconnect();
    window.removeEventListener("keydown", this.onKeySpace);
    window.removeEventListener("keyup", this.onKeySpace);
    window.removeEventListener("orientationchange", this.onOrientation);
    screen.orientation?.removeEventListener?.("change", this.onOrientation);
    this.stage.destroy();
  }

  setImage(img: CanvasImageSource | undefined): void {
    this.kImage.image(img);
    this.kImage.width(this.model.width);
    this.kImage.height(this.model.height);
    this.fit();
  }

  /** Another frame of the same stack: the same size, so the zoom and pan stay as they are. */
  swapImage(img: CanvasImageSource): void {
    this.kImage.image(img);
    this.imageLayer.batchDraw();
  }

  setReference(shapes: ShapeJson[]): void {
    this.reference = shapes;
    this.redraw();
  }

  // ---- view transform -------------------------------------------------------

  get scale(): number {
    return this.stage.scaleX();
  }

  screenToImage(p: Pt): Pt {
    const s = this.scale;
    return [(p[0] - this.stage.x()) / s, (p[1] - this.stage.y()) / s];
  }

  imageToScreen(p: Pt): Pt {
    const s = this.scale;
    return [p[0] * s + this.stage.x(), p[1] * s + this.stage.y()];
  }

  /** Image point to page (client) coordinates, for tests and tours. */
  imageToClient(p: Pt): Pt {
    const r = this.stage.content.getBoundingClientRect();
    const q = this.imageToScreen(p);
    return [q[0] + r.left, q[1] + r.top];
  }

  fit(): void {
    const w = this.stage.width();
    const h = this.stage.height();
    const s = Math.min(w / this.model.width, h / this.model.height) * 0.95;
    this.setTransform(s, (w - this.model.width * s) / 2, (h - this.model.height * s) / 2);
    this.fitted = true;
  }

  zoomAt(factor: number, at?: Pt): void {
    this.fitted = false;
    const center: Pt = at ?? [this.stage.width() / 2, this.stage.height() / 2];
    const fitS = Math.min(this.stage.width() / this.model.width, this.stage.height() / this.model.height);
    const s0 = this.scale;
    const s1 = Math.min(64, Math.max(fitS * 0.25, s0 * factor));
    const ip = this.screenToImage(center);
    this.setTransform(s1, center[0] - ip[0] * s1, center[1] - ip[1] * s1);
  }

  panBy(dx: number, dy: number): void {
    this.fitted = false;
    this.setTransform(this.scale, this.stage.x() + dx, this.stage.y() + dy);
  }

  private setTransform(s: number, x: number, y: number): void {
    this.stage.scale({ x: s, y: s });
    this.stage.position({ x, y });
    // show real pixels when zoomed in
    this.imageLayer.imageSmoothingEnabled(s < 2);
    this.stage.batchDraw();
    this.onStatus?.(`${Math.round(s * 100)} %`);
  }

  /** The surface changed size (a window resized, a phone turned, the toolbar wrapped): a fitted
   * image is fitted again; a zoomed one keeps the image point at the centre of the view. */
  private resize(): void {
    if (this.disposed) return;
    const { width, height } = this.container.getBoundingClientRect();
    if (width < 2 || height < 2) return;
    const oldW = this.stage.width();
    const oldH = this.stage.height();
    if (Math.abs(width - oldW) < 0.5 && Math.abs(height - oldH) < 0.5) return;
    const centre = this.screenToImage([oldW / 2, oldH / 2]);
    this.stage.size({ width, height });
    if (this.fitted || oldW <= 1 || !this.kImage.image()) {
      this.fit();
    } else {
      const s = this.scale;
      this.setTransform(s, width / 2 - centre[0] * s, height / 2 - centre[1] * s);
    }
  }

  redraw(): void {
    if (!this.disposed) this.shapeLayer.batchDraw();
  }

  // ---- rendering ------------------------------------------------------------

  private pathFor(ctx: CanvasRenderingContext2D, pts: readonly Pt[], closed: boolean, smooth: boolean): void {
    ctx.beginPath();
    if (!pts.length) return;
    if (smooth && pts.length >= 3) {
      const segs = catmullRomToBezier(pts, closed);
      ctx.moveTo(segs[0]!.p0[0], segs[0]!.p0[1]);
      for (const s of segs) ctx.bezierCurveTo(s.c1[0], s.c1[1], s.c2[0], s.c2[1], s.p3[0], s.p3[1]);
    } else {
      ctx.moveTo(pts[0]![0], pts[0]![1]);
      for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i]![0], pts[i]![1]);
    }
    if (closed) ctx.closePath();
  }

  private smoothFor(type: string): boolean {
    return this.opts.smooth && type !== "polygon" && type !== "point";
  }

  private drawScene(ctx: CanvasRenderingContext2D): void {
    const px = 1 / this.scale;
    const m = this.model;
    m.shapes.forEach((s, i) => {
      if (!m.onFrame(s)) return;
      const color = m.colorOf(s) ?? COLORS[i % COLORS.length]!;
      const sel = m.selection?.shape === i;
      if (s.type === "point") {
        this.crosshair(ctx, s.points[0]!, (sel ? 12 : 9) * px, color, px, sel);
        return;
      }
      const closed = isClosed(s.type);
      this.pathFor(ctx, s.points, closed, this.smoothFor(s.type));
      if (closed) {
        ctx.fillStyle = hexAlpha(color, sel ? 0.28 : 0.18);
        ctx.fill("evenodd");
      }
      ctx.lineJoin = "round";
      ctx.strokeStyle = "rgba(0,0,0,0.55)";
      ctx.lineWidth = (sel ? 4.5 : 3.5) * px;
      ctx.stroke();
      ctx.strokeStyle = color;
      ctx.lineWidth = (sel ? 2.5 : 1.6) * px;
      ctx.stroke();
      if (sel && !this.opts.readonly) {
        if (this.smoothFor(s.type)) {
          // the control polygon, faintly
          this.pathFor(ctx, s.points, closed, false);
          ctx.setLineDash([3 * px, 3 * px]);
          ctx.strokeStyle = "rgba(255,255,255,0.45)";
          ctx.lineWidth = 1 * px;
          ctx.stroke();
          ctx.setLineDash([]);
        }
        s.points.forEach((p, vi) => this.vertex(ctx, p, px, color, m.selection?.vertex === vi));
      } else if (!this.opts.readonly) {
        for (const p of s.points) this.dot(ctx, p, 1.8 * px, color);
      }
    });
    if (this.interpolate && m.frames > 1) this.drawInterpolated(ctx, px);
    // reference (qualification feedback / tutorial), above the user's own shapes
    for (const r of this.reference) {
      ctx.save();
      ctx.setLineDash([6 * px, 4 * px]);
      ctx.strokeStyle = "#fde047";
      ctx.lineWidth = 2.5 * px;
      if (r.type === "point") {
        for (const p of r.points) this.crosshair(ctx, p, 9 * px, "#fde047", px);
      } else {
        this.pathFor(ctx, r.points, isClosed(r.type), false);
        ctx.stroke();
      }
      ctx.restore();
    }
    // edge insertion hint
    if (this.hover && !this.drag && m.selection && !this.opts.readonly) {
      const s = m.shapes[m.selection.shape];
      if (s && s.type !== "point") {
        const r = HIT_PX * px;
        if (nearestVertex(s.points, this.hover, r) < 0) {
          const e = nearestEdge(s.points, this.hover, r, isClosed(s.type));
          if (e) {
            ctx.beginPath();
            ctx.arc(e.point[0], e.point[1], 4 * px, 0, Math.PI * 2);
            ctx.fillStyle = "rgba(255,255,255,0.85)";
            ctx.fill();
            ctx.strokeStyle = "#0ea5e9";
            ctx.lineWidth = 1.5 * px;
            ctx.stroke();
          }
        }
      }
    }
    // draft
    const d = m.draft;
    const stroke = this.drag?.kind === "stroke" && this.drag.freehand ? this.drag.points : null;
    if (d.length || stroke) {
      const pts: Pt[] = [...d, ...(stroke ?? [])];
      if (this.hover && !stroke) pts.push(this.hover);
      ctx.beginPath();
      ctx.moveTo(pts[0]![0], pts[0]![1]);
      for (const p of pts.slice(1)) ctx.lineTo(p[0], p[1]);
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 2 * px;
      ctx.setLineDash(stroke ? [] : [5 * px, 4 * px]);
      ctx.stroke();
      ctx.setLineDash([]);
      if (m.closed && pts.length >= 3) {
        ctx.beginPath();
        ctx.moveTo(pts[pts.length - 1]![0], pts[pts.length - 1]![1]);
        ctx.lineTo(pts[0]![0], pts[0]![1]);
        ctx.strokeStyle = "rgba(255,255,255,0.4)";
        ctx.setLineDash([2 * px, 4 * px]);
        ctx.stroke();
        ctx.setLineDash([]);
      }
      d.forEach((p, i) => this.vertex(ctx, p, px, i === 0 ? "#22c55e" : "#ffffff", false, i === 0 && d.length >= minPoints(m.tool)));
    }
  }

  /** Outlines the server fills in between the frames drawn on: dashed, thin and marked "interpolated". */
  private drawInterpolated(ctx: CanvasRenderingContext2D, px: number): void {
    const m = this.model;
    for (const o of interpolatedOutlines(m.shapes, m.frame)) {
      const color = m.colorOf({ type: m.tool, points: o.points, ...(o.label !== undefined ? { label: o.label } : {}) }) ?? COLORS[0]!;
      ctx.save();
      this.pathFor(ctx, o.points, true, false);
      ctx.setLineDash([7 * px, 5 * px]);
      ctx.lineWidth = 3 * px;
      ctx.strokeStyle = "rgba(0,0,0,0.55)";
      ctx.stroke();
      ctx.lineWidth = 1.6 * px;
      ctx.strokeStyle = color;
      ctx.stroke();
      const top = o.points.reduce((a, b) => (b[1] < a[1] ? b : a));
      ctx.setLineDash([]);
      ctx.font = `${12 * px}px system-ui, sans-serif`;
      ctx.textAlign = "center";
      ctx.textBaseline = "bottom";
      ctx.lineWidth = 3 * px;
      ctx.strokeStyle = "rgba(0,0,0,0.75)";
      ctx.strokeText("interpolated", top[0], top[1] - 4 * px);
      ctx.fillStyle = color;
      ctx.fillText("interpolated", top[0], top[1] - 4 * px);
      ctx.restore();
    }
  }

  private vertex(ctx: CanvasRenderingContext2D, p: Pt, px: number, color: string, active: boolean, big = false): void {
    ctx.beginPath();
    ctx.arc(p[0], p[1], (active || big ? 6 : 4.5) * px, 0, Math.PI * 2);
    ctx.fillStyle = active ? color : "#fff";
    ctx.fill();
    ctx.lineWidth = 1.8 * px;
    ctx.strokeStyle = active ? "#fff" : color;
    ctx.stroke();
  }

  private dot(ctx: CanvasRenderingContext2D, p: Pt, r: number, color: string): void {
    ctx.beginPath();
    ctx.arc(p[0], p[1], r, 0, Math.PI * 2);
    ctx.fillStyle = color;
    ctx.fill();
  }

  private crosshair(ctx: CanvasRenderingContext2D, p: Pt, r: number, color: string, px: number, sel = false): void {
    ctx.save();
    ctx.lineWidth = 3.5 * px;
    ctx.strokeStyle = "rgba(0,0,0,0.6)";
    for (const pass of [0, 1]) {
      if (pass) {
        ctx.lineWidth = (sel ? 2.4 : 1.6) * px;
        ctx.strokeStyle = color;
      }
      ctx.beginPath();
      ctx.moveTo(p[0] - r, p[1]);
      ctx.lineTo(p[0] - r * 0.3, p[1]);
      ctx.moveTo(p[0] + r * 0.3, p[1]);
      ctx.lineTo(p[0] + r, p[1]);
      ctx.moveTo(p[0], p[1] - r);
      ctx.lineTo(p[0], p[1] - r * 0.3);
      ctx.moveTo(p[0], p[1] + r * 0.3);
      ctx.lineTo(p[0], p[1] + r);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(p[0], p[1], r * 0.55, 0, Math.PI * 2);
      ctx.stroke();
    }
    ctx.restore();
  }

  // ---- input ------------------------------------------------------------------

  private local(e: PointerEvent | WheelEvent): Pt {
    const r = this.stage.content.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  private onKeySpace = (e: KeyboardEvent): void => {
    if (e.code !== "Space") return;
    const t = e.target as HTMLElement | null;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "BUTTON" || t.tagName === "SELECT")) return;
    this.spaceDown = e.type === "keydown";
    this.updateCursor();
    if (this.spaceDown) e.preventDefault();
  };

  /** What is under the pointer (image point p). */
  private hitTest(p: Pt): { kind: "vertex" | "edge" | "inside" | "none"; shape: number; vertex: number; edge?: Pt; edgeIndex?: number } {
    const m = this.model;
    const r = HIT_PX / this.scale;
    const order = m.shapes.flatMap((s, i) => (m.onFrame(s) ? [i] : []));
    const selected = m.selection ? order.indexOf(m.selection.shape) : -1;
    if (selected >= 0) order.unshift(...order.splice(selected, 1));
    for (const i of order) {
      const v = nearestVertex(m.shapes[i]!.points, p, r);
      if (v >= 0) return { kind: "vertex", shape: i, vertex: v };
    }
    if (m.selection) {
      const s = m.shapes[m.selection.shape];
      if (s && s.type !== "point") {
        const e = nearestEdge(s.points, p, r, isClosed(s.type));
        if (e) return { kind: "edge", shape: m.selection.shape, vertex: -1, edge: e.point, edgeIndex: e.index };
      }
    }
    for (let k = order.length - 1; k >= 0; k--) {
      const i = order[k]!;
      const s = m.shapes[i]!;
      if (isClosed(s.type) && pointInPolygon(s.points, p)) return { kind: "inside", shape: i, vertex: -1 };
      if (s.type === "polyline") {
        for (let j = 0; j + 1 < s.points.length; j++) {
          if (segmentDistance2(p, s.points[j]!, s.points[j + 1]!).d2 <= r * r) return { kind: "inside", shape: i, vertex: -1 };
        }
      }
    }
    return { kind: "none", shape: -1, vertex: -1 };
  }

  private updateCursor(): void {
    const el = this.stage.content;
    if (this.drag?.kind === "pan") el.style.cursor = "grabbing";
    else if (this.spaceDown) el.style.cursor = "grab";
    else if (this.opts.readonly) el.style.cursor = "default";
    else if (this.drag?.kind === "shape") el.style.cursor = "move";
    else if (this.hover && this.model.draft.length === 0) {
      const h = this.hitTest(this.hover);
      el.style.cursor =
        h.kind === "vertex" ? "pointer" : h.kind === "edge" ? "copy" : h.kind === "inside" ? "move" : "crosshair";
    } else el.style.cursor = "crosshair";
  }

  private onDown = (e: PointerEvent): void => {
    this.container.focus({ preventScroll: true });
    const sp = this.local(e);
    this.pointers.set(e.pointerId, sp);
    this.stage.content.setPointerCapture(e.pointerId);
    if (this.pointers.size === 2) {
      // second finger: switch to pinch-zoom/pan, abandon the stroke
      if (this.drag?.kind === "stroke") this.drag = null;
      const [a, b] = [...this.pointers.values()] as [Pt, Pt];
      this.pinch = { dist: Math.hypot(a[0] - b[0], a[1] - b[1]), mid: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2] };
      this.redraw();
      return;
    }
    if (this.pointers.size > 2) return;
    if (e.button === 1 || e.button === 2 || this.spaceDown || (this.opts.readonly && e.button === 0)) {
      if (e.button === 2 && !this.opts.readonly) {
        // right click on a vertex deletes it
        const h = this.hitTest(this.screenToImage(sp));
        if (h.kind === "vertex") {
          this.model.select({ shape: h.shape, vertex: h.vertex });
          this.model.deleteSelection();
          return;
        }
      }
      if (e.button === 2 && this.onWindowDrag) {
        this.drag = { kind: "window", start: sp };
        e.preventDefault();
        return;
      }
      this.drag = { kind: "pan", last: sp };
      this.updateCursor();
      e.preventDefault();
      return;
    }
    if (e.button !== 0) return;
    e.preventDefault();
    const p = this.screenToImage(sp);
    this.clickTimes.push(Date.now());
    const m = this.model;
    const r = HIT_PX / this.scale;
    if (m.draft.length > 0) {
      const first = m.draft[0]!;
      const last = m.draft[m.draft.length - 1]!;
      const nearFirst = Math.hypot(p[0] - first[0], p[1] - first[1]) <= r;
      const nearLast = Math.hypot(p[0] - last[0], p[1] - last[1]) <= r;
      if ((nearFirst && m.closed && m.draft.length >= 3) || (nearLast && m.draft.length >= minPoints(m.tool))) {
        m.finishDraft();
        return;
      }
      this.drag = { kind: "stroke", start: p, startScreen: sp, points: [p], freehand: false, appendDraft: true };
      return;
    }
    const h = e.shiftKey ? { kind: "none" as const, shape: -1, vertex: -1 } : this.hitTest(p);
    if (h.kind === "vertex") {
      if (e.altKey || e.ctrlKey || e.metaKey) {
        m.select({ shape: h.shape, vertex: h.vertex });
        m.deleteSelection();
        return;
      }
      m.select({ shape: h.shape, vertex: h.vertex });
      m.checkpoint();
      this.drag = { kind: "vertex", shape: h.shape, vertex: h.vertex, moved: false };
      return;
    }
    if (h.kind === "edge" && h.edge && h.edgeIndex !== undefined) {
      const v = m.insertVertex(h.shape, h.edgeIndex, h.edge);
      m.checkpoint();
      this.drag = { kind: "vertex", shape: h.shape, vertex: v, moved: true };
      m.dropCheckpoint(); // the insertion checkpoint covers the drag too
      return;
    }
    if (h.kind === "inside") {
      m.select({ shape: h.shape, vertex: null });
      m.checkpoint();
      this.drag = { kind: "shape", shape: h.shape, origin: m.shapes[h.shape]!.points.map((q) => [q[0], q[1]] as Pt), start: p, moved: false };
      this.updateCursor();
      return;
    }
    // empty space
    if (m.selection) m.select(null);
    if (m.tool === "point") {
      if (!m.addPoint(p)) this.onStatus?.(`At most ${m.maxShapes} point(s) on this task`);
      else {
        m.checkpoint();
        this.drag = { kind: "vertex", shape: m.shapes.length - 1, vertex: 0, moved: false };
      }
      return;
    }
    if (m.full) {
      this.onStatus?.(`At most ${m.maxShapes} shape(s) per image on this task`);
      return;
    }
    this.drag = { kind: "stroke", start: p, startScreen: sp, points: [p], freehand: false, appendDraft: false };
  };

  private onMove = (e: PointerEvent): void => {
    const sp = this.local(e);
    if (this.pointers.has(e.pointerId)) this.pointers.set(e.pointerId, sp);
    if (this.pinch && this.pointers.size >= 2) {
      const [a, b] = [...this.pointers.values()] as [Pt, Pt];
      const dist = Math.hypot(a[0] - b[0], a[1] - b[1]);
      const mid: Pt = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
      this.panBy(mid[0] - this.pinch.mid[0], mid[1] - this.pinch.mid[1]);
      if (this.pinch.dist > 0) this.zoomAt(dist / this.pinch.dist, mid);
      this.pinch = { dist, mid };
      return;
    }
    const p = this.screenToImage(sp);
    this.hover = p;
    const d = this.drag;
    const m = this.model;
    if (!d) {
      this.updateCursor();
      if (m.draft.length || m.selection) this.redraw();
      return;
    }
    switch (d.kind) {
      case "pan":
        this.panBy(sp[0] - d.last[0], sp[1] - d.last[1]);
        d.last = sp;
        break;
      case "window":
        this.onWindowDrag?.(sp[0] - d.start[0], sp[1] - d.start[1], false);
        break;
      case "vertex":
        d.moved = true;
        m.moveVertex(d.shape, d.vertex, p);
        break;
      case "shape":
        if (!d.moved && Math.hypot(p[0] - d.start[0], p[1] - d.start[1]) * this.scale < 3) break;
        d.moved = true;
        m.translateShape(d.shape, d.origin, p[0] - d.start[0], p[1] - d.start[1]);
        break;
      case "stroke": {
        if (!d.freehand && Math.hypot(sp[0] - d.startScreen[0], sp[1] - d.startScreen[1]) >= FREEHAND_PX) d.freehand = true;
        // coalesced events give pen/touch their full sampling rate
        const evs = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
        if (evs.length > 1) for (const ce of evs) d.points.push(this.screenToImage(this.local(ce)));
        else d.points.push(p);
        this.redraw();
        break;
      }
    }
  };

  private onUp = (e: PointerEvent): void => {
    this.pointers.delete(e.pointerId);
    if (this.pinch) {
      if (this.pointers.size < 2) this.pinch = null;
      return;
    }
    const d = this.drag;
    this.drag = null;
    const m = this.model;
    if (!d) return;
    switch (d.kind) {
      case "vertex":
        if (!d.moved) m.dropCheckpoint();
        m.emit();
        break;
      case "shape":
        if (!d.moved) m.dropCheckpoint();
        break;
      case "stroke":
        if (d.freehand && d.points.length > 2) {
          const ok = m.addStroke(d.points, this.opts.tolerance);
          if (!ok) this.onStatus?.("Stroke too short — draw a longer outline");
        } else {
          m.addDraftVertex(d.start);
        }
        break;
      case "pan":
        break;
      case "window": {
        const sp = this.local(e);
        this.onWindowDrag?.(sp[0] - d.start[0], sp[1] - d.start[1], true);
        break;
      }
    }
    this.updateCursor();
    this.redraw();
  };

  private onCancel = (e: PointerEvent): void => {
    this.pointers.delete(e.pointerId);
    this.pinch = null;
    if (this.drag?.kind === "stroke") this.drag = null;
    else if (this.drag) this.onUp(e);
    this.redraw();
  };

  private onLeave = (): void => {
    if (!this.drag) {
      this.hover = null;
      this.redraw();
    }
  };

  private onWheel = (e: WheelEvent): void => {
    e.preventDefault();
    const sp = this.local(e);
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    const dx = e.deltaX * unit;
    const dy = e.deltaY * unit;
    // touch-pad two-finger scroll pans; pinch (ctrlKey) and mouse wheels zoom
    const looksLikeTrackpadScroll = !e.ctrlKey && e.deltaMode === 0 && (dx !== 0 || (Math.abs(dy) < 40 && !Number.isInteger(dy)));
    if (looksLikeTrackpadScroll && !e.altKey) {
      this.panBy(-dx, -dy);
    } else if (this.onFrameWheel && !e.ctrlKey && !e.altKey) {
      // a stack: the wheel moves through the frames (as in OHIF and 3D Slicer), Ctrl+wheel zooms
      // one frame per notch, whatever size the browser gives a notch; small deltas add up to one
      this.wheelFrames += dy;
      if (Math.abs(this.wheelFrames) >= WHEEL_NOTCH_PX) {
        this.onFrameWheel(Math.sign(this.wheelFrames));
        this.wheelFrames = 0;
      }
    } else {
      this.zoomAt(Math.exp(-dy * (e.ctrlKey ? 0.01 : 0.0015)), sp);
    }
  };
}

function hexAlpha(hex: string, a: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}
