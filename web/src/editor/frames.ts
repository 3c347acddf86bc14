/**
 * Moving through a stack's frames (a CT or MR series, a confocal stack, a movie): a slider, a strip
 * of frame thumbnails that marks the frames with shapes, and window/level for grey values (the
 * image's default, presets, and a right-button drag as in ITK-SNAP and OHIF). Frames are fetched
 * from `GET /images/{id}/file?frame=k[&window=c,w]`, whose renditions the server makes once.
 */
import { h } from "../dom";
import type { ImageInfo } from "../api";
import { API } from "../paths";
import { interpolatedOutlines } from "./interpolate";
import type { EditorModel } from "./model";

export type Window = [center: number, width: number];

/** Common CT windows (Hounsfield units); the image's own default comes first. */
export const WINDOW_PRESETS: ReadonlyArray<{ name: string; window: Window }> = [
  { name: "Soft tissue", window: [40, 400] },
  { name: "Lung", window: [-600, 1500] },
  { name: "Bone", window: [400, 1800] },
  { name: "Brain", window: [40, 80] },
];

export interface StackInfo {
  imageId: string;
  frames: number;
  /** The default window of the image; null where the server keeps no grey values to window. */
  window: Window | null;
}

export interface FrameNavigator {
  el: HTMLElement;
  /** Move by `delta` frames; false if the open outline keeps the frame. */
  step(delta: number): boolean;
  go(frame: number): boolean;
  readonly window: Window | null;
  /** For the view's right-button drag; null where the image has no grey values to window. */
  onWindowDrag: ((dx: number, dy: number, done: boolean) => void) | null;
  destroy(): void;
}

/** The stack behind an image the API describes, or null for a plain image. */
export function stackOf(image: ImageInfo): StackInfo | null {
  return (image.frames ?? 1) > 1 ? { imageId: image.id, frames: image.frames!, window: image.window ?? null } : null;
}

/** The URL of frame k's rendition, windowed where a window is given. */
export function frameUrl(imageId: string, frame: number, window: Window | null = null): string {
  const base = `/images/${encodeURIComponent(imageId)}/file?frame=${frame}`;
  return window ? `${base}&window=${roundWindow(window).join(",")}` : base;
}

/** Windows are sent rounded (whole units; a width of at least 1), so renditions cache well. */
export function roundWindow([center, width]: Window): Window {
  return [Math.round(center), Math.max(1, Math.round(width))];
}

/** Window/level by a drag of (dx, dy) screen pixels: right widens, down raises the level. */
export function dragWindow(start: Window, dx: number, dy: number): Window {
  const perPixel = Math.max(1, start[1]) / 256;
  return roundWindow([start[0] + dy * perPixel, start[1] + dx * perPixel]);
}

export function createFrameNavigator(
  stack: StackInfo,
  model: EditorModel,
  show: (img: ImageBitmap) => void,
  load: (url: string) => Promise<ImageBitmap>,
  say: (text: string) => void,
  interpolate = false,
): FrameNavigator {
  const n = stack.frames;
  let window = stack.window;
  let shown = "";
  const cache = new Map<string, Promise<ImageBitmap>>();
  const fetchFrame = (frame: number): Promise<ImageBitmap> => {
    const url = frameUrl(stack.imageId, frame, window === stack.window ? null : window);
    let got = cache.get(url);
    if (!got) {
      got = load(url);
      got.catch(() => cache.delete(url));
      cache.set(url, got);
    }
    return got;
  };

  const slider = h("input", {
    type: "range",
    min: "0",
    max: String(n - 1),
    step: "1",
    value: "0",
    "aria-label": "Frame",
    "data-testid": "frame-slider",
  });
  const label = h("span", { class: "wb-frame-label", "data-testid": "frame-label", "aria-live": "polite" });
  const between = h("span", { class: "wb-interpolated", "data-testid": "frame-interpolated", hidden: true });
  const thumbs = Array.from({ length: n }, (_, k) =>
    h(
      "button",
      { type: "button", class: "wb-thumb", title: `Frame ${k + 1}`, "aria-label": `Frame ${k + 1}`, "data-testid": `frame-thumb-${k}`, onclick: () => go(k) },
      h("img", { src: `${API}/images/${encodeURIComponent(stack.imageId)}/thumbnail?frame=${k}`, alt: "", loading: "lazy", draggable: false }),
    ),
  );
  const strip = h("div", { class: "wb-strip", role: "group", "aria-label": "Frames" }, thumbs);
  const readout = h("span", { class: "muted", "data-testid": "window-readout" });
  const preset = h(
    "select",
    { "aria-label": "Window", "data-testid": "window-preset" },
    h("option", { value: "-1" }, "Default window"),
    WINDOW_PRESETS.map((p, i) => h("option", { value: String(i) }, `${p.name} (${p.window[0]}/${p.window[1]})`)),
  );
  const windowControls = window ? h("span", { class: "row wb-window" }, preset, readout) : null;
  const el = h("div", { class: "wb-frames", "data-testid": "frames" }, h("div", { class: "row" }, slider, label, between, windowControls), strip);

  const paint = (): void => {
    const frame = model.frame;
    slider.value = String(frame);
    label.textContent = `Frame ${frame + 1} / ${n}`;
    const filled = interpolate ? interpolatedOutlines(model.shapes, frame) : [];
    between.hidden = !filled.length;
    between.textContent = filled.length ? `interpolated between frames ${filled[0]!.from + 1} and ${filled[0]!.to + 1}` : "";
    const marked = model.framesWithShapes();
    thumbs.forEach((t, k) => {
      t.classList.toggle("current", k === frame);
      t.dataset.shapes = marked.has(k) ? "1" : "0";
      if (k === frame) t.setAttribute("aria-current", "true");
      else t.removeAttribute("aria-current");
    });
    if (window) readout.textContent = `W ${Math.round(window[1])} L ${Math.round(window[0])}`;
  };

  const render = async (): Promise<void> => {
    const frame = model.frame;
    const key = `${frame}|${window?.join(",") ?? ""}`;
    shown = key;
    try {
      const img = await fetchFrame(frame);
      if (shown === key) show(img);
    } catch (e) {
      say(`Could not load frame ${frame + 1}: ${e instanceof Error ? e.message : String(e)}`);
    }
    for (const near of [frame + 1, frame - 1]) if (near >= 0 && near < n) void fetchFrame(near).catch(() => undefined);
  };

  const go = (frame: number): boolean => {
    if (!model.setFrame(frame)) {
      say("Finish or discard the open outline first: it belongs to this frame");
      return false;
    }
    void render();
    return true;
  };
  const step = (delta: number): boolean => go(model.frame + delta);

  slider.addEventListener("input", () => go(Number(slider.value)));
  preset.addEventListener("change", () => {
    const i = Number(preset.value);
    window = i < 0 ? stack.window : WINDOW_PRESETS[i]!.window;
    paint();
    void render();
  });

  // Window/level by dragging with the right button (the left one draws; a right click on a vertex
  // still deletes it).
  let dragStart: Window | null = null;
  const onWindowDrag = (dx: number, dy: number, done: boolean): void => {
    if (!window) return;
    dragStart ??= window;
    window = dragWindow(dragStart, dx, dy);
    paint();
    if (!done) return;
    dragStart = null;
    preset.value = "-1";
    void render();
  };
  const unsub = model.onChange(paint);
  paint();

  return {
    el,
    step,
    go,
    get window() {
      return window;
    },
    onWindowDrag: window ? onWindowDrag : null,
    destroy() {
      unsub();
    },
  };
}
