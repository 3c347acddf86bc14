/** /study/:id — a study link opened from a panel (Prolific, MTurk, any other): signs the worker in as the
 * link's anonymous annotator and sends them to the task; /invite/:id — accepts an invitation. */
import { api, ApiError, setToken, type LinkProgress } from "../api";
import { h } from "../dom";
import { markdownInto } from "../markdown";
import { navigate } from "../router";
import { refresh } from "../session";

/** The query parameters panels add to the link, passed to the server as they came. */
export const PANEL_PARAMETERS = ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId", "turkSubmitTo", "worker"];
const MTURK_KEY = "crowdseg.mturk";

interface MturkAssignment {
  assignmentId: string;
  submitTo: string;
}

function panelParameters(search: string): Record<string, string> {
  const query = new URLSearchParams(search);
  const out: Record<string, string> = {};
  for (const name of PANEL_PARAMETERS) {
    const value = query.get(name);
    if (value !== null) out[name] = value;
  }
  return out;
}

function card(root: HTMLElement, testid: string, ...children: (Node | string | null)[]): HTMLElement {
  const box = h("div", { class: "card stack", "data-testid": testid }, ...children);
  root.replaceChildren(h("div", { class: "page narrow" }, box));
  return box;
}

export async function studyPage(root: HTMLElement, params: Record<string, string>): Promise<void> {
  const linkId = params.id!;
  card(root, "study-opening", h("p", { class: "muted" }, "Opening the study…"));
  const sent = panelParameters(location.search);
  let session;
  try {
    session = await api.openLink(linkId, sent);
  } catch (e) {
    const detail = e instanceof ApiError ? e.detail : String(e);
    const title = e instanceof ApiError && e.status === 410 ? "This study is closed" : "This study link does not work";
    card(root, "study-error", h("h2", null, title), h("p", null, detail));
    return;
  }
  if (session.preview) {
    const info = await api.linkInfo(linkId);
    const body = h("div");
    markdownInto(body, info.task.instructions || "_No instructions._");
    card(
      root,
      "study-preview",
      h("h1", null, info.task.title),
      h("p", { class: "pill pill-primary" }, `${info.quota} image${info.quota === 1 ? "" : "s"} to annotate`),
      body,
      h("p", { class: "muted" }, "This is a preview: accept the HIT to start."),
    );
    return;
  }
  setToken(session.access_token);
  if (sent.assignmentId && session.mturk_submit_to)
    sessionStorage.setItem(MTURK_KEY, JSON.stringify({ assignmentId: sent.assignmentId, submitTo: session.mturk_submit_to }));
  await refresh();
  if (session.done) {
    completionScreen(root, session);
    return;
  }
  navigate(`/tasks/${encodeURIComponent(session.task_id)}`, true);
}

/** The end of a study link's work: the completion code, then the panel (completion URL or MTurk's form). */
export function completionScreen(root: HTMLElement, progress: LinkProgress): void {
  document.body.dataset.phase = "completed";
  const code = progress.completion_code ?? "";
  const box = card(
    root,
    "study-complete",
    h("h2", null, "Thank you — you are done"),
    h("p", null, `You annotated ${progress.images} of ${progress.quota} images. Your completion code:`),
    h("p", { class: "completion-code", "data-testid": "completion-code" }, code),
  );
  let mturk: MturkAssignment | null = null;
  try {
    mturk = JSON.parse(sessionStorage.getItem(MTURK_KEY) ?? "null") as MturkAssignment | null;
  } catch {
    mturk = null;
  }
  if (mturk) {
    // MTurk's ExternalQuestion ends with a form posted to the page MTurk named (turkSubmitTo).
    const form = h(
      "form",
      { method: "POST", action: `${mturk.submitTo.replace(/\/$/, "")}/mturk/externalSubmit` },
      h("input", { type: "hidden", name: "assignmentId", value: mturk.assignmentId }),
      h("input", { type: "hidden", name: "completion_code", value: code }),
      h("button", { class: "btn btn-primary", type: "submit", "data-testid": "mturk-submit" }, "Submit the HIT"),
    );
    box.append(form);
  } else if (progress.completion_url) {
    const url = progress.completion_url;
    box.append(
      h("p", { class: "muted" }, "Taking you back to the study…"),
      h("a", { class: "btn btn-primary", href: url, rel: "noreferrer", "data-testid": "completion-link" }, "Back to the study"),
    );
    setTimeout(() => location.assign(url), 2500);
  } else box.append(h("p", { class: "muted" }, "Enter this code where the study asks for it; you may close this page."));
}

export async function invitePage(root: HTMLElement, params: Record<string, string>): Promise<void> {
  card(root, "invite-opening", h("p", { class: "muted" }, "Accepting the invitation…"));
  try {
    const joined = await api.acceptInvitation(params.id!);
    navigate(`/tasks/${encodeURIComponent(joined.task_id)}/instructions`, true);
  } catch (e) {
    const detail = e instanceof ApiError ? e.detail : String(e);
    card(root, "invite-error", h("h2", null, "This invitation does not work"), h("p", null, detail), h("a", { class: "btn", href: "/" }, "Dashboard"));
  }
}
