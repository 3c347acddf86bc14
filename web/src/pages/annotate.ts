/** /tasks/:id — tour, qualification, then the annotation loop with auto-save. */
import { api, ApiError, bitmap, uuid, type AttemptResult, type ImageInfo, type ShapeJson, type Task } from "../api";
import { fmtNum, h, toast } from "../dom";
import { markdownInto } from "../markdown";
import { queue } from "../queue";
import { navigate, onLeave } from "../router";
import { me } from "../session";
import type { Shape } from "../editor/model";
import { markTourSeen, runTour, tourSeen, type TourStep } from "../ui/tour";
import { createWorkbench, type Workbench } from "../ui/workbench";
import { completionScreen } from "./study";

declare global {
  interface Window {
    crowdseg?: { workbench: Workbench | null; phase: string; image: ImageInfo | null };
  }
}

function expose(wb: Workbench | null, phase: string, image: ImageInfo | null): void {
  window.crowdseg = { workbench: wb, phase, image };
  document.body.dataset.phase = phase;
}

interface Draft {
  id: string;
  started_at: string;
  shapes: Shape[];
  visible_ms: number;
}

const draftKey = (task: string, image: string): string => `crowdseg.draft.${me()?.id ?? "anon"}.${task}.${image}`;

function loadDraft(task: string, image: string): Draft | null {
  try {
    const v = localStorage.getItem(draftKey(task, image));
    return v ? (JSON.parse(v) as Draft) : null;
  } catch {
    return null;
  }
}

function tourSteps(wb: Workbench, task: Task, qualifying: boolean): TourStep[] {
  const q = (sel: string) => () => wb.el.querySelector(sel);
  const drawText: Record<string, string> = {
    contour:
      "Outline each structure: click vertex after vertex (the outline closes itself when you click the first vertex or press Enter), or hold the button down and trace the edge freehand.",
    polygon: "Click the corners of each object; click the first vertex or press Enter to close. You can also hold and trace.",
    point: "Click once on the centre of every object. Drag a point to move it.",
    polyline: "Click along the line, or hold and trace it. Press Enter or click the last vertex again to finish the line.",
  };
  const steps: TourStep[] = [
    {
      title: `Welcome to “${task.title}”`,
      text: qualifying
        ? "This short tour shows the tool. Then you will outline a few tutorial images; your result is compared with an expert's before the task opens."
        : "This short tour shows the annotation tool. You can replay it any time with the Tour button.",
    },
    { target: () => wb.stage, title: "Draw", text: drawText[task.tool] ?? drawText.contour! },
  ];
  if (task.tool !== "point") {
    steps.push({
      target: () => wb.stage,
      title: "Edit",
      text: "Select a shape to see its vertices: drag a vertex to move it, click on an edge to insert one, Alt+click or right-click a vertex to delete it, drag inside the shape to move it all.",
    });
    steps.push({
      target: q(".wb-tol"),
      title: "Freehand simplification",
      text: "Traced strokes are simplified with the Ramer–Douglas–Peucker algorithm. This is its tolerance in image pixels: higher gives fewer vertices.",
    });
  }
  if (task.tool === "contour" || task.tool === "polyline")
    steps.push({ target: q('[data-testid="smooth"]'), title: "Smooth outlines", text: "Outlines are drawn as smooth cubic Bézier curves through your vertices; what you see is what is saved." });
  steps.push(
    { target: q('[data-testid="undo"]'), title: "Undo and redo", text: "Ctrl+Z undoes, Ctrl+Shift+Z redoes. Delete removes the selected vertex or shape." },
    { target: () => wb.stage, title: "Zoom and pan", text: "Use the mouse wheel or pinch to zoom, Space+drag, the middle button or two fingers to pan, 0 to fit the image." },
    { target: q('[data-testid="instructions"]'), title: "Instructions", text: "The task's instructions are always one click (or the I key) away." },
    {
      target: q('[data-testid="primary"]'),
      title: qualifying ? "Submit" : "Next",
      text: qualifying
        ? "When you are done with a tutorial image, submit it to see your score and the expert's outline."
        : "Next saves your work automatically and brings the next image. Leaving the page saves too.",
    },
  );
  return steps;
}

