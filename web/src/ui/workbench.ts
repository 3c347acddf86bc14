/** The annotation workbench: toolbar, drawing surface, status bar and shortcuts. */
import type { ToolName } from "../api";
import { h, modal } from "../dom";
import { markdownInto } from "../markdown";
import { EditorModel } from "../editor/model";
import { EditorView } from "../editor/view";

export interface WorkbenchOptions {
  title: string;
  tool: ToolName;
  maxShapes: number;
  width: number;
  height: number;
  instructions?: string;
  primaryLabel?: string;
  onPrimary?: () => void;
  readonly?: boolean;
  extra?: HTMLElement[];
}

export interface Workbench {
  el: HTMLElement;
  model: EditorModel;
  view: EditorView;
  stage: HTMLElement;
  primary: HTMLButtonElement | null;
  setImage(img: CanvasImageSource | undefined): void;
  banner(text: string | null, kind?: "ok" | "bad" | ""): void;
  status(text: string): void;
  destroy(): void;
}

const PREFS = "crowdseg.editor-prefs.v1";
interface Prefs {
  smooth: boolean;
  tolerance: number;
}
function loadPrefs(): Prefs {
  try {
    return { smooth: true, tolerance: 2, ...(JSON.parse(localStorage.getItem(PREFS) ?? "{}") as Partial<Prefs>) };
  } catch {
    return { smooth: true, tolerance: 2 };
  }
}

const TOOL_HELP: Record<ToolName, string> = {
  contour: "Click vertices around the structure, or hold the button and trace it. Click the first vertex (or press Enter) to close.",
  polygon: "Click the polygon's corners, or hold and trace. Click the first vertex (or press Enter) to close.",
  point: "Click the centre of every object. Drag a point to move it; select and press Delete to remove it.",
  polyline: "Click along the line, or hold and trace. Press Enter or click the last vertex again to finish.",
};

export function shortcutsTable(): HTMLElement {
  const rows: [string, string][] = [
    ["Click", "add a vertex (first vertex or Enter closes)"],
    ["Click + drag", "freehand trace (simplified with RDP)"],
    ["Drag a vertex", "move it"],
    ["Click an edge of the selected shape", "insert a vertex there"],
    ["Alt+click / right-click a vertex", "delete the vertex"],
    ["Drag inside a shape", "move the whole shape"],
    ["Shift+click", "start a new shape even over an existing one"],
    ["Delete / Backspace", "delete the selected vertex or shape"],
    ["Enter", "close / finish the shape being drawn"],
    ["Esc", "cancel the shape being drawn, deselect"],
    ["Ctrl+Z / Ctrl+Shift+Z, Ctrl+Y", "undo / redo"],
    ["Wheel, pinch, + / −", "zoom"],
    ["Space+drag, middle drag, two fingers, arrows", "pan"],
    ["0 or F", "fit the image"],
    ["S", "toggle Bézier smoothing"],
    ["[ and ]", "decrease / increase the RDP tolerance"],
    ["I", "show the instructions"],
    ["Ctrl+Enter / N", "save and go to the next image"],
  ];
  return h(
    "table",
    { class: "shortcuts" },
    h("tbody", null, rows.map(([k, v]) => h("tr", null, h("td", null, h("kbd", null, k)), h("td", null, v)))),
  );
}

