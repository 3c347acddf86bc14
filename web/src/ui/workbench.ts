/** The annotation workbench: toolbar, drawing surface, status bar and shortcuts. */
import { bitmap, type TaskLabel, type ToolName } from "../api";
import { h, modal } from "../dom";
import { markdownInto } from "../markdown";
import { EditorModel, labelForKey } from "../editor/model";
import { createFrameNavigator, type StackInfo } from "../editor/frames";
import { EditorView } from "../editor/view";
import { icon, type IconName } from "./icons";
import { drawingStatus, isTouch, shortcutRows, toolHelp } from "./wording";

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
  /** "image k of n": k is the image on show (1-based). */
  progress?: { current: number; total: number; title?: string } | null;
  /** "No object here": submit the image with nothing on it (E). */
  onNoObject?: () => void;
  /** Leave the image to others without submitting (Shift+N). */
  onSkip?: () => void;
  /** The previous image (P). */
  onPrevious?: () => void;
  /** The task's labels: a palette (keys 1–9) whose active label new shapes carry. */
  labels?: TaskLabel[];
  /** A stack (more than one frame): a frame navigator, with window/level where the server has grey values. */
  stack?: StackInfo | null;
  /** The task interpolates between drawn frames (`interpolate_frames`): the outlines between are shown, marked. */
  interpolate?: boolean;
}

export interface AskAction {
  label: string;
  testid: string;
  primary?: boolean;
  run: () => void;
}

