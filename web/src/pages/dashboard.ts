/** Annotator dashboard: tasks with progress, performance, level/XP, activity calendar. */
import { api, type MeStats, type Task } from "../api";
import { fmtPct, h, progressBar } from "../dom";
import { me } from "../session";
import { QUALITY_HELP, SENSITIVITY_HELP, SPECIFICITY_HELP } from "../quality";
import { calendarHeatmap } from "../ui/calendar";
import { chart } from "../ui/charts";

function num(o: Record<string, unknown> | undefined, ...keys: string[]): number | null {
  if (!o) return null;
  for (const k of keys) {
    const v = o[k];
    if (typeof v === "number" && Number.isFinite(v)) return v;
  }
  return null;
}

/** Levels: XP needed to reach level L is 100·(L−1)·L/2 unless the server says otherwise. */
export function levelProgress(stats: Record<string, unknown>, level: number, xp: number): { into: number; span: number } {
  const next = num(stats, "next_level_xp", "xp_next_level", "xp_for_next_level");
  const cur = num(stats, "level_xp", "xp_level_start", "current_level_xp");
  if (next !== null) {
    const base = cur ?? 0;
    return { into: Math.max(0, xp - base), span: Math.max(1, next - base) };
  }
  const base = (100 * (level - 1) * level) / 2;
  const top = (100 * level * (level + 1)) / 2;
  if (xp >= base && xp <= top) return { into: xp - base, span: top - base };
  return { into: xp % 100, span: 100 };
}

export function taskProgress(task: Task, perTask: Record<string, unknown> | undefined): { done: number; total: number | null } {
  const done = num(perTask, "submissions", "done", "count") ?? num(task as Record<string, unknown>, "my_submissions", "user_submissions") ?? 0;
  const total =
    num(perTask, "images", "total", "available", "image_count") ??
    num(task as Record<string, unknown>, "images", "image_count", "images_count", "n_images", "total_images");
  return { done, total };
}