export function createWorkbench(parent: HTMLElement, o: WorkbenchOptions): Workbench {
  const prefs = loadPrefs();
  const model = new EditorModel(o.tool, o.maxShapes, o.width, o.height);
  const stage = h("div", { class: "wb-stage" });
  const surface = h("div", { "aria-label": `Image canvas — ${o.tool} tool. ${TOOL_HELP[o.tool]}`, role: "application" });
  stage.append(surface);
  const statusText = h("span", null, "");
  const zoomText = h("span", { title: "zoom" }, "");
  const countText = h("span", { "data-testid": "shape-count" }, "");
  const bannerEl = h("div", { class: "wb-banner", hidden: true });
  stage.append(bannerEl);

  const btn = (label: string, title: string, onClick: () => void, attrs: Record<string, unknown> = {}): HTMLButtonElement =>
    h("button", { class: "btn", type: "button", title, "aria-label": title, onclick: onClick, ...attrs }, label);

  const undoB = btn("↶ Undo", "Undo (Ctrl+Z)", () => model.undo(), { "data-testid": "undo" });
  const redoB = btn("↷ Redo", "Redo (Ctrl+Shift+Z)", () => model.redo(), { "data-testid": "redo" });
  const delB = btn("✕ Delete", "Delete selected vertex or shape (Delete)", () => model.deleteSelection(), { "data-testid": "delete" });
  const finishB = btn("✓ Close shape", "Close / finish the shape being drawn (Enter)", () => model.finishDraft(), { "data-testid": "finish" });
  const smoothB = btn("∿ Smooth", "Bézier smoothing (S)", () => setSmooth(!view.opts.smooth), {
    "aria-pressed": String(prefs.smooth),
    "data-testid": "smooth",
  });
  const tolInput = h("input", {
    type: "range",
    min: "0.5",
    max: "10",
    step: "0.5",
    value: String(prefs.tolerance),
    "aria-label": "RDP tolerance in image pixels",
    "data-testid": "tolerance",
  });
  const tolOut = h("output", null, "");
  const tol = h("label", { class: "wb-tol", title: "Freehand strokes are simplified with Ramer–Douglas–Peucker: points closer than this to the simplified outline are dropped" }, "RDP tolerance", tolInput, tolOut);
  const zoomIn = btn("+", "Zoom in (+)", () => view.zoomAt(1.25), { class: "btn icon" });
  const zoomOut = btn("−", "Zoom out (−)", () => view.zoomAt(0.8), { class: "btn icon" });
  const fitB = btn("Fit", "Fit image (0)", () => view.fit());
  const instrB = btn("Instructions", "Instructions (I)", () => showInstructions(), { "data-testid": "instructions" });
  const helpB = btn("?", "Keyboard shortcuts (?)", () => modal("Tool and shortcuts", shortcutsTable()), { class: "btn icon" });
  const primary = o.onPrimary
    ? h("button", { class: "btn btn-primary", type: "button", "data-testid": "primary", onclick: () => o.onPrimary?.() }, o.primaryLabel ?? "Next →")
    : null;

  const isPoint = o.tool === "point";
  const toolbar = h(
    "div",
    { class: "wb-toolbar", role: "toolbar", "aria-label": "Annotation tools" },
    h("span", { class: "wb-title", title: o.title }, o.title),
    h("span", { class: "pill pill-primary" }, o.tool),
    h("span", { class: "sep" }),
    undoB,
    redoB,
    delB,
    isPoint ? null : finishB,
    h("span", { class: "sep" }),
    isPoint || o.tool === "polygon" ? null : smoothB,
    isPoint ? null : tol,
    h("span", { class: "sep" }),
    zoomOut,
    zoomIn,
    fitB,
    h("span", { class: "spacer" }),
    ...(o.extra ?? []),
    o.instructions !== undefined ? instrB : null,
    helpB,
    primary,
  );
  const statusBar = h(
    "div",
    { class: "wb-status" },
    countText,
    h("span", { class: "grow" }, statusText),
    h("span", { class: "muted" }, `${o.width} × ${o.height} px`),
    zoomText,
  );
  const el = h("section", { class: "workbench", "aria-label": o.title, "data-testid": "workbench", dataset: { tool: o.tool, ready: "0" } }, toolbar, stage, statusBar);
  parent.append(el);

  const view = new EditorView(surface, model, { smooth: prefs.smooth, tolerance: prefs.tolerance, readonly: o.readonly ?? false });
  let statusTimer: ReturnType<typeof setTimeout> | null = null;
  const status = (t: string): void => {
    statusText.textContent = t;
    if (statusTimer) clearTimeout(statusTimer);
    statusTimer = setTimeout(() => (statusText.textContent = defaultStatus()), 4000);
  };
  view.onStatus = (t) => {
    if (/^\d+ %$/.test(t)) zoomText.textContent = t;
    else status(t);
  };
  view.onStatus(`${Math.round(view.scale * 100)} %`);

  const defaultStatus = (): string =>
    model.draft.length ? `Drawing: ${model.draft.length} vertices — Enter or click the first vertex to close, Esc to cancel` : TOOL_HELP[o.tool];

  const savePrefs = (): void => localStorage.setItem(PREFS, JSON.stringify({ smooth: view.opts.smooth, tolerance: view.opts.tolerance }));
  const setSmooth = (v: boolean): void => {
    view.opts.smooth = v;
    smoothB.setAttribute("aria-pressed", String(v));
    savePrefs();
    view.redraw();
  };
  const setTol = (v: number): void => {
    const t = Math.min(10, Math.max(0.5, Math.round(v * 2) / 2));
    view.opts.tolerance = t;
    tolInput.value = String(t);
    tolOut.textContent = `${t.toFixed(1)} px`;
    savePrefs();
  };
  tolInput.addEventListener("input", () => setTol(Number(tolInput.value)));
  setTol(prefs.tolerance);

  const sync = (): void => {
    undoB.disabled = !model.canUndo;
    redoB.disabled = !model.canRedo;
    delB.disabled = !model.selection;
    finishB.disabled = model.draft.length === 0;
    countText.textContent = `${model.shapes.length} / ${model.maxShapes} ${isPoint ? "points" : "shapes"}`;
    if (!statusTimer) statusText.textContent = defaultStatus();
  };
  const unsub = model.onChange(sync);
  sync();

  function showInstructions(): void {
    const body = h("div");
    markdownInto(body, o.instructions || "_No instructions for this task._");
    modal("Instructions", h("div", null, body, h("h3", { style: { marginTop: "1rem" } }, "How to use the tool"), h("p", null, TOOL_HELP[o.tool]), shortcutsTable()), { wide: true });
  }

  const onKey = (e: KeyboardEvent): void => {
    const t = e.target as HTMLElement | null;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    if (document.querySelector("dialog[open]")) return;
    if (document.querySelector(".tour-pop")) return;
    const k = e.key;
    const mod = e.ctrlKey || e.metaKey;
    let handled = true;
    if (mod && (k === "z" || k === "Z") && !e.shiftKey) model.undo();
    else if (mod && ((k === "z" || k === "Z") && e.shiftKey || k === "y")) model.redo();
    else if (mod && k === "Enter") o.onPrimary?.();
    else if (k === "Enter") {
      if (!model.finishDraft() && model.draft.length) status("Not enough vertices to close the shape yet");
    } else if (k === "Escape") {
      if (model.draft.length) model.cancelDraft();
      else model.select(null);
    } else if (k === "Delete" || k === "Backspace") model.deleteSelection();
    else if (k === "+" || k === "=") view.zoomAt(1.25);
    else if (k === "-" || k === "_") view.zoomAt(0.8);
    else if (k === "0" || k === "f" || k === "F") view.fit();
    else if (k === "s" || k === "S") setSmooth(!view.opts.smooth);
    else if (k === "[") setTol(view.opts.tolerance - 0.5);
    else if (k === "]") setTol(view.opts.tolerance + 0.5);
    else if (k === "i" || k === "I") {
      if (o.instructions !== undefined) showInstructions();
    } else if (k === "?") modal("Tool and shortcuts", shortcutsTable());
    else if ((k === "n" || k === "N") && !mod) o.onPrimary?.();
    else if (k === "ArrowLeft") view.panBy(40, 0);
    else if (k === "ArrowRight") view.panBy(-40, 0);
    else if (k === "ArrowUp") view.panBy(0, 40);
    else if (k === "ArrowDown") view.panBy(0, -40);
    else handled = false;
    if (handled) e.preventDefault();
  };
  window.addEventListener("keydown", onKey);

  return {
    el,
    model,
    view,
    stage,
    primary,
    setImage: (img) => {
      view.setImage(img);
      el.dataset.ready = img ? "1" : "0";
    },
    banner(text, kind = "") {
      bannerEl.hidden = !text;
      bannerEl.textContent = text ?? "";
      bannerEl.className = `wb-banner ${kind}`;
    },
    status,
    destroy() {
      window.removeEventListener("keydown", onKey);
      unsub();
      view.destroy();
      el.remove();
    },
  };
}
