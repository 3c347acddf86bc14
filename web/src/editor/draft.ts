/**
 * Work on an image kept on this device until it is submitted: per user, task and image, in
 * localStorage. Leaving an image in the middle of an outline (the dashboard link, Back, Next, a
 * reload) submits nothing: the draft waits for the user to finish or discard the outline when they
 * come back (issue 11: the unfinished shape was submitted behind their back).
 */
import type { Pt } from "../geometry/types";
import type { StorageLike } from "../saver";
import type { Shape } from "./model";

export interface Draft {
  /** The submission's client id, kept so a retry after a reload is the same submission. */
  id: string;
  started_at: string;
  shapes: Shape[];
  /** The outline being drawn when the user left (not yet a shape). */
  open?: Pt[];
  visible_ms: number;
}

export function draftKey(user: string, task: string, image: string): string {
  return `crowdseg.draft.${user}.${task}.${image}`;
}

export function loadDraft(storage: StorageLike, key: string): Draft | null {
  try {
    const v = storage.getItem(key);
    const d = v ? (JSON.parse(v) as Draft) : null;
    return d && typeof d.id === "string" && Array.isArray(d.shapes) ? d : null;
  } catch {
    return null;
  }
}

export function saveDraft(storage: StorageLike, key: string, draft: Draft): void {
  try {
    storage.setItem(key, JSON.stringify(draft));
  } catch {
    /* storage full or off: the work stays on the page */
  }
}

/** What leaving an image does with the work on it: an open outline keeps everything as a draft and
 * submits nothing; finished shapes alone are saved (the paper's auto-save); nothing drawn, nothing. */
export function onLeaving(state: { shapes: number; openVertices: number }): "keep-draft" | "submit" | "nothing" {
  if (state.openVertices > 0) return "keep-draft";
  return state.shapes > 0 ? "submit" : "nothing";
}

/** Whether a draft holds something to come back to. */
export function hasWork(d: Draft | null): boolean {
  return !!d && (d.shapes.length > 0 || (d.open?.length ?? 0) > 0);
}