export async function dashboardPage(root: HTMLElement): Promise<() => void> {
  const user = me()!;
  const page = h("div", { class: "page stack" });
  root.append(page);
  const [tasks, stats] = await Promise.all([api.tasks().catch(() => [] as Task[]), api.meStats().catch(() => null as MeStats | null)]);
  const st = (stats ?? { submissions: 0, per_task: [], per_day: {} }) as MeStats;
  const level = st.level ?? user.level ?? 1;
  const xp = st.xp ?? user.xp ?? 0;
  const perTask = new Map<string, Record<string, unknown>>();
  for (const p of st.per_task ?? []) if (typeof p.task_id === "string") perTask.set(p.task_id, p);

  page.append(
    h("div", { class: "row", style: { justifyContent: "space-between" } }, h("h1", { style: { margin: "0" } }, `Hello, ${user.name || user.email}`), h("span", { class: "pill pill-primary", "data-testid": "level" }, `Level ${level} · ${xp} XP`)),
  );

  // KPIs
  const lp = levelProgress(st as Record<string, unknown>, level, xp);
  const levelCanvas = h("canvas", { "aria-label": "Experience towards the next level" });
  const perfCanvas = h("canvas", { "aria-label": "Sensitivity and specificity" });
  page.append(
    h(
      "div",
      { class: "grid grid-3" },
      h(
        "div",
        { class: "card", "data-testid": "performance" },
        h("div", { class: "kpi-label" }, "Performance"),
        h(
          "div",
          { class: "row", style: { gap: "1.5rem" } },
          h("div", { class: "has-help", title: QUALITY_HELP, "data-testid": "quality" }, h("div", { class: "kpi" }, fmtPct(st.quality)), h("div", { class: "kpi-label" }, `quality (${st.quality_images ?? 0} images)`)),
          h("div", { class: "has-help", title: SENSITIVITY_HELP }, h("div", { class: "kpi" }, fmtPct(st.sensitivity)), h("div", { class: "kpi-label" }, "mean sensitivity")),
          h("div", { class: "has-help", title: SPECIFICITY_HELP }, h("div", { class: "kpi" }, fmtPct(st.specificity)), h("div", { class: "kpi-label" }, "mean specificity")),
        ),
        h("p", { class: "muted", style: { fontSize: "0.8rem", margin: "0.3rem 0 0" } }, "Quality is how well your work agrees with the other annotators' (or with an expert's reference); hover a number for what it means."),
        h("div", { class: "chart-box", style: { height: "120px" } }, perfCanvas),
      ),
      h(
        "div",
        { class: "card" },
        h("div", { class: "kpi-label" }, "Level"),
        h("div", { class: "row", style: { alignItems: "center", gap: "1rem" } }, h("div", { class: "chart-box", style: { height: "130px", width: "130px" } }, levelCanvas), h("div", null, h("div", { class: "kpi" }, `Level ${level}`), h("div", { class: "kpi-label" }, `${lp.into} / ${lp.span} XP to level ${level + 1}`))),
      ),
      h("div", { class: "card" }, h("div", { class: "kpi-label" }, "Contributions"), h("div", { class: "kpi", "data-testid": "submissions-total" }, String(st.submissions ?? 0)), h("div", { class: "kpi-label" }, "images annotated")),
    ),
  );
  chart(levelCanvas, {
    type: "doughnut",
    data: { labels: ["XP", "to next level"], datasets: [{ data: [lp.into, Math.max(0, lp.span - lp.into)], backgroundColor: ["#2f6fed", "#dfe6f3"], borderWidth: 0 }] },
    options: { cutout: "72%", plugins: { legend: { display: false } } },
  });
  chart(perfCanvas, {
    type: "bar",
    data: { labels: ["Quality", "Sensitivity", "Specificity"], datasets: [{ data: [st.quality ?? 0, st.sensitivity ?? 0, st.specificity ?? 0], backgroundColor: ["#16a34a", "#22d3ee", "#a78bfa"], borderRadius: 6 }] },
    options: { indexAxis: "y", scales: { x: { min: 0, max: 1 } }, plugins: { legend: { display: false } } },
  });

  // Tasks
  const taskList = h("div", { class: "grid grid-2", "data-testid": "task-list" });
  const open = tasks.filter((t) => (t.status ?? "open") === "open");
  page.append(h("h2", { style: { marginTop: "1.5rem" } }, "Your tasks"), taskList);
  if (!open.length) taskList.append(h("div", { class: "card empty" }, "No task is open to you yet. Task masters can invite you to private tasks."));
  for (const t of open) {
    const pr = taskProgress(t, perTask.get(t.id));
    const frac = pr.total ? pr.done / pr.total : 0;
    const bar = progressBar(frac, pr.total ? `${pr.done} / ${pr.total}` : `${pr.done}`);
    bar.el.classList.add("labelled");
    bar.el.dataset.testid = "task-progress";
    const cta = h("a", { class: "btn btn-primary", href: `/tasks/${encodeURIComponent(t.id)}`, "data-testid": "open-task" }, pr.done ? "Continue" : "Start");
    const card = h(
      "article",
      { class: "card task-card", dataset: { taskId: t.id } },
      h("div", { class: "card-head" }, h("h3", null, t.title), h("span", { class: "pill pill-primary" }, t.tool)),
      h("div", { class: "task-meta" }, h("span", { class: "pill" }, t.visibility), h("span", { class: "pill" }, `${t.replicates} raters / image`)),
      h("div", null, h("div", { class: "small muted", style: { marginBottom: "4px" } }, pr.total ? `Your progress: ${pr.done} of ${pr.total} images` : `You annotated ${pr.done} image(s)`), bar.el),
      h("div", { class: "row" }, cta, h("a", { class: "btn", href: `/tasks/${encodeURIComponent(t.id)}/instructions` }, "Instructions")),
    );
    taskList.append(card);
  }

  // Activity
  const days = Object.keys(st.per_day ?? {}).sort();
  const actCanvas = h("canvas", { "aria-label": "Contributions per day" });
  page.append(
    h("div", { class: "grid grid-2", style: { marginTop: "1rem" } }, h("div", { class: "card" }, h("h2", null, "Activity calendar"), calendarHeatmap(st.per_day ?? {})), h("div", { class: "card" }, h("h2", null, "Contributions per day"), h("div", { class: "chart-box" }, actCanvas))),
  );
  const last = days.slice(-30);
  // running total: the experience that the level grows from
  let running = days.slice(0, days.length - last.length).reduce((a, d) => a + (st.per_day[d] ?? 0), 0);
  const cumulative = last.map((d) => (running += st.per_day[d] ?? 0));
  chart(actCanvas, {
    type: "bar",
    data: {
      labels: last,
      datasets: [
        { label: "images that day", data: last.map((d) => st.per_day[d] ?? 0), backgroundColor: "#2f6fed", borderRadius: 4, yAxisID: "y" },
        { type: "line", label: "all contributions", data: cumulative, borderColor: "#f472b6", backgroundColor: "#f472b6", tension: 0.25, yAxisID: "y1" } as never,
      ],
    },
    options: {
      plugins: { legend: { display: true, position: "bottom" } },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, ticks: { precision: 0 } } },
    },
  });
  return () => undefined;
}