export async function annotatePage(root: HTMLElement, params: Record<string, string>): Promise<() => void> {
  const taskId = params.id!;
  let wb: Workbench | null = null;
  let disposed = false;
  let saveCurrent: ((reason: "leave") => void) | null = null;
  const cleanupFns: Array<() => void> = [];
  const shell = h("div", { class: "annotate" });
  root.append(shell);

  const loading = (msg: string): void => {
    shell.replaceChildren(h("div", { class: "page" }, h("p", { class: "muted" }, msg)));
  };
  const fail = (msg: string): void => {
    shell.replaceChildren(
      h("div", { class: "page narrow" }, h("div", { class: "card stack" }, h("h2", null, "Cannot open the task"), h("p", null, msg), h("a", { class: "btn", href: "/" }, "Back to the dashboard"))),
    );
  };
  const destroyWb = (): void => {
    wb?.destroy();
    wb = null;
    expose(null, "none", null);
  };

  loading("Loading task…");
  let task: Task;
  try {
    task = await api.task(taskId);
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
    return () => undefined;
  }
  const user = me();
  const wantTour = !!user && !tourSeen(user.id, taskId);

  const tourButton = (qualifying: boolean): HTMLElement => {
    const b = h("button", { class: "btn", type: "button", title: "Replay the guided tour", "data-testid": "replay-tour" }, "Tour");
    b.addEventListener("click", () => {
      if (wb) void runTour(tourSteps(wb, task, qualifying));
    });
    return b;
  };

  async function maybeTour(qualifying: boolean): Promise<void> {
    if (!wb || !user || tourSeen(user.id, taskId) || !wantTour) return;
    await runTour(tourSteps(wb, task, qualifying));
    markTourSeen(user.id, taskId);
  }

  // ---- qualification ------------------------------------------------------------
  async function qualification(): Promise<boolean> {
    let q;
    try {
      q = await api.qualification(taskId);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return true;
      throw e;
    }
    if (!q.required || q.passed) return true;
    const images = q.images;
    if (!images.length) return true;
    const scores: AttemptResult[] = [];
    for (let i = 0; i < images.length && !disposed; i++) {
      const r = await qualifyImage(images[i]!, i, images.length);
      if (!r) return false;
      scores.push(r);
    }
    if (disposed) return false;
    const after = await api.qualification(taskId);
    destroyWb();
    if (after.passed) {
      toast("Qualification passed — welcome to the task!", "ok");
      return true;
    }
    const again = h("button", { class: "btn btn-primary", type: "button", "data-testid": "retry-qualification" }, "Try again");
    shell.replaceChildren(
      h(
        "div",
        { class: "page narrow" },
        h(
          "div",
          { class: "card stack" },
          h("h2", null, "Not passed yet"),
          h("p", null, `Your outlines must reach ${task.metric} ≥ ${task.pass_threshold} on the tutorial images. Look at the expert outlines again and retry.`),
          h("ul", null, scores.map((s, k) => h("li", null, `Image ${k + 1}: ${s.metric} ${fmtNum(s.score, 3)} ${s.passed ? "✓" : "✗"}`))),
          h("div", { class: "row" }, again, h("a", { class: "btn", href: "/" }, "Dashboard")),
        ),
      ),
    );
    await new Promise<void>((res) => again.addEventListener("click", () => res()));
    return qualification();
  }

  function qualifyImage(img: ImageInfo, i: number, n: number): Promise<AttemptResult | null> {
    return new Promise((resolve) => {
      destroyWb();
      shell.replaceChildren();
      let result: AttemptResult | null = null;
      const w = createWorkbench(shell, {
        title: `Tutorial ${i + 1} of ${n} — ${task.title}`,
        tool: task.tool,
        maxShapes: task.max_shapes,
        width: img.width,
        height: img.height,
        instructions: task.instructions,
        primaryLabel: "Submit attempt",
        onPrimary: () => void submit(),
        extra: [tourButton(true)],
      });
      wb = w;
      expose(w, "qualification", img);
      w.banner(`Tutorial image ${i + 1} of ${n}: outline it as well as you can, then submit.`);
      let busy = false;
      const submit = async (): Promise<void> => {
        if (busy) return;
        if (result) {
          resolve(result);
          return;
        }
        w.model.finishDraft();
        const shapes = w.model.toJson(w.view.opts.smooth);
        if (!shapes.length) {
          w.status("Draw at least one shape first");
          return;
        }
        busy = true;
        try {
          result = await api.attempt(taskId, img.id, shapes);
          const ref = (result.reference ?? (result as { reference_shapes?: ShapeJson[] }).reference_shapes) as ShapeJson[] | undefined;
          if (ref?.length) w.view.setReference(ref);
          w.view.opts.readonly = true;
          w.banner(
            `${result.passed ? "✓ Passed" : "✗ Not passed"} — ${result.metric} ${fmtNum(result.score, 3)} (threshold ${task.pass_threshold})${ref?.length ? ". Dashed yellow: the expert's outline." : ""}`,
            result.passed ? "ok" : "bad",
          );
          document.body.dataset.attempt = result.passed ? "passed" : "failed";
          if (w.primary) w.primary.textContent = i + 1 < n ? "Continue →" : "Finish tutorial";
        } catch (e) {
          toast(`Could not submit the attempt: ${e instanceof Error ? e.message : e}`, "error");
        } finally {
          busy = false;
        }
      };
      void (async () => {
        try {
          w.setImage(await bitmap(`/images/${encodeURIComponent(img.id)}/file`));
        } catch (e) {
          toast(`Could not load the tutorial image: ${e instanceof Error ? e.message : e}`, "error");
        }
        await maybeTour(true);
      })();
    });
  }

  // ---- annotation loop --------------------------------------------------------
  async function nextImage(): Promise<void> {
    destroyWb();
    loading("Fetching the next image…");
    let nx;
    try {
      nx = await api.next(taskId);
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) {
        const ok = await qualification();
        if (ok && !disposed) return nextImage();
        return;
      }
      fail(e instanceof Error ? e.message : String(e));
      return;
    }
    if (disposed) return;
    // the server may hand back an image whose submission is still in the local queue (its lease is
    // ours): wait for the queue to deliver it instead of showing the image again
    const img0 = nx?.image;
    if (img0 && queue.list().some((p) => p.task_id === taskId && p.body.image_id === img0.id && !p.rejected)) {
      loading("Saving your last drawing… it is kept on this device until the server has it.");
      await queue.flush();
      if (queue.list().some((p) => p.task_id === taskId && p.body.image_id === img0.id && !p.rejected))
        await new Promise((r) => setTimeout(r, 1500));
      if (!disposed) return nextImage();
      return;
    }
    const linkId = me()?.link_id;
    if ((!nx || !nx.image) && linkId) {
      // a study link's worker: the completion code once the quota is done
      expose(null, "done", null);
      const progress = await api.linkProgress(linkId);
      if (disposed) return;
      if (progress.done) {
        completionScreen(shell, progress);
        return;
      }
      shell.replaceChildren(
        h(
          "div",
          { class: "page narrow" },
          h(
            "div",
            { class: "card stack", "data-testid": "all-done" },
            h("h2", null, "No more images right now"),
            h("p", null, `You annotated ${progress.images} of ${progress.quota} images, and there is no other image for you at the moment. Please come back to this page later, or contact the researcher.`),
          ),
        ),
      );
      return;
    }
    if (!nx || !nx.image) {
      expose(null, "done", null);
      const pending = queue.list().filter((p) => p.task_id === taskId).length;
      shell.replaceChildren(
        h(
          "div",
          { class: "page narrow" },
          h(
            "div",
            { class: "card stack", "data-testid": "all-done" },
            h("h2", null, "All done"),
            h("p", null, `There is nothing left for you in “${task.title}” right now. Thank you for your contributions!`),
            pending ? h("p", { class: "pill pill-warn" }, `${pending} submission(s) still waiting to be saved — they are kept on this device and retried.`) : null,
            h("a", { class: "btn btn-primary", href: "/" }, "Back to the dashboard"),
          ),
        ),
      );
      return;
    }
    showImage(nx.image, nx.progress ?? null);
  }

  function showImage(img: ImageInfo, progress: { images: number; quota: number } | null = null): void {
    shell.replaceChildren();
    const draft = loadDraft(taskId, img.id);
    const subId = draft?.id ?? uuid();
    const startedAt = draft?.started_at ?? new Date().toISOString();
    let visibleMs = draft?.visible_ms ?? 0;
    let visibleSince = document.visibilityState === "visible" ? performance.now() : null;
    const onVis = (): void => {
      if (document.visibilityState === "visible") visibleSince = performance.now();
      else if (visibleSince !== null) {
        visibleMs += performance.now() - visibleSince;
        visibleSince = null;
      }
    };
    document.addEventListener("visibilitychange", onVis);
    const elapsed = (): number => Math.round(visibleMs + (visibleSince !== null ? performance.now() - visibleSince : 0));
    let saved = false;

    const counter = progress
      ? h("span", { class: "pill pill-primary", "data-testid": "link-progress", title: "Images done of this study's quota" }, `${progress.images} of ${progress.quota}`)
      : null;
    const w = createWorkbench(shell, {
      title: progress ? `${task.title} — image ${progress.images + 1} of ${progress.quota}` : `${task.title} — ${img.name ?? img.id}`,
      tool: task.tool,
      maxShapes: task.max_shapes,
      width: img.width,
      height: img.height,
      instructions: task.instructions,
      primaryLabel: "Next →",
      onPrimary: () => void next(),
      extra: counter ? [counter, tourButton(false)] : [tourButton(false)],
    });
    wb = w;
    expose(w, "annotate", img);
    if (draft?.shapes?.length) {
      w.model.load(draft.shapes);
      w.status("Restored your unsaved drawing for this image");
    }
    const persistDraft = (): void => {
      if (saved) return;
      const d: Draft = { id: subId, started_at: startedAt, shapes: w.model.shapes, visible_ms: elapsed() };
      localStorage.setItem(draftKey(taskId, img.id), JSON.stringify(d));
    };
    const unsubDraft = w.model.onChange(persistDraft);

    const body = () => {
      w.model.finishDraft();
      return {
        id: subId,
        image_id: img.id,
        shapes: w.model.toJson(w.view.opts.smooth),
        started_at: startedAt,
        duration_ms: elapsed(),
        click_times: w.view.clickTimes.slice(),
      };
    };
    const teardown = (): void => {
      document.removeEventListener("visibilitychange", onVis);
      unsubDraft();
    };
    saveCurrent = () => {
      if (saved || (w.model.shapes.length === 0 && w.model.draft.length < 3)) return;
      saved = true;
      queue.put(taskId, body());
      localStorage.removeItem(draftKey(taskId, img.id));
      void queue.flush(true);
    };
    let busy = false;
    const next = async (): Promise<void> => {
      if (busy || saved) return;
      if (w.model.draft.length && !w.model.finishDraft()) {
        w.status("Finish or cancel (Esc) the shape you are drawing first");
        return;
      }
      if (!w.model.shapes.length && !confirm("You have not drawn anything on this image. Submit it as empty?")) return;
      busy = true;
      if (w.primary) w.primary.disabled = true;
      const b = body();
      saved = true;
      localStorage.removeItem(draftKey(taskId, img.id));
      const ok = await Promise.race([queue.submit(taskId, b), new Promise<boolean>((r) => setTimeout(() => r(false), 8000))]);
      const stuck = queue.list().find((p) => p.body.id === b.id);
      if (stuck?.rejected && stuck.last_status === 409) {
        // the image got all its annotations meanwhile (our lease had expired): nothing to fix here
        queue.discard(b.id);
        toast(`Not saved: ${stuck.last_error ?? "the image needs no more annotations"} — moving on.`, "info", 6000);
      } else if (stuck?.rejected) {
        toast(`The server refused this drawing: ${stuck.last_error ?? "invalid"}. It is kept on this device.`, "error", 8000);
        saved = false;
        queue.discard(b.id);
        persistDraft();
        busy = false;
        if (w.primary) w.primary.disabled = false;
        return;
      }
      if (!ok) toast("Saving is taking longer than usual — your drawing is kept on this device and will be retried.", "info", 5000);
      else if (!stuck) toast("Saved", "ok", 1200);
      teardown();
      saveCurrent = null;
      if (!disposed) await nextImage();
    };
    void (async () => {
      try {
        w.setImage(await bitmap(`/images/${encodeURIComponent(img.id)}/file`));
      } catch (e) {
        toast(`Could not load the image: ${e instanceof Error ? e.message : e}`, "error");
      }
      await maybeTour(false);
    })();
    cleanupFns.push(teardown);
  }

  const onPageHide = (): void => saveCurrent?.("leave");
  window.addEventListener("pagehide", onPageHide);
  const offLeave = onLeave(() => saveCurrent?.("leave"));

  void (async () => {
    try {
      const ok = await qualification();
      if (ok && !disposed) await nextImage();
    } catch (e) {
      if (!disposed) fail(e instanceof Error ? e.message : String(e));
    }
  })();

  return () => {
    disposed = true;
    saveCurrent?.("leave");
    window.removeEventListener("pagehide", onPageHide);
    offLeave();
    for (const f of cleanupFns) f();
    destroyWb();
  };
}

/** Instructions page for a task (linked from the dashboard). */
export async function instructionsPage(root: HTMLElement, params: Record<string, string>): Promise<void> {
  const task = await api.task(params.id!);
  const body = h("div");
  markdownInto(body, task.instructions || "_No instructions._");
  root.append(h("div", { class: "page" }, h("div", { class: "card stack" }, h("h1", null, task.title), body, h("div", { class: "row" }, h("a", { class: "btn btn-primary", href: `/tasks/${encodeURIComponent(task.id)}` }, "Start annotating"), h("a", { class: "btn", href: "/" }, "Dashboard")))));
  void navigate;
}
