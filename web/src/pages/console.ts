/** Task master console: tasks, settings, images, tutorial references, live view, crowds, export. */
import { api, ApiError, authHeaders, API, bitmap, blob, upload, type Evaluation, type ImageInfo, type ReviewDecision, type SubmissionRow, type Invitation, type ShapeJson, type LinkKind, type StudyLink, type Task, type TaskStats, type UploadResult, type UserRow } from "../api";
import { csvRecords } from "../csv";
import { coverageHistogram, denseBins, leaseCount, matrixColumns, progressOf, type CoverageRow } from "../coverage";
import { clear, fmtInt, fmtNum, fmtPct, h, progressBar, toast } from "../dom";
import { renderMarkdown } from "../markdown";
import { navigate } from "../router";
import { isAdmin, me } from "../session";
import { slicePage, windowLabel } from "../paging";
import { byQuality, EVALUATION_HELP_MASKS, EVALUATION_HELP_OBJECTS, FLAGGED_HELP, QUALITY_HELP, SENSITIVITY_HELP, SPECIFICITY_HELP } from "../quality";
import { ACTION_LABEL, actionsFor, ADMITTED_HELP, EXCLUDED_HELP, exclusionPatch, SCREENING_HELP, screeningPatch, standing, STANDING_LABEL, type ExclusionAction } from "../exclusion";
import { chart } from "../ui/charts";
import { pagerControls } from "../ui/pager";
import { stackOf } from "../editor/frames";
import { createWorkbench, type Workbench } from "../ui/workbench";

const enc = encodeURIComponent;
/** Rows per page of the image and coverage tables (the DOM never holds a whole 100 000-image task). */
const PAGE_SIZES = [50, 200, 500];

export async function consolePage(root: HTMLElement): Promise<void> {
  const page = h("div", { class: "page stack" });
  root.append(page);
  const tasks = await api.tasks();
  const mine = isAdmin() ? tasks : tasks.filter((t) => t.owner_id === me()?.id);
  page.append(
    h("div", { class: "row", style: { justifyContent: "space-between" } }, h("h1", { style: { margin: "0" } }, "Task console"), h("a", { class: "btn btn-primary", href: "/console/new", "data-testid": "new-task" }, "+ New task")),
  );
  if (!mine.length) {
    page.append(h("div", { class: "card empty" }, "You have no task yet. Create one, upload images, add a tutorial and invite annotators."));
    return;
  }
  page.append(
    h(
      "div",
      { class: "card table-wrap" },
      h(
        "table",
        null,
        h("thead", null, h("tr", null, h("th", null, "Title"), h("th", null, "Tool"), h("th", null, "Status"), h("th", null, "Visibility"), h("th", null, "Raters"), h("th", null, ""))),
        h(
          "tbody",
          null,
          mine.map((t) =>
            h(
              "tr",
              null,
              h("td", null, h("a", { href: `/console/tasks/${enc(t.id)}` }, t.title)),
              h("td", null, h("span", { class: "pill pill-primary" }, t.tool)),
              h("td", null, h("span", { class: `pill ${t.status === "open" ? "pill-ok" : "pill-warn"}` }, t.status ?? "open")),
              h("td", null, t.visibility),
              h("td", null, String(t.replicates)),
              h("td", null, h("a", { class: "btn", href: `/console/tasks/${enc(t.id)}` }, "Manage")),
            ),
          ),
        ),
      ),
    ),
  );
}

const DEFAULTS: Partial<Task> = {
  title: "",
  instructions: "## What to outline\n\nOutline **every** structure of interest.\n\n- Click vertices around the edge, or hold the button and trace it.\n- Zoom in (mouse wheel) for fine edges.\n",
  tool: "contour",
  replicates: 3,
  order: "name_asc",
  unseen_first: true,
  metric: "dice",
  pass_threshold: 0.7,
  reveal_reference: "after_passing",
  visibility: "public",
  max_shapes: 10,
  status: "open",
};

/** The adaptive-replicates fields as the API takes them: at least as many as the raters per image is fixed coverage (null). */
function adaptiveFields(replicates: number, minReplicates: number, confidence: number): Partial<Task> {
  return { min_replicates: minReplicates >= 1 && minReplicates < replicates ? minReplicates : null, confidence };
}

