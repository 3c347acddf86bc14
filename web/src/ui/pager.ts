/** Previous / next controls with a "201–400 of 100 000" label, for a paged table. */
import { h } from "../dom";

export interface PagerControls {
  el: HTMLElement;
  /** Show the window on screen and which directions are open. */
  set: (state: { label: string; hasPrev: boolean; hasNext: boolean; busy?: boolean }) => void;
}

export interface PageSizes {
  sizes: number[];
  size: number;
  onSize: (size: number) => void;
}

export function pagerControls(testid: string, onPrev: () => void, onNext: () => void, sizes?: PageSizes): PagerControls {
  const prev = h("button", { class: "btn", type: "button", disabled: true, "data-testid": `${testid}-prev`, "aria-label": "Previous page", onclick: onPrev }, "← Previous");
  const next = h("button", { class: "btn", type: "button", disabled: true, "data-testid": `${testid}-next`, "aria-label": "Next page", onclick: onNext }, "Next →");
  const label = h("span", { class: "small muted", "data-testid": `${testid}-window`, "aria-live": "polite" });
  const middle = h("span", { class: "row" }, label);
  if (sizes) {
    const select = h(
      "select",
      { "data-testid": `${testid}-size`, "aria-label": "Rows per page" },
      sizes.sizes.map((n) => h("option", { value: String(n), selected: n === sizes.size }, `${n} rows`)),
    );
    select.addEventListener("change", () => sizes.onSize(Number(select.value)));
    middle.append(select);
  }
  const el = h("div", { class: "row pager" }, prev, middle, next);
  return {
    el,
    set: ({ label: text, hasPrev, hasNext, busy = false }) => {
      label.textContent = text;
      prev.disabled = busy || !hasPrev;
      next.disabled = busy || !hasNext;
      prev.hidden = next.hidden = !hasPrev && !hasNext && !busy; // one page: nothing to move between
    },
  };
}
