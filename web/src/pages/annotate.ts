/** /tasks/:id — tour, qualification, then the annotation loop with auto-save, drafts, "no object
 * here", skip and the previous image. */
import { api, ApiError, bitmap, uuid, type AttemptResult, type ImageInfo, type NextImage, type ShapeJson, type Task } from "../api";
import { fmtNum, h, toast } from "../dom";
import { goldFeedback, goldMessage, type GoldFeedback } from "../gold";
import { markdownInto } from "../markdown";
import { queue } from "../queue";
import { navigate, onLeave } from "../router";
import { me } from "../session";
import { draftKey as keyOf, hasWork, loadDraft as readDraft, onLeaving, saveDraft, type Draft } from "../editor/draft";
import type { SubmissionBody } from "../saver";
import { markTourSeen, runTour, tourSeen, type TourStep } from "../ui/tour";
import { icon } from "../ui/icons";
import { stackOf } from "../editor/frames";
import { createWorkbench, type Workbench } from "../ui/workbench";
import { tourDrawText, tourEditText, tourZoomText } from "../ui/wording";
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

const draftKey = (task: string, image: string): string => keyOf(me()?.id ?? "anon", task, image);
const loadDraft = (task: string, image: string): Draft | null => readDraft(localStorage, draftKey(task, image));

/** The images this user submitted on the task from this device, newest last (for "previous"). */
interface Recent {
  image: ImageInfo;
  task_id: string;
  body: SubmissionBody;
  position: number | null;
}
const RECENT_KEPT = 10;
const recentKey = (task: string): string => `crowdseg.recent.${me()?.id ?? "anon"}.${task}`;
function recentOf(task: string): Recent[] {
  try {
    const v = JSON.parse(localStorage.getItem(recentKey(task)) ?? "[]") as unknown;
    return Array.isArray(v) ? (v as Recent[]) : [];
  } catch {
    return [];
  }
}
function remember(task: string, r: Recent): void {
  const items = [...recentOf(task).filter((x) => x.image.id !== r.image.id), r].slice(-RECENT_KEPT);
  try {
    localStorage.setItem(recentKey(task), JSON.stringify(items));
  } catch {
    /* storage full: no previous image then */
  }
}