export interface Workbench {
  el: HTMLElement;
  model: EditorModel;
  view: EditorView;
  stage: HTMLElement;
  primary: HTMLButtonElement | null;
  touch: boolean;
  setImage(img: CanvasImageSource | undefined): void;
  banner(text: string | null, kind?: "ok" | "bad" | ""): void;
  /** A question in the stage, answered by one of its buttons (never a native confirm()). */
  ask(text: string, actions: AskAction[]): void;
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

export function shortcutsTable(touch = isTouch()): HTMLElement {
  return h(
    "table",
    { class: "shortcuts" },
    h("tbody", null, shortcutRows(touch).map(([k, v]) => h("tr", null, h("td", null, h("kbd", null, k)), h("td", null, v)))),
  );
}

/** The label palette: one button per label, the active one pressed; empty for a task without labels. */
function labelPalette(model: EditorModel, touch: boolean): { el: HTMLElement | null; sync: () => void } {
  if (!model.labels.length) return { el: null, sync: () => undefined };
  const buttons = model.labels.map((label, i) =>
    h(
      "button",
      {
        class: "btn wb-label",
        type: "button",
        title: touch || i >= 9 ? label.name : `${label.name} (${i + 1})`,
        "aria-pressed": "false",
        "data-testid": `label-${i + 1}`,
        "data-label": label.name,
        onclick: () => model.chooseLabel(label.name),
      },
      h("span", { class: "wb-swatch", style: { background: label.color }, "aria-hidden": "true" }),
      i < 9 && !touch ? h("kbd", null, String(i + 1)) : null,
      label.name,
    ),
  );
  const el = h("div", { class: "wb-palette", role: "group", "aria-label": "Label of new shapes", "data-testid": "label-palette" }, buttons);
  const sync = (): void => {
    buttons.forEach((b, i) => b.setAttribute("aria-pressed", String(model.labels[i]!.name === model.activeLabel)));
  };
  return { el, sync };
}

export function createWorkbench(parent: HTMLElement, o: WorkbenchOptions): Workbench {
  const prefs = loadPrefs();
  const touch = isTouch();
  const help = toolHelp(o.tool, touch);
  const model = new EditorModel(o.tool, o.maxShapes, o.width, o.height);
  model.setLabels(o.labels ?? []);
  const stage = h("div", { class: "wb-stage" });
  const surface = h("div", { "aria-label": `Image canvas — ${o.tool} tool. ${help}`, role: "application" });
  stage.append(surface);
  const statusText = h("span", { class: "grow", "data-testid": "status" }, "");
  const zoomText = h("span", { title: "zoom" }, "");
  const countText = h("span", { "data-testid": "shape-count" }, "");
  const bannerEl = h("div", { class: "wb-banner", hidden: true, role: "status" });
  stage.append(bannerEl);

  /** A toolbar button: an icon, and a label that narrow toolbars hide (the title and aria-label stay). */
  const btn = (
    name: IconName,
    label: string,
    title: string,
    onClick: () => void,
    attrs: Record<string, unknown> = {},
    showLabel = false,
  ): HTMLButtonElement =>
    h(
      "button",
      { class: `btn${showLabel ? "" : " icon"}`, type: "button", title, "aria-label": title, onclick: onClick, ...attrs },
      icon(name),
      h("span", { class: showLabel ? "lbl" : "lbl sr-only" }, label),
    );

  const undoB = btn("undo", "Undo", touch ? "Undo one step" : "Undo one step (Ctrl+Z)", () => model.undo(), { "data-testid": "undo" });
  const redoB = btn("redo", "Redo", touch ? "Redo" : "Redo (Ctrl+Shift+Z)", () => model.redo(), { "data-testid": "redo" });
  const delB = btn("trash", "Delete", touch ? "Delete the selected vertex or shape" : "Delete the selected vertex or shape (Delete)", () => model.deleteSelection(), { "data-testid": "delete" });
  const finishB = btn("check", "Close shape", touch ? "Close / finish the shape being drawn" : "Close / finish the shape being drawn (Enter)", () => model.finishDraft(), { "data-testid": "finish" });
  const smoothB = btn("smooth", "Smooth", touch ? "Bézier smoothing" : "Bézier smoothing (S)", () => setSmooth(!view.opts.smooth), {
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
  const tol = h("label", { class: "wb-tol", title: "Freehand strokes are simplified with Ramer–Douglas–Peucker: points closer than this to the simplified outline are dropped" }, "RDP", tolInput, tolOut);
  const zoomOut = btn("minus", "Zoom out", touch ? "Zoom out" : "Zoom out (−)", () => view.zoomAt(0.8));
  const zoomIn = btn("plus", "Zoom in", touch ? "Zoom in" : "Zoom in (+)", () => view.zoomAt(1.25));
  const fitB = btn("fit", "Fit", touch ? "Fit the image" : "Fit the image (0)", () => view.fit(), { "data-testid": "fit" });
  const instrB = btn("book", "Instructions", touch ? "Instructions" : "Instructions (I)", () => showInstructions(), { "data-testid": "instructions" });
  const helpB = btn("help", "Help", touch ? "How to use the tool" : "Tool and shortcuts (?)", () => modal("Tool and shortcuts", shortcutsTable(touch)));
  const prevB = o.onPrevious ? btn("previous", "Previous", touch ? "The previous image" : "The previous image (P)", () => o.onPrevious?.(), { "data-testid": "previous" }) : null;
  const emptyB = o.onNoObject
    ? btn("empty", "No object", touch ? "No object here: submit the image with nothing on it" : "No object here: submit the image with nothing on it (E)", () => o.onNoObject?.(), { "data-testid": "no-object" }, true)
    : null;
  const skipB = o.onSkip
    ? btn("skip", "Skip", touch ? "Skip: leave this image to others, without submitting" : "Skip: leave this image to others, without submitting (Shift+N)", () => o.onSkip?.(), { "data-testid": "skip" }, true)
    : null;
  const primary = o.onPrimary
    ? h(
        "button",
        { class: "btn btn-primary", type: "button", "data-testid": "primary", title: touch ? undefined : "Save and go on (Ctrl+Enter or N)", onclick: () => o.onPrimary?.() },
        h("span", { class: "lbl" }, o.primaryLabel ?? "Next"),
        icon("next"),
      )
    : null;
  const progressEl = o.progress
    ? h(
        "span",
        { class: "pill pill-primary wb-progress", "data-testid": "image-progress", title: o.progress.title ?? "The image on show, of the images you may annotate in this task" },
        h("span", { class: "lbl-long" }, "image "),
        `${o.progress.current}`,
        h("span", { class: "lbl-long" }, " of "),
        h("span", { class: "lbl-short" }, "/"),
        `${o.progress.total}`,
      )
    : null;

  const isPoint = o.tool === "point";
  // What a phone's toolbar shows under "More" (on wide screens these sit in the row itself).
  const more = h(
    "div",
    { class: "wb-more", id: `wb-more-${Math.random().toString(36).slice(2, 8)}`, role: "group", "aria-label": "More tools" },
    redoB,
    isPoint || o.tool === "polygon" ? null : smoothB,
    isPoint ? null : tol,
    zoomOut,
    zoomIn,
    fitB,
    prevB,
    ...(o.extra ?? []),
    o.instructions !== undefined ? instrB : null,
    helpB,
  );
  const moreB = btn("more", "More", "More tools", () => toggleMore(), { class: "btn icon wb-more-toggle", "aria-expanded": "false", "aria-controls": more.id, "data-testid": "more" });
  const toggleMore = (open = more.dataset.open !== "1"): void => {
    more.dataset.open = open ? "1" : "0";
    moreB.setAttribute("aria-expanded", String(open));
  };
  more.addEventListener("click", (e) => {
    if ((e.target as Element).closest("button")) toggleMore(false);
  });
  const toolbar = h(
    "div",
    { class: "wb-toolbar", role: "toolbar", "aria-label": "Annotation tools" },
    h("span", { class: "wb-title", title: o.title }, o.title),
    undoB,
    delB,
    isPoint ? null : finishB,
    more,
    moreB,
    h("span", { class: "spacer" }),
    progressEl,
    emptyB,
    skipB,
    primary,
  );
  const palette = labelPalette(model, touch);
  const statusBar = h(
    "div",
    { class: "wb-status" },
    palette.el,
    countText,
    statusText,
    h("span", { class: "muted wb-size" }, `${o.width} × ${o.height} px`),
    zoomText,
  );
  const el = h("section", { class: "workbench", "aria-label": o.title, "data-testid": "workbench", dataset: { tool: o.tool, ready: "0", touch: touch ? "1" : "0" } }, toolbar, stage, statusBar);
  parent.append(el);

  const view = new EditorView(surface, model, { smooth: prefs.smooth, tolerance: prefs.tolerance, readonly: o.readonly ?? false });
  let statusTimer: ReturnType<typeof setTimeout> | null = null;
  const status = (t: string): void => {
    statusText.textContent = t;
    if (statusTimer) clearTimeout(statusTimer);
    statusTimer = setTimeout(() => {
      statusTimer = null;
      statusText.textContent = defaultStatus();
    }, 4000);
  };
  view.onStatus = (t) => {
    if (/^\d+ %$/.test(t)) zoomText.textContent = t;
    else status(t);
  };
  view.onStatus(`${Math.round(view.scale * 100)} %`);
  model.frames = o.stack && o.stack.frames > 1 ? o.stack.frames : 1;
  const frames =
    model.frames > 1 && o.stack ? createFrameNavigator(o.stack, model, (img) => view.swapImage(img), bitmap, (t) => status(t), o.interpolate ?? false) : null;
  if (frames) {
    view.interpolate = o.interpolate ?? false;
    el.insertBefore(frames.el, statusBar);
    view.onFrameWheel = (d) => void frames.step(d);
    view.onWindowDrag = frames.onWindowDrag;
  }

  const defaultStatus = (): string => (model.draft.length ? drawingStatus(model.draft.length, touch) : help);

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
    // "no object here" is for an image with nothing on it: with shapes drawn it would throw them away
    if (emptyB) emptyB.disabled = model.shapes.length > 0 || model.draft.length > 0;
    const onShow = model.frames > 1 ? model.shapes.filter((s) => model.onFrame(s)).length : model.shapes.length;
    countText.textContent = `${onShow} / ${model.maxShapes} ${isPoint ? "points" : "shapes"}${model.frames > 1 ? " on this frame" : ""}`;
    palette.sync();
    if (!statusTimer) statusText.textContent = defaultStatus();
  };
  const unsub = model.onChange(sync);
  sync();

  function showInstructions(): void {
    const body = h("div");
    markdownInto(body, o.instructions || "_No instructions for this task._");
    modal("Instructions", h("div", null, body, h("h3", { style: { marginTop: "1rem" } }, "How to use the tool"), h("p", null, help), shortcutsTable(touch)), { wide: true });
  }

  const setBanner = (content: (Node | string)[], kind: string, hidden: boolean): void => {
    bannerEl.hidden = hidden;
    bannerEl.replaceChildren(...content);
    bannerEl.className = `wb-banner ${kind}`;
  };

  const onKey = (e: KeyboardEvent): void => {
    const t = e.target as HTMLElement | null;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    if (document.querySelector("dialog[open]")) return;
    if (document.querySelector(".tour-pop")) return;
    const k = e.key;
    const mod = e.ctrlKey || e.metaKey;
    let handled = true;
    if (mod && (k === "z" || k === "Z") && !e.shiftKey) model.undo();
    else if (mod && (((k === "z" || k === "Z") && e.shiftKey) || k === "y")) model.redo();
    else if (mod && k === "Enter") o.onPrimary?.();
    else if (mod) handled = false;
    else if (k === "Enter") {
      if (!model.finishDraft() && model.draft.length) status("Not enough vertices to close the shape yet");
    } else if (k === "Escape") {
      if (!bannerEl.hidden && bannerEl.querySelector("button")) setBanner([], "", true);
      else if (model.draft.length) model.cancelDraft();
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
    } else if (k === "?") modal("Tool and shortcuts", shortcutsTable(touch));
    else if ((k === "e" || k === "E") && emptyB && !emptyB.disabled) o.onNoObject?.();
    else if ((k === "p" || k === "P") && o.onPrevious) o.onPrevious();
    else if (k === "N" && e.shiftKey) o.onSkip?.();
    else if (k === "n" || k === "N") o.onPrimary?.();
    else if (labelForKey(model.labels, k)) model.chooseLabel(labelForKey(model.labels, k)!.name);
    else if (frames && (k === "PageDown" || k === "." || k === ">")) frames.step(1);
    else if (frames && (k === "PageUp" || k === "," || k === "<")) frames.step(-1);
    else if (frames && k === "Home") frames.go(0);
    else if (frames && k === "End") frames.go(model.frames - 1);
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
    touch,
    setImage: (img) => {
      view.setImage(img);
      el.dataset.ready = img ? "1" : "0";
    },
    banner(text, kind = "") {
      setBanner(text ? [text] : [], kind, !text);
    },
    ask(text, actions) {
      const buttons = actions.map((a) =>
        h(
          "button",
          {
            class: `btn${a.primary ? " btn-primary" : ""}`,
            type: "button",
            "data-testid": a.testid,
            onclick: () => {
              setBanner([], "", true);
              a.run();
            },
          },
          a.label,
        ),
      );
      setBanner([h("p", null, text), h("div", { class: "row wb-ask" }, buttons)], "ask", false);
      buttons.find((_, i) => actions[i]!.primary)?.focus();
    },
    status,
    destroy() {
      window.removeEventListener("keydown", onKey);
      frames?.destroy();
      if (statusTimer) clearTimeout(statusTimer);
      unsub();
      view.destroy();
      el.remove();
    },
  };
}
