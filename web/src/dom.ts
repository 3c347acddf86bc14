/** Tiny DOM builder: user-supplied text only ever goes through textContent. */
type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, unknown> & {
  class?: string;
  style?: Partial<CSSStyleDeclaration>;
  dataset?: Record<string, string>;
};

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = String(v);
      else if (k === "style") Object.assign(el.style, v as object);
      else if (k === "dataset") Object.assign(el.dataset, v as object);
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v as EventListener);
      else if (k in el && typeof v !== "string") (el as unknown as Record<string, unknown>)[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el: Element, children: (Child | Child[])[]): void {
  for (const c of children) {
    if (Array.isArray(c)) append(el, c);
    else if (c === null || c === undefined || c === false) continue;
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function fmtPct(v: number | null | undefined): string {
  return v === null || v === undefined || Number.isNaN(v) ? "—" : `${(v * 100).toFixed(1)} %`;
}

/** 100 000 (a thin space between groups of three). */
export function fmtInt(v: number): string {
  return Math.round(v).toLocaleString("en-US").replace(/,/g, "\u202f");
}

export function fmtNum(v: number | null | undefined, digits = 2): string {
  return v === null || v === undefined || Number.isNaN(v) ? "—" : v.toFixed(digits);
}

let toastBox: HTMLElement | null = null;
export function toast(msg: string, kind: "info" | "ok" | "error" = "info", ms = 3500): void {
  if (!toastBox) {
    toastBox = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(toastBox);
  }
  const t = h("div", { class: `toast toast-${kind}` }, msg);
  toastBox.append(t);
  setTimeout(() => t.remove(), ms);
}

export function progressBar(value = 0, label = ""): { el: HTMLElement; set: (v: number, text?: string) => void } {
  const fill = h("div", { class: "progress-fill" });
  const text = h("span", { class: "progress-text" }, label);
  const el = h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, fill, text);
  const set = (v: number, t?: string): void => {
    const pct = Math.max(0, Math.min(1, v)) * 100;
    fill.style.width = `${pct}%`;
    el.setAttribute("aria-valuenow", pct.toFixed(0));
    if (t !== undefined) text.textContent = t;
  };
  set(value);
  return { el, set };
}

/** A modal dialog (uses <dialog>, so focus and Escape are handled by the browser). */
export function modal(title: string, body: Node, opts: { wide?: boolean; onClose?: () => void } = {}): HTMLDialogElement {
  const close = h("button", { class: "btn btn-ghost icon", "aria-label": "Close", type: "button" }, "✕");
  const d = h(
    "dialog",
    { class: `modal${opts.wide ? " modal-wide" : ""}` },
    h("header", { class: "modal-head" }, h("h2", null, title), close),
    h("div", { class: "modal-body" }, body),
  );
  close.addEventListener("click", () => d.close());
  d.addEventListener("close", () => {
    d.remove();
    opts.onClose?.();
  });
  document.body.append(d);
  d.showModal();
  return d;
}