function tourSteps(wb: Workbench, task: Task, qualifying: boolean): TourStep[] {
  const q = (sel: string) => () => wb.el.querySelector(sel);
  const touch = wb.touch;
  const steps: TourStep[] = [
    {
      title: `Welcome to “${task.title}”`,
      text: qualifying
        ? "This short tour shows the tool. Then you will outline a few tutorial images; your result is compared with an expert's before the task opens."
        : "This short tour shows the annotation tool. You can replay it any time with the Tour button.",
    },
    { target: () => wb.stage, title: "Draw", text: tourDrawText(task.tool, touch) },
  ];
  if (task.tool !== "point") {
    steps.push({ target: () => wb.stage, title: "Edit", text: tourEditText(touch) });
    steps.push({
      target: q(".wb-tol"),
      title: "Freehand simplification",
      text: "Traced strokes are simplified with the Ramer–Douglas–Peucker algorithm. This is its tolerance in image pixels: higher gives fewer vertices.",
    });
  }
  if (task.tool === "contour" || task.tool === "polyline")
    steps.push({ target: q('[data-testid="smooth"]'), title: "Smooth outlines", text: "Outlines are drawn as smooth cubic Bézier curves through your vertices; what you see is what is saved." });
  steps.push(
    {
      target: q('[data-testid="undo"]'),
      title: "Undo and redo",
      text: touch
        ? "Undo steps back one vertex or edit at a time: right after closing an outline it opens it again. The bin deletes the selected vertex or shape."
        : "Ctrl+Z undoes one step (right after closing an outline it opens it again), Ctrl+Shift+Z redoes. Delete removes the selected vertex or shape.",
    },
    { target: () => wb.stage, title: "Zoom and pan", text: tourZoomText(touch) },
    { target: q('[data-testid="instructions"]'), title: "Instructions", text: touch ? "The task's instructions are always one tap away." : "The task's instructions are always one click (or the I key) away." },
  );
  if (!qualifying)
    steps.push({
      target: q('[data-testid="no-object"]'),
      title: "Nothing to outline?",
      text: touch
        ? "If the image shows no object, say so with “No object here”: that is an answer too. “Skip” leaves the image to others."
        : "If the image shows no object, say so with “No object here” (E): that is an answer too. “Skip” (Shift+N) leaves the image to others.",
    });
  steps.push({
    target: q('[data-testid="primary"]'),
    title: qualifying ? "Submit" : "Next",
    text: qualifying
      ? "When you are done with a tutorial image, submit it to see your score and the expert's outline."
      : "Next saves your work and brings the next image. Leaving the page saves finished shapes; an outline you have not closed stays on this device for when you come back.",
  });
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
    const b = h("button", { class: "btn icon", type: "button", title: "Replay the guided tour", "aria-label": "Replay the guided tour", "data-testid": "replay-tour" }, icon("tour"));
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
        labels: task.labels ?? [],
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

  /** After a gold answer: its score, and the expert's outline over the image when the task shows it. */
  function showGold(w: Workbench, gold: GoldFeedback): Promise<void> {
    return new Promise((resolve) => {
      if (gold.reference.length) w.view.setReference(gold.reference);
      w.view.opts.readonly = true;
      document.body.dataset.gold = gold.reference.length ? "reference" : "score";
      w.ask(goldMessage(gold), [{ label: "Continue →", testid: "gold-continue", primary: true, run: () => resolve() }]);
    });
  }

  // ---- annotation loop --------------------------------------------------------
  /** Images passed over on this visit: not offered again until the user asks for them. */
  let skipped: string[] = [];
  /** The image being annotated, to come back to from a previous one. */
  let current: { image: ImageInfo; progress: NextImage["progress"] } | null = null;

  async function nextImage(): Promise<void> {
    destroyWb();
    loading("Fetching the next image…");
    let nx;
    try {
      nx = await api.next(taskId, skipped);
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
            skipped.length ? againButton() : null,
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
            h("h2", null, skipped.length ? "Nothing else left" : "All done"),
            h(
              "p",
              null,
              skipped.length
                ? `You skipped ${skipped.length} image${skipped.length === 1 ? "" : "s"} in “${task.title}”; there is nothing else for you right now.`
                : `There is nothing left for you in “${task.title}” right now. Thank you for your contributions!`,
            ),
            pending ? h("p", { class: "pill pill-warn" }, `${pending} submission(s) still waiting to be saved — they are kept on this device and retried.`) : null,
            h("div", { class: "row" }, skipped.length ? againButton() : null, h("a", { class: "btn btn-primary", href: "/" }, "Back to the dashboard")),
          ),
        ),
      );
      return;
    }
    showImage(nx.image, nx.progress ?? null);
  }

  function againButton(): HTMLElement {
    const b = h("button", { class: "btn", type: "button", "data-testid": "show-skipped" }, "Show the skipped images again");
    b.addEventListener("click", () => {
      skipped = [];
      void nextImage();
    });
    return b;
  }

  function showImage(img: ImageInfo, progress: NextImage["progress"] = null): void {
    destroyWb();
    shell.replaceChildren();
    current = { image: img, progress };
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

    const position = progress ? Math.min(progress.images + 1, progress.quota) : null;
    const w = createWorkbench(shell, {
      title: `${task.title} — ${img.name ?? img.id}`,
      tool: task.tool,
      maxShapes: task.max_shapes,
      labels: task.labels ?? [],
      stack: stackOf(img),
      interpolate: task.interpolate_frames === true,
      width: img.width,
      height: img.height,
      instructions: task.instructions,
      primaryLabel: "Next",
      onPrimary: () => void next(),
      onNoObject: () => void noObject(),
      onSkip: () => skip(),
      onPrevious: () => previous(),
      progress:
        progress && position !== null
          ? { current: position, total: progress.quota, title: progress.link_id ? "The image on show, of this study's quota" : "The image on show, of the images of this task you may annotate" }
          : null,
      extra: [tourButton(false)],
    });
    wb = w;
    expose(w, "annotate", img);
    if (hasWork(draft)) {
      w.model.load(draft!.shapes, draft!.open ?? []);
      if (draft!.open?.length) {
        const closable = draft!.open.length >= (task.tool === "polyline" ? 2 : 3);
        w.ask("You left an outline unfinished on this image. It is as you left it: finish it or discard it.", [
          ...(closable ? [{ label: "Close it", testid: "draft-close", primary: true, run: () => void w.model.finishDraft() }] : []),
          { label: "Keep drawing", testid: "draft-keep", primary: !closable, run: () => undefined },
          { label: "Discard it", testid: "draft-discard", run: () => w.model.cancelDraft() },
        ]);
      } else w.status("Restored your unsaved drawing for this image");
    }
    const persistDraft = (): void => {
      if (saved) return;
      const d: Draft = { id: subId, started_at: startedAt, shapes: w.model.shapes, open: w.model.draft, visible_ms: elapsed() };
      saveDraft(localStorage, draftKey(taskId, img.id), d);
    };
    const dropDraft = (): void => localStorage.removeItem(draftKey(taskId, img.id));
    const unsubDraft = w.model.onChange(persistDraft);

    const body = (): SubmissionBody => ({
      id: subId,
      image_id: img.id,
      shapes: w.model.toJson(w.view.opts.smooth),
      started_at: startedAt,
      duration_ms: elapsed(),
      click_times: w.view.clickTimes.slice(),
    });
    const teardown = (): void => {
      document.removeEventListener("visibilitychange", onVis);
      unsubDraft();
    };
    const record = (b: SubmissionBody): void => remember(taskId, { image: img, task_id: taskId, body: b, position });
    // leaving without Next (the dashboard, Back, a reload): an open outline stays a draft, unsent
    saveCurrent = () => {
      if (saved) return;
      const leaving = onLeaving({ shapes: w.model.shapes.length, openVertices: w.model.draft.length });
      if (leaving === "keep-draft") {
        persistDraft();
        return;
      }
      if (leaving === "nothing") {
        dropDraft();
        return;
      }
      saved = true;
      const b = body();
      queue.put(taskId, b);
      record(b);
      dropDraft();
      void queue.flush(true);
    };
    const leaveImage = (): void => {
      teardown();
      saveCurrent = null;
    };
    let busy = false;
    const submitAndGo = async (b: SubmissionBody): Promise<void> => {
      if (busy || saved) return;
      busy = true;
      if (w.primary) w.primary.disabled = true;
      saved = true;
      dropDraft();
      let answer: unknown;
      const offAnswer = queue.onAccepted((id, a) => {
        if (id === b.id) answer = a;
      });
      const ok = await Promise.race([queue.submit(taskId, b), new Promise<boolean>((r) => setTimeout(() => r(false), 8000))]);
      offAnswer();
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
      } else record(b);
      if (!ok) toast("Saving is taking longer than usual — your drawing is kept on this device and will be retried.", "info", 5000);
      else if (!stuck) toast("Saved", "ok", 1200);
      const gold = goldFeedback(answer);
      if (gold && !disposed) await showGold(w, gold);
      leaveImage();
      if (!disposed) await nextImage();
    };
    const next = async (): Promise<void> => {
      if (busy || saved) return;
      if (w.model.draft.length) {
        // never close (or drop) an outline behind the user's back
        const closable = w.model.draft.length >= (task.tool === "polyline" ? 2 : 3);
        w.ask("Your outline is not closed yet.", [
          ...(closable ? [{ label: "Close it and go on", testid: "draft-close-next", primary: true, run: () => void (w.model.finishDraft() && next()) }] : []),
          { label: "Keep drawing", testid: "draft-keep", primary: !closable, run: () => undefined },
          { label: "Discard it", testid: "draft-discard", run: () => w.model.cancelDraft() },
        ]);
        return;
      }
      if (!w.model.shapes.length) {
        w.ask("Nothing is drawn on this image.", [
          { label: "No object here", testid: "ask-no-object", primary: true, run: () => void noObject() },
          { label: "Skip it", testid: "ask-skip", run: () => skip() },
          { label: "Keep drawing", testid: "draft-keep", run: () => undefined },
        ]);
        return;
      }
      await submitAndGo(body());
    };
    /** "No object here": an empty annotation, which the API accepts like any other. */
    const noObject = async (): Promise<void> => {
      if (w.model.shapes.length || w.model.draft.length) return;
      await submitAndGo({ ...body(), shapes: [] });
    };
    const skip = (): void => {
      if (busy || saved) return;
      const go = (): void => {
        saved = true;
        dropDraft();
        skipped = [...skipped.filter((id) => id !== img.id), img.id].slice(-100);
        leaveImage();
        toast("Skipped — the image is left to others.", "info", 1500);
        if (!disposed) void nextImage();
      };
      if (w.model.shapes.length || w.model.draft.length)
        w.ask("Skip this image? What you drew on it is dropped.", [
          { label: "Skip it", testid: "ask-skip", primary: true, run: go },
          { label: "Keep drawing", testid: "draft-keep", run: () => undefined },
        ]);
      else go();
    };
    const previous = (): void => {
      if (busy || saved) return;
      const recent = recentOf(taskId).filter((r) => r.image.id !== img.id);
      if (!recent.length) {
        w.status("No previous image yet: you have not submitted one in this task on this device");
        return;
      }
      if (hasWork({ id: subId, started_at: startedAt, shapes: w.model.shapes, open: w.model.draft, visible_ms: 0 })) persistDraft();
      leaveImage();
      showPrevious(recent, recent.length - 1);
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

  /**
   * A submitted image again, with what was sent. While its submission is still on this device (not
   * yet acknowledged) it can be changed; once the server has it, the consensus may already count it,
   * and a stored submission cannot be replaced through the API, so it is shown read-only.
   */
  function showPrevious(recent: Recent[], index: number): void {
    destroyWb();
    shell.replaceChildren();
    const r = recent[index]!;
    const pending = queue.list().find((p) => p.body.id === r.body.id && !p.rejected);
    const editable = !!pending;
    const back = (): void => {
      if (editable && w.model.draft.length === 0) {
        const b = { ...r.body, shapes: w.model.toJson(w.view.opts.smooth) };
        if (queue.has(b.id)) {
          queue.put(r.task_id, b); // the same client id: it replaces the unsent one
          remember(taskId, { ...r, body: b });
          void queue.flush();
        }
      }
      if (current) showImage(current.image, current.progress);
      else void nextImage();
    };
    const w = createWorkbench(shell, {
      title: `${task.title} — ${r.image.name ?? r.image.id} (previous)`,
      tool: task.tool,
      maxShapes: task.max_shapes,
      labels: task.labels ?? [],
      stack: stackOf(r.image),
      interpolate: task.interpolate_frames === true,
      width: r.image.width,
      height: r.image.height,
      instructions: task.instructions,
      readonly: !editable,
      primaryLabel: editable ? "Save and return" : "Back to the current image",
      onPrimary: back,
      onPrevious: index > 0 ? () => showPrevious(recent, index - 1) : undefined,
      progress: r.position !== null && current?.progress ? { current: r.position, total: current.progress.quota } : null,
    });
    wb = w;
    expose(w, "previous", r.image);
    w.model.load(r.body.shapes.map((s) => ({ type: s.type, points: s.points, ...(s.label ? { label: s.label } : {}) })));
    w.banner(
      editable
        ? "Your previous image: it is not on the server yet, so you can still change it."
        : r.body.shapes.length
          ? "Your previous image, as saved. The server has it (the consensus may already count it), so it can no longer be changed."
          : "Your previous image, saved as “no object here”. The server has it, so it can no longer be changed.",
      editable ? "" : "ok",
    );
    void (async () => {
      try {
        w.setImage(await bitmap(`/images/${encodeURIComponent(r.image.id)}/file`));
      } catch (e) {
        toast(`Could not load the image: ${e instanceof Error ? e.message : e}`, "error");
      }
    })();
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
