/** A guided tour: a highlight ring around each target with an explanatory popover. */
import { h } from "../dom";

export interface TourStep {
  target?: () => Element | null;
  title: string;
  text: string;
}

export function runTour(steps: TourStep[]): Promise<void> {
  return new Promise((resolve) => {
    let i = 0;
    const ring = h("div", { class: "tour-ring", "aria-hidden": "true" });
    const title = h("h3", { id: "tour-title" });
    const text = h("p", { style: { margin: "0" } });
    const count = h("span", { class: "tour-steps" });
    const back = h("button", { class: "btn", type: "button" }, "Back");
    const next = h("button", { class: "btn btn-primary", type: "button", "data-testid": "tour-next" }, "Next");
    const skip = h("button", { class: "btn btn-ghost", type: "button", "data-testid": "tour-skip" }, "Skip tour");
    const pop = h(
      "div",
      { class: "tour-pop", role: "dialog", "aria-modal": "true", "aria-labelledby": "tour-title", "data-testid": "tour" },
      title,
      text,
      h("div", { class: "row" }, count, h("span", { class: "row" }, skip, back, next)),
    );
    document.body.append(ring, pop);

    const place = (): void => {
      const s = steps[i]!;
      title.textContent = s.title;
      text.textContent = s.text;
      count.textContent = `${i + 1} / ${steps.length}`;
      back.disabled = i === 0;
      next.textContent = i === steps.length - 1 ? "Start" : "Next";
      const t = s.target?.();
      const vw = window.innerWidth;
      const vh = window.innerHeight;
      if (t) {
        const r = t.getBoundingClientRect();
        const pad = 6;
        Object.assign(ring.style, {
          display: "block",
          left: `${r.left - pad}px`,
          top: `${r.top - pad}px`,
          width: `${r.width + 2 * pad}px`,
          height: `${r.height + 2 * pad}px`,
        });
        const pw = pop.offsetWidth || 360;
        const ph = pop.offsetHeight || 180;
        let top = r.bottom + 14;
        if (top + ph > vh - 8) top = Math.max(8, r.top - ph - 14);
        if (r.height > vh * 0.5) top = Math.max(8, r.top + r.height / 2 - ph / 2);
        const left = Math.min(Math.max(8, r.left + r.width / 2 - pw / 2), vw - pw - 8);
        Object.assign(pop.style, { left: `${left}px`, top: `${top}px`, transform: "" });
      } else {
        Object.assign(ring.style, { display: "block", left: "50%", top: "50%", width: "0px", height: "0px" });
        Object.assign(pop.style, { left: "50%", top: "40%", transform: "translate(-50%, -50%)" });
      }
      next.focus();
    };
    const done = (): void => {
      ring.remove();
      pop.remove();
      window.removeEventListener("resize", place);
      document.removeEventListener("keydown", onKey, true);
      resolve();
    };
    const go = (d: number): void => {
      i += d;
      if (i >= steps.length) done();
      else place();
    };
    const onKey = (e: KeyboardEvent): void => {
      if (e.key === "Escape") done();
      else if (e.key === "ArrowRight") go(1);
      else if (e.key === "ArrowLeft" && i > 0) go(-1);
      else return;
      e.preventDefault();
      e.stopPropagation();
    };
    next.addEventListener("click", () => go(1));
    back.addEventListener("click", () => go(-1));
    skip.addEventListener("click", done);
    window.addEventListener("resize", place);
    document.addEventListener("keydown", onKey, true);
    place();
  });
}

export function tourSeen(userId: string, taskId: string): boolean {
  return localStorage.getItem(`crowdseg.tour.${userId}.${taskId}`) === "1";
}
export function markTourSeen(userId: string, taskId: string): void {
  localStorage.setItem(`crowdseg.tour.${userId}.${taskId}`, "1");
}
