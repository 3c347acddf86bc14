import type { Task, UserStat } from "./api";

/** What the annotators table's marks mean (tooltips and the legend under the table). */
export const EXCLUDED_HELP =
  "Excluded: left out of every consensus of the task — by the screening (task-wide quality below its minimum, with at least 5 images behind it) or by hand. Their submissions stay stored, scored and exported, marked excluded.";
export const ADMITTED_HELP = "Re-admitted by hand: in every consensus of the task, whatever the screening says.";
export const SCREENING_HELP =
  "Annotators whose quality is below this minimum, with at least 5 images behind it, are left out of every consensus of the task, which is then recomputed. Their submissions are kept and exported, marked excluded. Leave it off to fuse everyone.";

/** Where an annotator stands: left out by hand, by the screening, kept in by hand, or in as usual. */
export type Standing = "excluded_by_hand" | "screened_out" | "admitted" | "in";

export function standing(user: Pick<UserStat, "user_id" | "excluded">, task: Pick<Task, "excluded_users" | "admitted_users">): Standing {
  if ((task.excluded_users ?? []).includes(user.user_id)) return "excluded_by_hand";
  if ((task.admitted_users ?? []).includes(user.user_id)) return "admitted";
  return user.excluded ? "screened_out" : "in";
}

export const STANDING_LABEL: Record<Standing, string> = {
  excluded_by_hand: "excluded by hand",
  screened_out: "excluded by screening",
  admitted: "re-admitted by hand",
  in: "",
};

export type ExclusionAction = "exclude" | "readmit" | "follow_screening";

/** The actions a row offers for an annotator's standing. */
export function actionsFor(s: Standing): ExclusionAction[] {
  if (s === "excluded_by_hand" || s === "screened_out") return ["readmit"];
  if (s === "admitted") return ["exclude", "follow_screening"];
  return ["exclude"];
}

export const ACTION_LABEL: Record<ExclusionAction, string> = { exclude: "Exclude", readmit: "Re-admit", follow_screening: "Follow screening" };

/** The PATCH body of an action: the whole list it changes (the server drops the id from the other list). */
export function exclusionPatch(task: Pick<Task, "excluded_users" | "admitted_users">, userId: string, action: ExclusionAction): Partial<Task> {
  const excluded = task.excluded_users ?? [];
  const admitted = task.admitted_users ?? [];
  if (action === "exclude") return { excluded_users: excluded.includes(userId) ? excluded : [...excluded, userId] };
  if (action === "readmit") return { admitted_users: admitted.includes(userId) ? admitted : [...admitted, userId] };
  return { admitted_users: admitted.filter((u) => u !== userId) };
}

/** The screening field of a PATCH from the console's inputs: off is null; the minimum is a share in 0–1. */
export function screeningPatch(on: boolean, minimum: string): { screening: { min_quality: number } | null } {
  if (!on) return { screening: null };
  const q = Number(minimum);
  if (minimum.trim() === "" || !Number.isFinite(q) || q < 0 || q > 1) throw new Error("The minimum quality is a number from 0 to 1.");
  return { screening: { min_quality: q } };
}
