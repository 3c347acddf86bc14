/** Minimal history-API router: patterns like "/tasks/:id". */
export type Params = Record<string, string>;
export type View = (root: HTMLElement, params: Params) => void | (() => void) | Promise<void | (() => void)>;

interface Route {
  re: RegExp;
  keys: string[];
  view: View;
}

const routes: Route[] = [];
let cleanup: (() => void) | null = null;
let rootEl: HTMLElement | null = null;
let beforeEach: ((path: string) => string | null) | null = null;
const leaveGuards = new Set<() => void>();

export function route(pattern: string, view: View): void {
  const keys: string[] = [];
  const re = new RegExp(
    "^" +
      pattern.replace(/\/:([a-zA-Z_]+)/g, (_, k: string) => {
        keys.push(k);
        return "/([^/]+)";
      }) +
      "/?$",
  );
  routes.push({ re, keys, view });
}

export function guard(fn: (path: string) => string | null): void {
  beforeEach = fn;
}

/** Called before every navigation away from the current view (used to save work). */
export function onLeave(fn: () => void): () => void {
  leaveGuards.add(fn);
  return () => leaveGuards.delete(fn);
}

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  void render();
}

export async function render(): Promise<void> {
  if (!rootEl) return;
  for (const fn of [...leaveGuards]) fn();
  leaveGuards.clear();
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  let path = location.pathname;
  const redirect = beforeEach?.(path);
  if (redirect && redirect !== path) {
    history.replaceState(null, "", redirect);
    path = location.pathname; // the redirect may carry a query (?next=…)
  }
  for (const r of routes) {
    const m = r.re.exec(path);
    if (!m) continue;
    const params: Params = {};
    r.keys.forEach((k, i) => (params[k] = decodeURIComponent(m[i + 1] ?? "")));
    rootEl.replaceChildren();
    rootEl.scrollTop = 0;
    window.scrollTo(0, 0);
    const c = await r.view(rootEl, params);
    if (typeof c === "function") cleanup = c;
    return;
  }
  rootEl.replaceChildren();
  const p = document.createElement("p");
  p.className = "page narrow";
  p.textContent = "Page not found.";
  rootEl.append(p);
}

export function start(root: HTMLElement): void {
  rootEl = root;
  window.addEventListener("popstate", () => void render());
  document.addEventListener("click", (e) => {
    const a = (e.target as Element | null)?.closest?.("a");
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const href = a.getAttribute("href");
    if (!href || !href.startsWith("/") || href.startsWith("/api/") || a.target || a.hasAttribute("download")) return;
    e.preventDefault();
    navigate(href);
  });
  void render();
}
