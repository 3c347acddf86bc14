import { h } from "../dom";

/** GitHub-style heat-map of contributions per day over the last `weeks` weeks. */
export function calendarHeatmap(perDay: Record<string, number>, weeks = 26): HTMLElement {
  const today = new Date();
  today.setUTCHours(0, 0, 0, 0);
  const start = new Date(today);
  start.setUTCDate(start.getUTCDate() - (weeks * 7 - 1) - today.getUTCDay());
  const max = Math.max(1, ...Object.values(perDay));
  const cells: HTMLElement[] = [];
  let total = 0;
  for (let d = new Date(start); d <= today; d.setUTCDate(d.getUTCDate() + 1)) {
    const key = d.toISOString().slice(0, 10);
    const n = perDay[key] ?? 0;
    total += n;
    const level = n === 0 ? 0 : Math.min(4, Math.ceil((n / max) * 4));
    cells.push(h("div", { class: `day${level ? ` l${level}` : ""}`, title: `${key}: ${n} contribution${n === 1 ? "" : "s"}`, dataset: { date: key, count: String(n) } }));
  }
  const legend = h(
    "div",
    { class: "legend" },
    "Less",
    ...[0, 1, 2, 3, 4].map((l) => h("span", { class: `day${l ? ` l${l}` : ""}`, style: l ? {} : { background: "var(--surface-2)" } })),
    "More",
  );
  legend.querySelectorAll(".day").forEach((el) => el.classList.add("calendar-legend-cell"));
  const cal = h("div", { class: "calendar", role: "img", "aria-label": `${total} contributions in the last ${weeks} weeks`, "data-testid": "calendar" }, cells);
  const wrap = h("div", { class: "stack" }, cal, h("div", { class: "row", style: { justifyContent: "space-between" } }, h("span", { class: "small muted" }, `${total} contributions in the last ${weeks} weeks`), legend));
  // legend cells reuse the calendar colours
  legend.classList.add("calendar");
  legend.style.display = "flex";
  return wrap;
}