function taskForm(initial: Partial<Task>, submitLabel: string, onSubmit: (t: Partial<Task>) => Promise<void>, editing = false): HTMLElement {
  const v = { ...DEFAULTS, ...initial };
  const sel = (name: string, opts: [string, string][], value: string): HTMLSelectElement =>
    h("select", { name, id: `f-${name}` }, opts.map(([val, label]) => h("option", { value: val, selected: val === value }, label)));
  const title = h("input", { type: "text", name: "title", id: "f-title", value: v.title ?? "", required: true, maxLength: 200 });
  const instr = h("textarea", { name: "instructions", id: "f-instructions" });
  instr.value = v.instructions ?? "";
  const preview = h("div", { class: "md-preview markdown", "aria-live": "polite", "data-testid": "md-preview" });
  const upd = (): void => {
    preview.innerHTML = renderMarkdown(instr.value);
  };
  instr.addEventListener("input", upd);
  upd();
  const tool = sel("tool", [["contour", "Contour (smooth outline → mask)"], ["polygon", "Polygon (straight edges → mask)"], ["point", "Point (crosshair clicks)"], ["polyline", "Polyline (lines)"]], v.tool!);
  const replicates = h("input", { type: "number", name: "replicates", id: "f-replicates", min: "1", max: "100", value: String(v.replicates) });
  const minReplicates = h("input", { type: "number", name: "min_replicates", id: "f-min_replicates", min: "1", max: "100", value: String(v.min_replicates ?? v.replicates) });
  const confidence = h("input", { type: "number", name: "confidence", id: "f-confidence", step: "0.01", min: "0", max: "1", value: String(v.confidence ?? 0.9) });
  const maxShapes = h("input", { type: "number", name: "max_shapes", id: "f-max_shapes", min: "1", max: "1000", value: String(v.max_shapes) });
  const order = sel("order", [["name_asc", "Name ascending"], ["name_desc", "Name descending"], ["random", "Random"]], v.order!);
  const unseen = h("input", { type: "checkbox", name: "unseen_first", id: "f-unseen_first", checked: !!v.unseen_first });
  const metric = sel("metric", [["dice", "Dice"], ["jaccard", "Jaccard"], ["mhd", "Modified Hausdorff distance (px, lower is better)"]], v.metric!);
  const threshold = h("input", { type: "number", name: "pass_threshold", id: "f-pass_threshold", step: "0.01", min: "0", value: String(v.pass_threshold) });
  const visibility = sel("visibility", [["public", "Public — every annotator"], ["private", "Private — members only"]], v.visibility!);
  const reveal = sel(
    "reveal_reference",
    [
      ["after_passing", "Once the annotator has passed"],
      ["after_each_attempt", "After every attempt (that tutorial image is then used up)"],
      ["never", "Never"],
    ],
    v.reveal_reference ?? "after_passing",
  );
  const goldRate = h("input", { type: "number", name: "gold_rate", id: "f-gold_rate", step: "0.05", min: "0", max: "1", value: String(v.gold_rate ?? 0) });
  const goldFeedback = h("input", { type: "checkbox", name: "gold_feedback", id: "f-gold_feedback", checked: !!v.gold_feedback });
  const status = sel("status", [["open", "Open"], ["draft", "Draft"], ["closed", "Closed"]], v.status ?? "open");
  const interpolate = h("input", { type: "checkbox", name: "interpolate_frames", id: "f-interpolate_frames", checked: !!v.interpolate_frames });
  const masks = (): boolean => tool.value === "contour" || tool.value === "polygon";
  const syncInterpolate = (): void => {
    interpolate.disabled = !masks();
    if (!masks()) interpolate.checked = false;
  };
  tool.addEventListener("change", syncInterpolate);
  syncInterpolate();
  if (editing) tool.disabled = true;
  const err = h("div", { class: "form-error", role: "alert" });
  const submit = h("button", { class: "btn btn-primary", type: "submit", "data-testid": "save-task" }, submitLabel);
  const f = (label: string, el: HTMLElement, hint?: string): HTMLElement =>
    h("div", { class: "field" }, h("label", { for: el.id }, label, hint ? h("span", { class: "hint" }, ` — ${hint}`) : null), el);
  const form = h(
    "form",
    { class: "card stack" },
    f("Title", title),
    h("div", null, h("label", { for: "f-instructions" }, "Instructions ", h("span", { class: "hint" }, "— Markdown, with a live preview (rendered safely)")), h("div", { class: "md-split" }, instr, preview)),
    h("div", { class: "grid grid-3" }, f("Tool", tool, editing ? "fixed once the task exists" : undefined), f("Raters per image", replicates, "replicates"), f("Max shapes per image", maxShapes)),
    h("div", { class: "grid grid-3" }, f("Image order", order), h("div", { class: "field" }, h("label", null, "\u00a0"), h("label", { class: "check", for: "f-unseen_first" }, unseen, "Not-yet-annotated images first")), f("Status", status)),
    h("div", { class: "grid grid-3" }, f("Qualification metric", metric), f("Pass threshold", threshold, "Dice/Jaccard ≥, MHD ≤"), f("Visibility", visibility)),
    h("div", { class: "grid grid-3" }, f("Retire after", minReplicates, "raters, once they agree; = raters per image: never early"), f("Agreement to retire", confidence, "0–1, median leave-one-out agreement")),
    h(
      "div",
      { class: "grid grid-3" },
      f("Show the expert reference", reveal, "an annotator who sees it before passing could copy it"),
      h("div", { class: "field" }, h("label", null, "\u00a0"), h("label", { class: "check", for: "f-interpolate_frames" }, interpolate, "Stacks: fill between drawn frames (interpolate)")),
    ),
    h(
      "div",
      { class: "grid grid-3" },
      f("Gold share", goldRate, "0–1: images with a reference mixed into each annotator's stream, fewer as they gain experience"),
      h("div", { class: "field" }, h("label", null, "\u00a0"), h("label", { class: "check", for: "f-gold_feedback" }, goldFeedback, "Show the expert's outline after a gold answer")),
    ),
    err,
    h("div", { class: "row" }, submit),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    if (!title.value.trim()) {
      err.textContent = "A title is needed.";
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit({
        title: title.value.trim(),
        instructions: instr.value,
        ...(editing ? {} : { tool: tool.value as Task["tool"] }),
        replicates: Number(replicates.value),
        ...adaptiveFields(Number(replicates.value), Number(minReplicates.value), Number(confidence.value)),
        order: order.value as Task["order"],
        unseen_first: unseen.checked,
        metric: metric.value as Task["metric"],
        pass_threshold: Number(threshold.value),
        reveal_reference: reveal.value as Task["reveal_reference"],
        gold_rate: Number(goldRate.value),
        gold_feedback: goldFeedback.checked,
        visibility: visibility.value as Task["visibility"],
        max_shapes: Number(maxShapes.value),
        status: status.value as Task["status"],
        ...(masks() ? { interpolate_frames: interpolate.checked } : {}),
      });
    } catch (ex) {
      err.textContent = ex instanceof Error ? ex.message : String(ex);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export function newTaskPage(root: HTMLElement): void {
  root.append(
    h(
      "div",
      { class: "page stack" },
      h("h1", null, "New task"),
      taskForm({}, "Create task", async (t) => {
        const created = await api.createTask(t);
        toast("Task created", "ok");
        navigate(`/console/tasks/${enc(created.id)}?tab=images`);
      }),
    ),
  );
}

// ---------------------------------------------------------------------------------

export async function taskConsolePage(root: HTMLElement, params: Record<string, string>): Promise<() => void> {
  const id = params.id!;
  let task = await api.task(id);
  const page = h("div", { class: "page stack" });
  root.append(page);
  const cleanups: Array<() => void> = [];
  const header = h("div", { class: "row", style: { justifyContent: "space-between" } });
  const renderHeader = (): void => {
    header.replaceChildren(
      h("div", null, h("h1", { style: { margin: "0" } }, task.title), h("div", { class: "task-meta" }, h("span", { class: "pill pill-primary" }, task.tool), h("span", { class: "pill" }, task.visibility), h("span", { class: "pill" }, task.status ?? "open"))),
      h("a", { class: "btn", href: "/console" }, "← All tasks"),
    );
  };
  renderHeader();
  const tabs = ["live", "settings", "images", "tutorial", "crowds", "export"] as const;
  type Tab = (typeof tabs)[number];
  const labels: Record<Tab, string> = { live: "Live", settings: "Settings & members", images: "Images", tutorial: "Tutorial", crowds: "Crowds & invitations", export: "Export" };
  const tabBar = h("div", { class: "tabs", role: "tablist" });
  const panel = h("div", { role: "tabpanel" });
  page.append(header, tabBar, panel);
  let stopTab: (() => void) | null = null;
  const show = (t: Tab): void => {
    stopTab?.();
    stopTab = null;
    history.replaceState(null, "", `/console/tasks/${enc(id)}?tab=${t}`);
    tabBar.querySelectorAll("button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.tab === t)));
    clear(panel);
    const fn = { live: liveTab, settings: settingsTab, images: imagesTab, tutorial: tutorialTab, crowds: crowdsTab, export: exportTab }[t];
    const r = fn(panel);
    if (typeof r === "function") stopTab = r;
  };
  for (const t of tabs) tabBar.append(h("button", { type: "button", role: "tab", dataset: { tab: t, testid: `tab-${t}` }, onclick: () => show(t) }, labels[t]));
  cleanups.push(() => stopTab?.());

  // -- settings --
  function settingsTab(p: HTMLElement): void {
    p.append(
      taskForm(task, "Save changes", async (t) => {
        task = await api.patchTask(id, t);
        renderHeader();
        toast("Saved", "ok");
      }, true),
    );
    p.append(screeningCard());
    const memberBox = h("div", { class: "card stack" }, h("h2", null, "Members"), h("p", { class: "muted small" }, "Members can see and annotate the task when it is private."));
    p.append(memberBox);
    const known = new Map<string, string>();
    const list = h("ul", { "data-testid": "members" });
    const renderMembers = (): void => {
      const ms = task.members ?? [];
      const item = (m: string): HTMLElement => {
        const remove = h("button", { class: "btn btn-ghost", type: "button", "data-testid": "remove-member", title: "Take this member off the task" }, "Remove");
        remove.addEventListener("click", async () => {
          try {
            task = await api.removeMember(id, m);
            renderMembers();
            toast("Member removed", "ok");
          } catch (e) {
            toast(e instanceof Error ? e.message : String(e), "error");
          }
        });
        return h("li", { class: "row", dataset: { member: m } }, h("span", null, known.get(m) ?? m), remove);
      };
      list.replaceChildren(...(ms.length ? ms.map(item) : [h("li", { class: "muted" }, "No member yet.")]));
    };
    renderMembers();
    const input = h("input", { type: "text", placeholder: "email or user id", "aria-label": "Email or user id of the new member", "data-testid": "member-input" });
    const add = h("button", { class: "btn", type: "button", "data-testid": "add-member" }, "Add member");
    memberBox.append(list, h("div", { class: "row" }, input, add));
    if (isAdmin())
      void api
        .users()
        .then((u: UserRow[]) => {
          for (const x of u) known.set(x.id, `${x.name} <${x.email}>`);
          renderMembers();
        })
        .catch(() => undefined);
    const addOne = async (): Promise<void> => {
      const v = input.value.trim();
      if (!v) return;
      const before = new Set(task.members ?? []);
      try {
        task = await api.addMember(id, v);
        for (const m of task.members ?? []) if (!before.has(m) && v.includes("@")) known.set(m, v);
        renderMembers();
        input.value = "";
        toast("Member added", "ok");
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
    };
    add.addEventListener("click", () => void addOne());
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        void addOne();
      }
    });
  }

  function screeningCard(): HTMLElement {
    const on = h("input", { type: "checkbox", id: "f-screening", "data-testid": "screening-on", checked: task.screening != null });
    const minimum = h("input", { type: "number", id: "f-min_quality", "data-testid": "screening-min", min: "0", max: "1", step: "0.05", value: String(task.screening?.min_quality ?? 0.5), disabled: task.screening == null, style: { width: "7rem" } });
    const state = h("p", { class: "small", "data-testid": "screening-state" });
    const showState = (): void => {
      state.textContent = task.screening ? `On: annotators below ${fmtPct(task.screening.min_quality)} quality are left out.` : "Off: every annotator's submissions are fused.";
    };
    showState();
    on.addEventListener("change", () => (minimum.disabled = !on.checked));
    const err = h("div", { class: "form-error", role: "alert" });
    const save = h("button", { class: "btn", type: "button", "data-testid": "save-screening" }, "Save screening");
    save.addEventListener("click", async () => {
      err.textContent = "";
      save.disabled = true;
      try {
        task = await api.patchTask(id, screeningPatch(on.checked, minimum.value));
        showState();
        toast(task.screening ? "Screening on: the consensus is being recomputed" : "Screening off", "ok");
      } catch (e) {
        err.textContent = e instanceof Error ? e.message : String(e);
      } finally {
        save.disabled = false;
      }
    });
    return h(
      "div",
      { class: "card stack", "data-testid": "screening-card" },
      h("h2", null, "Screening"),
      h("p", { class: "muted small" }, SCREENING_HELP, " Exclude or re-admit one annotator by hand in the Live tab's Annotators table."),
      h("div", { class: "row" }, h("label", { class: "check", for: "f-screening" }, on, "Leave low-quality annotators out"), h("label", { for: "f-min_quality" }, "Minimum quality (0–1) "), minimum, save),
      state,
      err,
    );
  }

  // -- images --
  function imagesTab(p: HTMLElement): () => void {
    const fileInput = h("input", { type: "file", multiple: true, accept: "image/*,.zip,.dcm,.tif,.tiff", hidden: true, "data-testid": "image-files" });
    const zone = h(
      "div",
      { class: "dropzone", tabIndex: 0, role: "button", "data-testid": "dropzone", "aria-label": "Upload images: drop files here or press Enter to choose" },
      h("div", { style: { fontSize: "1.8rem" } }, "↑"),
      h("strong", null, "Drop images or ZIP archives here"),
      h("div", { class: "small" }, "PNG, JPEG, TIFF, DICOM — or click to choose files"),
    );
    const bar = progressBar(0, "");
    bar.el.classList.add("labelled");
    bar.el.hidden = true;
    const result = h("div", { class: "stack", "data-testid": "upload-result" });
    const listBox = h("div");
    p.append(h("div", { class: "card stack" }, h("h2", null, "Upload"), zone, fileInput, bar.el, result), h("div", { class: "card stack" }, h("h2", null, "Images"), listBox));
    // A page of a few hundred images at a time: a task may hold 100 000.
    let images = api.images(id, 200);
    let total: number | null = null;
    const resize = (n: number): void => {
      images = api.images(id, n);
      void move(() => images.reload());
    };
    const controls = pagerControls("images-page", () => void move(() => images.prev()), () => void move(() => images.next()), { sizes: PAGE_SIZES, size: 200, onSize: resize });
    const tableBox = h("div");
    listBox.append(tableBox, controls.el);
    // Expert references: drawn with the annotators' own workbench, or uploaded as shapes (JSON).
    let refWb: Workbench | null = null;
    const refHolder = h("div", { style: { position: "relative", height: "70vh", minHeight: "420px", borderRadius: "10px", overflow: "hidden" } });
    const refSave = h("button", { class: "btn btn-primary", type: "button", "data-testid": "save-reference" }, "Save reference");
    const refTitle = h("h2", null, "Expert reference");
    const refCard = h("div", { class: "card stack", hidden: true, "data-testid": "reference-editor" }, refTitle, h("p", { class: "muted small" }, `Draw the expert's annotation with the ${task.tool} tool. The image's annotators are then scored against it (quality), and the evaluation compares the consensus with it.`), h("div", { class: "row" }, refSave), refHolder);
    p.append(refCard);
    let refImage: ImageInfo | null = null;
    const saveReference = async (image: ImageInfo, shapes: ShapeJson[]): Promise<void> => {
      if (!shapes.length) {
        toast("Draw the reference first", "error");
        return;
      }
      try {
        await api.putReference(image.id, shapes);
        toast(`Reference saved for ${image.name ?? image.id}`, "ok");
        document.body.dataset.referenceSaved = image.id;
        await refresh();
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
    };
    const openReference = async (image: ImageInfo): Promise<void> => {
      refWb?.destroy();
      refImage = image;
      const [bmp, existing] = await Promise.all([bitmap(`/images/${enc(image.id)}/file`), image.reference ? api.reference(image.id).catch(() => null) : Promise.resolve(null)]);
      refWb = createWorkbench(refHolder, { title: `Reference for ${image.name ?? image.id}`, tool: task.tool, maxShapes: task.max_shapes, labels: task.labels ?? [], width: bmp.width, height: bmp.height, stack: stackOf(image), interpolate: task.interpolate_frames === true });
      refWb.el.style.height = "100%";
      refWb.setImage(bmp);
      if (existing) refWb.model.load(existing.shapes);
      refTitle.textContent = `Expert reference — ${image.name ?? image.id}`;
      refCard.hidden = false;
      refHolder.scrollIntoView({ block: "center" });
      window.crowdseg = { workbench: refWb, phase: "reference", image: { id: image.id, width: bmp.width, height: bmp.height } };
    };
    refSave.addEventListener("click", () => {
      if (!refWb || !refImage) return;
      refWb.model.finishDraft();
      void saveReference(refImage, refWb.model.toJson(refWb.view.opts.smooth));
    });
    // Review: an image's submissions, each accepted or rejected (a rejected one leaves the consensus).
    const reviewList = h("div", { class: "table-wrap", "data-testid": "review-list" });
    const reviewTitle = h("h2", null, "Review");
    const reviewCard = h("div", { class: "card stack", hidden: true, "data-testid": "review-card" }, reviewTitle, h("p", { class: "muted small" }, "A rejected submission leaves the image's consensus (recomputed) and the image goes back to the queue for one more annotator; its annotator does not get the image again. Accept reverses a rejection."), reviewList);
    p.append(reviewCard);
    const reviewButton = (row: SubmissionRow, image: ImageInfo): HTMLElement => {
      const decision: ReviewDecision = row.review?.decision === "reject" ? "accept" : "reject";
      const label = decision === "reject" ? "Reject" : "Accept";
      return h("button", { class: decision === "reject" ? "btn btn-sm btn-danger" : "btn btn-sm", type: "button", "data-testid": `review-${decision}`, onclick: () => void decide(row, image, decision) }, label);
    };
    const renderReview = (image: ImageInfo, rows: SubmissionRow[]): void => {
      reviewList.replaceChildren(
        rows.length
          ? h(
              "table",
              null,
              h("thead", null, h("tr", null, h("th", null, "Annotator"), h("th", null, "Shapes"), h("th", null, "Sent"), h("th", null, "Review"), h("th", null, ""))),
              h(
                "tbody",
                null,
                rows.map((row) =>
                  h(
                    "tr",
                    { "data-testid": "review-row", "data-submission": row.id },
                    h("td", { class: "name-cell" }, row.user_id),
                    h("td", null, String(row.shapes.length)),
                    h("td", null, new Date(row.created_at).toLocaleString()),
                    h("td", { "data-testid": "review-state" }, row.review ? `${row.review.decision}ed${row.review.reason ? ` — ${row.review.reason}` : ""}` : "—"),
                    h("td", null, reviewButton(row, image)),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted" }, "No submission yet."),
      );
    };
    const openReview = async (image: ImageInfo): Promise<void> => {
      try {
        renderReview(image, await api.submissions(image.id));
        reviewTitle.textContent = `Review — ${image.name ?? image.id}`;
        reviewCard.hidden = false;
        reviewCard.scrollIntoView({ block: "center" });
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
    };
    const decide = async (row: SubmissionRow, image: ImageInfo, decision: ReviewDecision): Promise<void> => {
      try {
        await api.review(row.id, decision);
        toast(decision === "reject" ? "Submission rejected" : "Submission accepted", "ok");
        await Promise.all([openReview(image), refresh()]);
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
    };
    const pickReferenceJson = (image: ImageInfo): void => {
      const chooser = h("input", { type: "file", accept: "application/json,.json" });
      chooser.addEventListener("change", async () => {
        const chosen = chooser.files?.[0];
        if (!chosen) return;
        let parsed: unknown;
        try {
          parsed = JSON.parse(await chosen.text());
        } catch {
          toast(`${chosen.name} is not JSON`, "error");
          return;
        }
        const shapes = Array.isArray(parsed) ? parsed : (parsed as { shapes?: unknown } | null)?.shapes;
        if (!Array.isArray(shapes)) {
          toast("Expected a list of shapes or {shapes: [...]}", "error");
          return;
        }
        await saveReference(image, shapes as ShapeJson[]);
      });
      chooser.click();
    };
    const render = (): void => {
      const imgs = images.page?.items ?? [];
      controls.set({ label: windowLabel(images.offset, imgs.length, total), hasPrev: images.hasPrev, hasNext: images.hasNext });
      tableBox.replaceChildren(
        imgs.length
          ? h(
              "div",
              { class: "table-wrap" },
              h(
                "table",
                { "data-testid": "image-table" },
                h("thead", null, h("tr", null, h("th", null, "Name"), h("th", null, "Size"), h("th", null, "Submissions"), h("th", { title: "An expert's reference annotation: raters are scored against it, and it counts in the evaluation (Live tab)." }, "Expert reference"))),
                h(
                  "tbody",
                  null,
                  imgs.map((i) =>
                    h(
                      "tr",
                      null,
                      h("td", { class: "name-cell", title: i.name ?? i.id }, i.name ?? i.id),
                      h("td", null, `${i.width} × ${i.height}`),
                      h("td", null, h("span", { "data-testid": "image-submissions" }, String(i.submissions ?? 0)), " ", h("button", { class: "btn btn-sm", type: "button", "data-testid": "review-image", onclick: () => void openReview(i) }, "Review")),
                      h(
                        "td",
                        null,
                        i.reference ? h("span", { class: "pill pill-ok", "data-testid": "has-reference" }, "✓ ") : null,
                        h("button", { class: "btn btn-sm", type: "button", "data-testid": "draw-reference", onclick: () => void openReference(i) }, i.reference ? "Edit" : "Draw"),
                        h("button", { class: "btn btn-sm", type: "button", "data-testid": "upload-reference", title: "Upload the reference as JSON: [{type, points: [[x, y], ...]}, ...] or {shapes: [...]}", onclick: () => pickReferenceJson(i) }, "Upload JSON"),
                      ),
                    ),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted" }, "No image yet."),
      );
    };
    const move = async (go: () => Promise<unknown>): Promise<void> => {
      controls.set({ label: "loading…", hasPrev: images.hasPrev, hasNext: images.hasNext, busy: true });
      try {
        await go();
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
      render();
    };
    const refresh = async (): Promise<void> => {
      try {
        const [, stats] = await Promise.all([images.reload(), api.stats(id).catch(() => null)]);
        total = stats?.images ?? null;
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
      render();
    };
    void refresh();
    const showRejected = (rejected: UploadResult["rejected"]): void => {
      if (!rejected.length) return;
      result.append(h("div", { class: "reject-list" }, h("strong", null, `${rejected.length} file(s) rejected:`), h("ul", { "data-testid": "rejected" }, rejected.map((x) => h("li", null, `${x.name}: ${x.reason}`)))));
    };
    const send = async (files: File[]): Promise<void> => {
      if (!files.length) return;
      const fd = new FormData();
      for (const f of files) fd.append("files", f, f.name);
      bar.el.hidden = false;
      bar.set(0, "Uploading…");
      result.replaceChildren();
      try {
        const r = await upload<UploadResult>(`/tasks/${enc(id)}/images`, fd, (x) => bar.set(x, x >= 1 ? "Processing…" : `${Math.round(x * 100)} %`));
        bar.set(1, "Done");
        result.append(h("p", { class: "pill pill-ok" }, `${r.accepted.length} image(s) accepted`));
        showRejected(r.rejected);
        await refresh();
      } catch (e) {
        bar.set(0, "Failed");
        result.append(h("p", { class: "form-error" }, e instanceof Error ? e.message : String(e)));
        // When every file is refused the server answers 422 and still lists each file with its reason.
        const body = e instanceof ApiError ? (e.body as Partial<UploadResult> | null) : null;
        if (body && Array.isArray(body.rejected)) showRejected(body.rejected);
      }
    };
    zone.addEventListener("click", () => fileInput.click());
    zone.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        fileInput.click();
      }
    });
    fileInput.addEventListener("change", () => void send([...(fileInput.files ?? [])]).then(() => (fileInput.value = "")));
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      void send([...(e.dataTransfer?.files ?? [])]);
    });
    return () => refWb?.destroy();
  }

  // -- tutorial --
  function tutorialTab(p: HTMLElement): () => void {
    let wb: Workbench | null = null;
    let file: File | null = null;
    const fileInput = h("input", { type: "file", accept: "image/*,.dcm,.tif,.tiff", "data-testid": "tutorial-file", "aria-label": "Tutorial image" });
    const holder = h("div", { style: { position: "relative", height: "70vh", minHeight: "420px", borderRadius: "10px", overflow: "hidden" } });
    const save = h("button", { class: "btn btn-primary", type: "button", disabled: true, "data-testid": "save-tutorial" }, "Save tutorial image + reference");
    const info = h("p", { class: "muted small" }, `Choose an image, then draw the expert reference with the ${task.tool} tool. Annotators must match it (${task.metric} ≥ ${task.pass_threshold}) before the task opens.`);
    const existing = h("ul", { "data-testid": "tutorial-list" });
    const refreshExisting = async (): Promise<void> => {
      try {
        const imgs = await api.tutorialImages(id);
        existing.replaceChildren(
          ...(imgs.length ? imgs.map((i) => h("li", null, `${i.name ?? i.id} — ${i.width} × ${i.height} px`)) : [h("li", { class: "muted" }, "No tutorial image yet: the task opens without a qualification.")]),
        );
      } catch {
        existing.replaceChildren();
      }
    };
    void refreshExisting();
    p.append(
      h("div", { class: "card stack" }, h("h2", null, "Tutorial images with reference annotations"), info, h("div", { class: "row" }, fileInput, save), holder),
      h("div", { class: "card stack" }, h("h2", null, "Current tutorial images"), existing),
    );
    fileInput.addEventListener("change", async () => {
      file = fileInput.files?.[0] ?? null;
      wb?.destroy();
      wb = null;
      if (!file) return;
      let bmp: ImageBitmap;
      try {
        bmp = await createImageBitmap(file);
      } catch {
        toast("The browser cannot preview this file; use PNG or JPEG for tutorial images", "error");
        return;
      }
      wb = createWorkbench(holder, { title: `Reference for ${file.name}`, tool: task.tool, maxShapes: task.max_shapes, labels: task.labels ?? [], width: bmp.width, height: bmp.height });
      wb.el.style.height = "100%";
      wb.setImage(bmp);
      holder.scrollIntoView({ block: "center" });
      window.crowdseg = { workbench: wb, phase: "tutorial-reference", image: { id: "", width: bmp.width, height: bmp.height } };
      save.disabled = false;
    });
    save.addEventListener("click", async () => {
      if (!wb || !file) return;
      wb.model.finishDraft();
      const shapes = wb.model.toJson(wb.view.opts.smooth);
      if (!shapes.length) {
        toast("Draw the reference first", "error");
        return;
      }
      const fd = new FormData();
      fd.append("file", file, file.name);
      fd.append("shapes", JSON.stringify(shapes));
      save.disabled = true;
      try {
        await upload(`/tasks/${enc(id)}/tutorial`, fd, () => undefined);
        toast("Tutorial image saved", "ok");
        document.body.dataset.tutorialSaved = "1";
        void refreshExisting();
        wb.destroy();
        wb = null;
        fileInput.value = "";
        file = null;
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
        save.disabled = false;
      }
    });
    return () => wb?.destroy();
  }

  // -- live --
  function liveTab(p: HTMLElement): () => void {
    // Sized for 100 000 images and 1 000 annotators: the stats are counters and a histogram; the
    // matrix shows one page of images (the coverage route, in name order) and the users who worked
    // on that page; the annotators table is paged in memory.
    const COVERAGE_PAGE = 200;
    const MAX_COLUMNS = 40;
    const USERS_PAGE = 50;
    const CHART_USERS = 20;
    const summary = h("div", { class: "grid grid-3" });
    const progress = progressBar(0, "");
    progress.el.classList.add("labelled");
    progress.el.dataset.testid = "live-progress";
    const completeKpi = h("div", { class: "kpi", "data-testid": "live-complete" });
    const completeLabel = h("div", { class: "kpi-label" });
    const imagesKpi = h("div", { class: "kpi", "data-testid": "live-images" });
    const submissionsKpi = h("div", { class: "kpi", "data-testid": "live-submissions" });
    summary.append(
      h("div", { class: "card" }, imagesKpi, h("div", { class: "kpi-label" }, "images")),
      h("div", { class: "card" }, submissionsKpi, h("div", { class: "kpi-label" }, "submissions")),
      h("div", { class: "card stack" }, h("div", null, completeKpi, completeLabel), progress.el),
    );
    const histCanvas = h("canvas", { "aria-label": "Images by number of submissions", "data-testid": "coverage-histogram" });
    const matrixBox = h("div", { class: "table-wrap matrix-wrap", "data-testid": "coverage" });
    const matrixNote = h("p", { class: "small muted", "data-testid": "coverage-note" });
    let coverage = api.coverage(id, COVERAGE_PAGE);
    const resize = (n: number): void => {
      coverage = api.coverage(id, n);
      void moveCoverage(() => coverage.reload());
    };
    const covControls = pagerControls("coverage-page", () => void moveCoverage(() => coverage.prev()), () => void moveCoverage(() => coverage.next()), { sizes: PAGE_SIZES, size: COVERAGE_PAGE, onSize: resize });
    const thumbs = h("div", { class: "thumbs", "data-testid": "consensus-thumbs" });
    const perfCanvas = h("canvas", { "aria-label": "Per-user sensitivity and specificity" });
    const timeCanvas = h("canvas", { "aria-label": "Mean time per image per user" });
    const chartNote = h("p", { class: "small muted" });
    const usersTable = h("div", { class: "table-wrap", "data-testid": "annotators" });
    const usersControls = pagerControls("annotators-page", () => showUsers(usersPage - 1), () => showUsers(usersPage + 1));
    const usersLegend = h(
      "dl",
      { class: "small muted legend", "data-testid": "annotators-legend", style: { marginTop: "0.6rem" } },
      h("dt", null, "flagged"),
      h("dd", null, FLAGGED_HELP.replace(/^Flagged: /, ""), " A warning only: a flagged annotator is still fused unless excluded."),
      h("dt", null, "excluded"),
      h("dd", null, EXCLUDED_HELP.replace(/^Excluded: /, "")),
      h("dt", null, "re-admitted"),
      h("dd", null, ADMITTED_HELP.replace(/^Re-admitted by hand: /, "")),
    );
    const updated = h("span", { class: "small muted" });
    // Evaluation against the expert references (Images tab): loaded when the tab opens and on demand.
    const evalCanvas = h("canvas", { "aria-label": "Consensus and annotators against the expert references" });
    const evalTable = h("div", { class: "table-wrap", "data-testid": "evaluation" });
    const evalRefresh = h("button", { class: "btn btn-sm", type: "button", "data-testid": "evaluation-refresh" }, "Refresh");
    const evalCard = h(
      "div",
      { class: "card stack" },
      h("div", { class: "row", style: { justifyContent: "space-between" } }, h("h2", { style: { margin: "0" } }, "Evaluation against expert references"), evalRefresh),
      h("p", { class: "small muted" }, task.tool === "point" || task.tool === "polyline" ? EVALUATION_HELP_OBJECTS : EVALUATION_HELP_MASKS),
      evalTable,
      h("div", { class: "chart-box" }, evalCanvas),
    );
    const loadEvaluation = async (): Promise<void> => {
      try {
        const ev = await api.evaluation(id);
        if (stop) return;
        renderEvaluation(ev);
      } catch (e) {
        evalTable.replaceChildren(h("p", { class: "form-error" }, e instanceof Error ? e.message : String(e)));
      }
    };
    const renderEvaluation = (ev: Evaluation): void => {
      if (!ev.images) {
        evalTable.replaceChildren(h("p", { class: "muted" }, "No image with an expert reference and a consensus yet: add references in the Images tab."));
        return;
      }
      const masks = "dice" in ev.consensus;
      const consensusCols = masks ? ["dice", "jaccard", "mhd", "pixel_error"] : ["precision", "recall", "rmse"];
      const raterCols = masks ? ["dice", "jaccard", "sensitivity", "specificity"] : ["precision", "recall", "rmse"];
      const cols = [...new Set([...consensusCols, ...raterCols])];
      const fmt = (name: string, v: number | null | undefined): string => (v == null ? "—" : name === "mhd" || name === "rmse" ? `${fmtNum(v, 2)} px` : fmtPct(v));
      const raters = [...ev.raters].sort((a, b) => (a[raterCols[0]!] ?? 0) - (b[raterCols[0]!] ?? 0));
      evalTable.replaceChildren(
        h(
          "table",
          null,
          h("thead", null, h("tr", null, h("th", null, "Who"), h("th", null, "Images"), cols.map((c) => h("th", null, c.replace("_", " "))))),
          h(
            "tbody",
            null,
            h("tr", { class: "consensus-row", "data-testid": "evaluation-consensus" }, h("td", null, h("strong", null, "Consensus")), h("td", null, String(ev.images)), cols.map((c) => h("td", null, fmt(c, ev.consensus[c])))),
            raters.map((r) => h("tr", null, h("td", { title: r.user_id }, label(r.user_id)), h("td", null, String(r.images)), cols.map((c) => h("td", null, raterCols.includes(c) ? fmt(c, r[c]) : "")))),
          ),
        ),
      );
      const first = masks ? "dice" : "precision";
      const second = masks ? "jaccard" : "recall";
      chart(evalCanvas, {
        type: "bar",
        data: {
          labels: ["Consensus", ...raters.map((r) => label(r.user_id))],
          datasets: [
            { label: first, data: [ev.consensus[first] ?? 0, ...raters.map((r) => r[first] ?? 0)], backgroundColor: "#0d9488", borderRadius: 4 },
            { label: second, data: [ev.consensus[second] ?? 0, ...raters.map((r) => r[second] ?? 0)], backgroundColor: "#a78bfa", borderRadius: 4 },
          ],
        },
        options: { animation: false, scales: { y: { min: 0, max: 1 } } },
      });
    };
    evalRefresh.addEventListener("click", () => void loadEvaluation());
    p.append(
      h("div", { class: "row", style: { justifyContent: "space-between" } }, h("h2", { style: { margin: "0" } }, "Live"), updated),
      summary,
      h("div", { class: "card stack" }, h("h2", null, "Coverage"), h("p", { class: "small muted" }, "Images by number of submissions; green bars need no more work."), h("div", { class: "chart-box" }, histCanvas)),
      h("div", { class: "card stack" }, h("h2", null, "Coverage: images × users"), matrixNote, matrixBox, covControls.el),
      chartNote,
      h("div", { class: "grid grid-2" }, h("div", { class: "card" }, h("h2", null, "Per-user performance"), h("div", { class: "chart-box" }, perfCanvas)), h("div", { class: "card" }, h("h2", null, "Mean time per image"), h("div", { class: "chart-box" }, timeCanvas))),
      h("div", { class: "card stack" }, h("h2", null, "Annotators"), h("p", { class: "small muted" }, "Hover a column for what it means. Lowest quality first; flagged annotators are marked."), usersTable, usersControls.el, usersLegend),
      evalCard,
      h("div", { class: "card stack" }, h("h2", null, "Consensus"), h("p", { class: "small muted" }, "Consensus (teal: mask, outlines, lines or points) over the images of the coverage page on show; updated as submissions arrive."), thumbs),
    );
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let stats: TaskStats | null = null;
    const changeStanding = async (userId: string, action: ExclusionAction): Promise<void> => {
      try {
        task = await api.patchTask(id, exclusionPatch(task, userId, action));
        showUsers(usersPage);
        toast(`${label(userId)}: ${action === "exclude" ? "excluded" : action === "readmit" ? "re-admitted" : "follows the screening"}; the consensus is being recomputed`, "ok");
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
    };
    let users: TaskStats["users"] = []; // most submissions first
    let usersPage = 0;
    const names = new Map<string, string>();
    const statNames = new Map<string, string>();
    if (isAdmin()) void api.users().then((u) => u.forEach((x) => names.set(x.id, x.name || x.email))).catch(() => undefined);
    const label = (userId: string): string => statNames.get(userId) || names.get(userId) || userId.slice(0, 8);
    const thumbVersions = new Map<string, string>();
    void loadEvaluation();
    const tick = async (): Promise<void> => {
      try {
        const [s] = await Promise.all([api.stats(id), coverage.reload()]);
        if (stop) return;
        renderStats(s);
        renderCoverage();
        updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (e) {
        updated.textContent = e instanceof ApiError ? `error: ${e.message}` : "offline";
      }
      if (!stop) timer = setTimeout(() => void tick(), 4000);
    };
    const moveCoverage = async (go: () => Promise<unknown>): Promise<void> => {
      covControls.set({ label: "loading…", hasPrev: coverage.hasPrev, hasNext: coverage.hasNext, busy: true });
      try {
        await go();
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
      if (!stop) renderCoverage();
    };
    let histSig = "";
    const renderStats = (s: TaskStats): void => {
      stats = s;
      const prog = progressOf(s, task.replicates);
      imagesKpi.textContent = fmtInt(prog.images);
      submissionsKpi.textContent = String(s.submissions ?? 0);
      completeKpi.textContent = `${fmtInt(prog.complete)} / ${fmtInt(prog.images)}`;
      completeLabel.textContent = "images complete (no more work needed)";
      progress.set(prog.fraction, `${(prog.fraction * 100).toFixed(prog.fraction > 0 && prog.fraction < 0.01 ? 2 : 1)} %`);
      const bins = denseBins(coverageHistogram(s.coverage));
      const sig = JSON.stringify([bins, task.replicates]);
      if (sig !== histSig) {
        histSig = sig;
        chart(histCanvas, {
          type: "bar",
          data: {
            labels: bins.map(([n]) => String(n)),
            datasets: [{ label: "images", data: bins.map(([, c]) => c), backgroundColor: bins.map(([n]) => (n >= task.replicates ? "#16a34a" : "#2f6fed")), borderRadius: 4 }],
          },
          options: {
            animation: false,
            plugins: { legend: { display: false }, tooltip: { callbacks: { title: (items) => `${items[0]?.label ?? ""} submission(s)` } } },
            scales: { x: { title: { display: true, text: "submissions" } }, y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "images" } } },
          },
        });
      }
      users = [...(s.users ?? [])].sort(byQuality);
      statNames.clear();
      for (const u of users) if (u.name || u.email) statNames.set(u.user_id, u.name || u.email || "");
      showUsers(usersPage);
      const top = [...users].sort((a, b) => b.submissions - a.submissions || a.user_id.localeCompare(b.user_id)).slice(0, CHART_USERS);
      chartNote.textContent = users.length > CHART_USERS ? `Charts: the ${CHART_USERS} annotators with the most submissions, of ${users.length}.` : "";
      chart(perfCanvas, {
        type: "bar",
        data: {
          labels: top.map((u) => label(u.user_id)),
          datasets: [
            { label: "quality", data: top.map((u) => u.quality ?? 0), backgroundColor: "#16a34a", borderRadius: 4 },
            { label: "sensitivity", data: top.map((u) => u.sensitivity ?? 0), backgroundColor: "#22d3ee", borderRadius: 4 },
            { label: "specificity", data: top.map((u) => u.specificity ?? 0), backgroundColor: "#a78bfa", borderRadius: 4 },
          ],
        },
        options: { animation: false, scales: { y: { min: 0, max: 1 } } },
      });
      chart(timeCanvas, {
        type: "bar",
        data: { labels: top.map((u) => label(u.user_id)), datasets: [{ label: "seconds per image", data: top.map((u) => u.mean_seconds ?? 0), backgroundColor: "#2f6fed", borderRadius: 4 }] },
        options: { animation: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
      });
    };
    const standingCell = (u: TaskStats["users"][number]): HTMLElement => {
      const st = standing(u, task);
      const pill = st === "in" ? h("span", { class: "muted small" }, "fused") : h("span", { class: st === "admitted" ? "pill pill-ok" : "pill pill-warn", title: st === "admitted" ? ADMITTED_HELP : EXCLUDED_HELP, "data-testid": "standing" }, STANDING_LABEL[st]);
      const buttons = actionsFor(st).map((action) => {
        const b = h("button", { class: "btn btn-ghost", type: "button", "data-testid": `annotator-${action.replace("_", "-")}`, title: action === "exclude" ? EXCLUDED_HELP : ADMITTED_HELP }, ACTION_LABEL[action]);
        b.addEventListener("click", () => void changeStanding(u.user_id, action));
        return b;
      });
      return h("td", { "data-standing": st }, pill, ...buttons);
    };
    const showUsers = (page: number): void => {
      const cut = slicePage(users, page, USERS_PAGE);
      usersPage = cut.page;
      usersControls.set({ label: windowLabel(cut.offset, cut.rows.length, users.length), hasPrev: cut.hasPrev, hasNext: cut.hasNext });
      usersTable.replaceChildren(
        h(
          "table",
          null,
          h(
            "thead",
            null,
            h(
              "tr",
              null,
              h("th", null, "User"),
              h("th", null, "Submissions"),
              h("th", { title: `${QUALITY_HELP} Sorted lowest first.` }, "Quality ▲"),
              h("th", { title: SENSITIVITY_HELP }, "Sensitivity"),
              h("th", { title: SPECIFICITY_HELP }, "Specificity"),
              h("th", null, "Mean time"),
              h("th", { title: `${EXCLUDED_HELP} ${ADMITTED_HELP}` }, "Consensus"),
            ),
          ),
          h(
            "tbody",
            null,
            cut.rows.map((u) =>
              h(
                "tr",
                { class: u.flagged ? "flagged" : "", "data-testid": "annotator-row", "data-flagged": u.flagged ? "true" : "false", "data-user": u.user_id },
                h("td", { title: u.user_id }, label(u.user_id), u.flagged ? h("span", { class: "pill pill-danger", title: FLAGGED_HELP, "data-testid": "flagged" }, " flagged") : null),
                h("td", null, String(u.submissions)),
                h("td", { title: `over ${u.quality_images ?? 0} image(s)` }, fmtPct(u.quality)),
                h("td", null, fmtPct(u.sensitivity)),
                h("td", null, fmtPct(u.specificity)),
                h("td", null, u.mean_seconds != null ? `${fmtNum(u.mean_seconds, 1)} s` : "—"),
                standingCell(u),
              ),
            ),
          ),
        ),
      );
    };
    let matrixSig = "";
    const renderCoverage = (): void => {
      if (!coverage.page) return; // the first page of a new page size is still on its way
      const rows: CoverageRow[] = coverage.page.items;
      covControls.set({ label: windowLabel(coverage.offset, rows.length, stats?.images), hasPrev: coverage.hasPrev, hasNext: coverage.hasNext });
      updateThumbs(rows);
      const { columns, hidden } = matrixColumns(rows, users.map((u) => u.user_id), MAX_COLUMNS);
      const sig = JSON.stringify([coverage.page.url, rows, columns, columns.map(label)]);
      if (sig === matrixSig) return; // a poll that changed nothing leaves the DOM alone
      matrixSig = sig;
      matrixNote.textContent = hidden
        ? `Columns: the ${columns.length} annotators with the most submissions among the ${columns.length + hidden} who worked on these images.`
        : "";
      if (!rows.length) {
        matrixBox.replaceChildren(h("p", { class: "muted" }, "No image yet."));
        return;
      }
      matrixBox.replaceChildren(
        h(
          "table",
          { class: "matrix" },
          h(
            "thead",
            null,
            h("tr", null, h("th", null, "image"), h("th", { class: "num", title: "accepted submissions" }, "subs"), h("th", { class: "num", title: "leases held now" }, "leased"), h("th", null, ""), columns.map((u) => h("th", { class: "col", title: label(u) }, label(u)))),
          ),
          h(
            "tbody",
            null,
            rows.map((r) => {
              const by = new Set(r.users);
              return h(
                "tr",
                { dataset: { image: r.image_id } },
                h("th", { class: "name", title: r.name }, r.name),
                h("td", { class: "cov", dataset: { coverage: String(r.submissions) } }, String(r.submissions)),
                h("td", { class: "cov" }, String(leaseCount(r))),
                h("td", null, r.complete ? h("span", { class: "pill pill-ok", title: "needs no more work" }, "✓") : ""),
                columns.map((u) => {
                  const on = by.has(u);
                  return h("td", null, h("div", { class: `cell${on ? " on" : ""}`, title: `${label(u)} × ${r.name}: ${on ? "submitted" : "—"}`, dataset: { user: u, image: r.image_id, on: on ? "1" : "0" } }));
                }),
              );
            }),
          ),
        ),
      );
    };
    // consensus thumbnails: the images of the coverage page on show that have submissions, each
    // refreshed when its count changes
    const updateThumbs = (rows: CoverageRow[]): void => {
      const want = rows.filter((r) => r.submissions > 0).slice(0, 24);
      const keep = new Set(want.map((r) => r.image_id));
      for (const [imageId, el] of thumbEls)
        if (!keep.has(imageId)) {
          el.remove();
          thumbEls.delete(imageId);
          thumbVersions.delete(imageId);
        }
      for (const r of want) {
        const ver = String(r.submissions);
        if (thumbVersions.get(r.image_id) === ver) continue;
        thumbVersions.set(r.image_id, ver);
        void renderThumb({ id: r.image_id, name: r.name, width: 0, height: 0 }, ver); // 0: the rendition's own size, the image's pixel grid
      }
    };
    const thumbEls = new Map<string, HTMLElement>();
    const renderThumb = async (img: { id: string; name?: string; width: number; height: number }, ver: string): Promise<void> => {
      let el = thumbEls.get(img.id);
      const canvas = h("canvas");
      const cap = h("div", { class: "cap" }, h("span", { title: img.name ?? img.id }, img.name ?? img.id), h("span", { class: "muted" }, `${ver} sub.`));
      const next = h("div", { class: "thumb", dataset: { image: img.id } }, canvas, cap);
      if (el) el.replaceWith(next);
      else thumbs.append(next);
      el = next;
      thumbEls.set(img.id, el);
      try {
        const base = await bitmap(`/images/${enc(img.id)}/file`);
        const W = 300;
        const s = W / (img.width || base.width); // consensus coordinates are original-image pixels
        canvas.width = W;
        canvas.height = Math.max(1, Math.round((img.height || base.height) * s));
        const ctx = canvas.getContext("2d")!;
        ctx.drawImage(base, 0, 0, canvas.width, canvas.height);
        let c: Record<string, unknown> | null = null;
        try {
          c = await api.consensus(img.id);
          cap.lastElementChild!.textContent = `v${String(c.version ?? "?")} · ${String(c.method ?? "")}`;
        } catch {
          cap.lastElementChild!.textContent = "consensus pending";
          thumbVersions.delete(img.id); // try again on the next poll
          return;
        }
        if (c.mask_url) {
          try {
            const mask = await bitmap(`/images/${enc(img.id)}/consensus/mask.png`);
            const off = document.createElement("canvas");
            off.width = canvas.width;
            off.height = canvas.height;
            const octx = off.getContext("2d")!;
            octx.drawImage(mask, 0, 0, off.width, off.height);
            const d = octx.getImageData(0, 0, off.width, off.height);
            for (let k = 0; k < d.data.length; k += 4) {
              const on = d.data[k]! > 127;
              d.data[k] = 20;
              d.data[k + 1] = 220;
              d.data[k + 2] = 200;
              d.data[k + 3] = on ? 120 : 0;
            }
            octx.putImageData(d, 0, 0);
            ctx.drawImage(off, 0, 0);
          } catch {
            thumbVersions.delete(img.id);
            return;
          }
        }
        // object consensus (points, lines, object polygons) drawn as vectors
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#14dcc8";
        const path = (pts: unknown, closed: boolean): void => {
          if (!Array.isArray(pts) || pts.length < 2) return;
          ctx.beginPath();
          (pts as Array<[number, number]>).forEach(([x, y], k) => (k ? ctx.lineTo(x * s, y * s) : ctx.moveTo(x * s, y * s)));
          if (closed) ctx.closePath();
          ctx.stroke();
        };
        for (const l of (c.lines as Array<{ points: unknown }> | undefined) ?? []) path(l.points, false);
        for (const g of (c.polygons as Array<{ points: unknown }> | undefined) ?? []) path(g.points, true);
        for (const q of (c.points as Array<{ x: number; y: number }> | undefined) ?? []) {
          const x = q.x * s;
          const y = q.y * s;
          ctx.beginPath();
          ctx.moveTo(x - 6, y);
          ctx.lineTo(x + 6, y);
          ctx.moveTo(x, y - 6);
          ctx.lineTo(x, y + 6);
          ctx.stroke();
        }
        next.dataset.consensus = "1";
      } catch {
        cap.lastElementChild!.textContent = "image unavailable";
      }
    };
    void tick();
    return () => {
      stop = true;
      if (timer) clearTimeout(timer);
    };
  }

  // -- crowds: study links, their ledger, invitations --
  function crowdsTab(p: HTMLElement): void {
    const copyField = (value: string, testid: string): HTMLElement => {
      const field = h("input", { type: "text", readonly: true, value, "aria-label": "Address to copy", "data-testid": testid, style: { flex: "1", minWidth: "16rem" } });
      const copy = h("button", { class: "btn", type: "button" }, "Copy");
      copy.addEventListener("click", async () => {
        field.select();
        try {
          await navigator.clipboard.writeText(value);
          toast("Copied", "ok", 1200);
        } catch {
          toast("Press Ctrl+C to copy the selected address", "info");
        }
      });
      return h("div", { class: "row" }, field, copy);
    };
    const when = (iso: string | null | undefined): string => (iso ? new Date(iso).toLocaleString() : "—");

    // study links
    const kind = h("select", { "aria-label": "Panel", "data-testid": "link-kind", style: { width: "16rem" } }, h("option", { value: "prolific" }, "Prolific"), h("option", { value: "mturk" }, "MTurk"), h("option", { value: "generic" }, "Other panel (?worker=ID)"));
    const quota = h("input", { type: "number", min: "1", max: "10000", value: "10", "aria-label": "Images per worker", "data-testid": "link-quota", style: { width: "7rem" } });
    const completionUrl = h("input", { type: "text", placeholder: "completion URL (optional), e.g. https://app.prolific.com/submissions/complete?cc=CODE", "aria-label": "Completion URL", "data-testid": "link-completion-url", style: { flex: "1", minWidth: "16rem" } });
    const completionCode = h("input", { type: "text", placeholder: "completion code (optional)", "aria-label": "Completion code", "data-testid": "link-completion-code", style: { width: "13rem" } });
    const create = h("button", { class: "btn btn-primary", type: "button", "data-testid": "create-link" }, "Create study link");
    const linkList = h("div", { class: "stack", "data-testid": "links" });
    const renderLinks = (links: StudyLink[]): void => {
      linkList.replaceChildren(
        ...(links.length
          ? links.map((l) => {
              const revoke = h("button", { class: "btn btn-ghost", type: "button", "data-testid": "revoke-link", disabled: !!l.revoked_at }, l.revoked_at ? "Revoked" : "Revoke");
              revoke.addEventListener("click", async () => {
                if (!confirm("Revoke this link? It opens no more, and its workers get no more images.")) return;
                try {
                  await api.revokeLink(id, l.id);
                  toast("Link revoked", "ok");
                  await loadLinks();
                } catch (e) {
                  toast(e instanceof Error ? e.message : String(e), "error");
                }
              });
              const where = l.kind === "prolific" ? "Study URL for Prolific (with its placeholders):" : l.kind === "mturk" ? "ExternalURL of the HIT's ExternalQuestion:" : "Link for the panel (append the worker's id):";
              return h(
                "div",
                { class: "card stack", dataset: { link: l.id }, "data-testid": "link-row" },
                h(
                  "div",
                  { class: "row" },
                  h("span", { class: "pill pill-primary" }, l.kind),
                  h("span", { class: "pill" }, `${l.quota} images each`),
                  h("span", { class: l.revoked_at ? "pill pill-warn" : "pill pill-ok" }, l.revoked_at ? `revoked ${when(l.revoked_at)}` : "open"),
                  h("span", { class: "small muted" }, `created ${when(l.created_at)}`),
                  h("span", { class: "spacer" }),
                  revoke,
                ),
                h("div", { class: "small muted" }, where),
                copyField(l.panel_url, "link-panel-url"),
                h("div", { class: "small" }, "Completion code: ", h("code", { "data-testid": "link-code" }, l.completion_code), l.completion_url ? h("span", { class: "muted" }, ` — then to ${l.completion_url}`) : null),
              );
            })
          : [h("p", { class: "muted" }, "No study link yet.")]),
      );
    };
    const loadLinks = async (): Promise<void> => renderLinks(await api.links(id));
    create.addEventListener("click", async () => {
      const body: { kind: LinkKind; quota: number; completion_url?: string; completion_code?: string } = { kind: kind.value as LinkKind, quota: Number(quota.value) };
      if (completionUrl.value.trim()) body.completion_url = completionUrl.value.trim();
      if (completionCode.value.trim()) body.completion_code = completionCode.value.trim();
      try {
        await api.createLink(id, body);
        toast("Study link created", "ok");
        await loadLinks();
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
    });

    // the ledger
    const ledgerBody = h("tbody");
    const columns = ["External id", "Panel", "Images", "Seconds", "First visit", "Last activity", "Completed"];
    const ledgerTable = h("table", { "data-testid": "ledger" }, h("thead", null, h("tr", null, ...columns.map((c) => h("th", null, c)))), ledgerBody);
    const reload = h("button", { class: "btn", type: "button", "data-testid": "reload-ledger" }, "Reload");
    const download = h("button", { class: "btn", type: "button", "data-testid": "download-ledger" }, "Download CSV");
    let ledgerText = "";
    const loadLedger = async (): Promise<void> => {
      ledgerText = await api.ledgerCsv(id);
      const rows = csvRecords(ledgerText);
      ledgerBody.replaceChildren(
        ...(rows.length
          ? rows.map((r) =>
              h(
                "tr",
                { dataset: { worker: r.external_id ?? "" }, "data-testid": "ledger-row" },
                h("td", null, r.external_id ?? ""),
                h("td", null, r.kind ?? ""),
                h("td", { "data-testid": "ledger-images" }, r.images ?? ""),
                h("td", null, r.seconds ?? ""),
                h("td", null, when(r.first_at)),
                h("td", null, when(r.last_at)),
                h("td", null, r.completed === "true" ? "✓" : ""),
              ),
            )
          : [h("tr", null, h("td", { colSpan: columns.length, class: "muted" }, "No worker has opened a link yet."))]),
      );
    };
    reload.addEventListener("click", () => void loadLedger().catch((e) => toast(String(e), "error")));
    download.addEventListener("click", async () => {
      if (!ledgerText) await loadLedger();
      const url = URL.createObjectURL(new Blob([ledgerText], { type: "text/csv" }));
      const a = h("a", { href: url, download: `ledger-${task.title.replace(/[^\w.-]+/g, "_")}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    });

    // invitations
    const email = h("input", { type: "email", placeholder: "email (optional: anyone with the link)", "aria-label": "Invitee's email", "data-testid": "invitation-email", style: { flex: "1", minWidth: "14rem" } });
    const hours = h("input", { type: "number", min: "1", value: "168", "aria-label": "Valid for (hours)", "data-testid": "invitation-hours", style: { width: "7rem" } });
    const invite = h("button", { class: "btn btn-primary", type: "button", "data-testid": "create-invitation" }, "Create invitation");
    const invitationList = h("div", { class: "stack", "data-testid": "invitations" });
    const renderInvitations = (invitations: Invitation[]): void => {
      const now = Date.now();
      invitationList.replaceChildren(
        ...(invitations.length
          ? invitations.map((i) => {
              const state = i.revoked_at ? "revoked" : Date.parse(i.expires_at) <= now ? "expired" : "open";
              const revoke = h("button", { class: "btn btn-ghost", type: "button", "data-testid": "revoke-invitation", disabled: state !== "open" }, "Revoke");
              revoke.addEventListener("click", async () => {
                try {
                  await api.revokeInvitation(id, i.id);
                  toast("Invitation revoked", "ok");
                  await loadInvitations();
                } catch (e) {
                  toast(e instanceof Error ? e.message : String(e), "error");
                }
              });
              return h(
                "div",
                { class: "card stack", dataset: { invitation: i.id }, "data-testid": "invitation-row" },
                h(
                  "div",
                  { class: "row" },
                  h("span", { class: state === "open" ? "pill pill-ok" : "pill pill-warn" }, state),
                  h("span", null, i.email ?? "anyone with the link"),
                  h("span", { class: "small muted" }, `until ${when(i.expires_at)} · accepted by ${i.accepted_by.length}`),
                  h("span", { class: "spacer" }),
                  revoke,
                ),
                copyField(i.url, "invitation-url"),
              );
            })
          : [h("p", { class: "muted" }, "No invitation yet.")]),
      );
    };
    const loadInvitations = async (): Promise<void> => renderInvitations(await api.invitations(id));
    invite.addEventListener("click", async () => {
      const body: { email?: string; expires_in_hours: number } = { expires_in_hours: Number(hours.value) };
      if (email.value.trim()) body.email = email.value.trim();
      try {
        await api.createInvitation(id, body);
        email.value = "";
        toast("Invitation created", "ok");
        await loadInvitations();
      } catch (e) {
        toast(e instanceof Error ? e.message : String(e), "error");
      }
    });

    p.append(
      h(
        "div",
        { class: "card stack" },
        h("h2", null, "Study links"),
        h("p", { class: "muted small" }, "A link for an external panel (Prolific, MTurk or another): a worker who opens it is signed in anonymously, annotates up to the quota, then sees the completion code (or is sent to the completion URL). The task's qualification still applies."),
        h("div", { class: "row" }, kind, quota, completionCode),
        h("div", { class: "row" }, completionUrl, create),
        linkList,
      ),
      h(
        "div",
        { class: "card stack" },
        h("div", { class: "row" }, h("h2", { style: { margin: "0" } }, "Ledger"), h("span", { class: "spacer" }), reload, download),
        h("p", { class: "muted small" }, "Every worker of every link: images, time spent, first and last activity — for paying the panel."),
        h("div", { class: "table-wrap" }, ledgerTable),
      ),
      h(
        "div",
        { class: "card stack" },
        h("h2", null, "Invitations"),
        h("p", { class: "muted small" }, "A link that makes whoever opens it signed in (or only the account with this email) a member of the task."),
        h("div", { class: "row" }, email, hours, h("span", { class: "small muted" }, "hours"), invite),
        invitationList,
      ),
    );
    void loadLinks().catch((e) => toast(String(e), "error"));
    void loadLedger().catch((e) => toast(String(e), "error"));
    void loadInvitations().catch((e) => toast(String(e), "error"));
  }

  // -- export --
  function exportTab(p: HTMLElement): () => void {
    const start = h("button", { class: "btn btn-primary", type: "button", "data-testid": "start-export" }, "Create export");
    const bar = progressBar(0, "");
    bar.el.classList.add("labelled");
    bar.el.hidden = true;
    const statusEl = h("p", { class: "muted", "data-testid": "export-status" });
    const link = h("div");
    p.append(
      h(
        "div",
        { class: "card stack" },
        h("h2", null, "Export"),
        h("p", { class: "muted" }, "A ZIP with the masks, point sets, consensus (STAPLE) results, per-user performance and every table of the task."),
        start,
        bar.el,
        statusEl,
        link,
      ),
    );
    let stop = false;
    start.addEventListener("click", async () => {
      start.disabled = true;
      bar.el.hidden = false;
      bar.set(0, "Queued");
      link.replaceChildren();
      try {
        const { id: exportId } = await api.startExport(id);
        for (;;) {
          if (stop) return;
          const s = await api.exportStatus(exportId);
          const prog = s.progress > 1 ? s.progress / 100 : s.progress;
          bar.set(prog, `${Math.round(prog * 100)} %`);
          statusEl.textContent = s.status;
          if (s.status === "done") break;
          if (s.status === "failed") throw new Error(s.error ?? "export failed");
          await new Promise((r) => setTimeout(r, 700));
        }
        bar.set(1, "100 %");
        const dl = h("button", { class: "btn", type: "button", "data-testid": "download-export" }, "Download ZIP");
        dl.addEventListener("click", async () => {
          const b = await blob(`/exports/${enc(exportId)}/download`);
          const url = URL.createObjectURL(b);
          const a = h("a", { href: url, download: `crowdseg-${task.title.replace(/[^\w.-]+/g, "_")}-${exportId.slice(0, 8)}.zip` });
          document.body.append(a);
          a.click();
          a.remove();
          setTimeout(() => URL.revokeObjectURL(url), 10000);
        });
        link.append(dl);
        toast("Export ready", "ok");
      } catch (e) {
        statusEl.textContent = e instanceof Error ? e.message : String(e);
      } finally {
        start.disabled = false;
      }
    });
    return () => {
      stop = true;
    };
  }

  const initial = (new URLSearchParams(location.search).get("tab") ?? "live") as Tab;
  show(tabs.includes(initial) ? initial : "live");
  void authHeaders;
  void API;
  return () => cleanups.forEach((f) => f());
}
