/**
 * Gold in the stream: what the workbench shows after a gold answer (an image the task master has an
 * expert reference for). Pure, so vitest can load it (it must not import api.ts).
 */
import type { ShapeJson } from "./api";

export interface GoldFeedback {
  metric: string;
  score: number;
  /** the expert's shapes; empty when the task does not show them (`gold_feedback` off) */
  reference: ShapeJson[];
}

/** The gold part of a submit answer, or null for an ordinary submission (or an unreadable answer). */
export function goldFeedback(answer: unknown): GoldFeedback | null {
  if (!answer || typeof answer !== "object") return null;
  const { gold, reference } = answer as { gold?: unknown; reference?: unknown };
  if (!gold || typeof gold !== "object") return null;
  const { metric, score } = gold as { metric?: unknown; score?: unknown };
  if (typeof metric !== "string" || typeof score !== "number" || !Number.isFinite(score)) return null;
  return { metric, score, reference: Array.isArray(reference) ? (reference as ShapeJson[]) : [] };
}

const NAMES: Record<string, string> = { dice: "Dice", jaccard: "Jaccard", mhd: "mean distance" };

/** One line for the banner: the score, and how to read it. */
export function goldMessage(feedback: GoldFeedback): string {
  const name = NAMES[feedback.metric] ?? feedback.metric;
  const value = feedback.metric === "mhd" ? `${feedback.score.toFixed(1)} px` : feedback.score.toFixed(3);
  const better = feedback.metric === "mhd" ? "lower is closer" : "1 is a perfect match";
  const shown = feedback.reference.length ? " Dashed yellow: the expert's outline." : "";
  return `Check image: an expert outlined this one. Your ${name} against it: ${value} (${better}).${shown}`;
}
