import type { UserStat } from "./api";

/** What each number of the annotators table means (tooltips in the console, help on the dashboard). */
export const QUALITY_HELP =
  "Quality, 0–100 %: per image, the annotator's agreement with the consensus of the other annotators (the annotator left out) — Dice of the masks, or F1 of the points and lines matched within the task's radius; on images with an expert reference, agreement with the reference instead. The mean over the images counted (hover a value).";
export const SENSITIVITY_HELP = "Sensitivity: the share of the consensus foreground (pixels, or objects) the annotator marked too.";
export const SPECIFICITY_HELP = "Specificity: the share of the consensus background the annotator left unmarked, over the whole image.";
export const FLAGGED_HELP = "Flagged: quality below the task's median minus 3 MAD (at least 5 points), with at least 5 images behind it.";

/** Lowest quality first (so flagged annotators lead), annotators without a quality last. */
export function byQuality(a: UserStat, b: UserStat): number {
  const qa = a.quality ?? Infinity;
  const qb = b.quality ?? Infinity;
  if (qa !== qb) return qa < qb ? -1 : 1;
  return b.submissions - a.submissions || a.user_id.localeCompare(b.user_id);
}

export const EVALUATION_HELP_MASKS =
  "Images with an expert reference: the consensus mask against it (Dice and Jaccard overlap, MHD the modified Hausdorff distance between the outlines, pixel error the share of the image's pixels that differ) and every annotator's mask (Dice, Jaccard, sensitivity, specificity), means over the images.";
export const EVALUATION_HELP_OBJECTS =
  "Images with an expert reference: the consensus against it and every annotator's, objects matched one to one within the task's radius — precision (share of the marks that match), recall (share of the reference found) and RMSE of the matched distances, pooled over the images.";
