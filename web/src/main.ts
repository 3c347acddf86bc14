import "./styles.css";
import { onUnauthorized } from "./api";
import { h, toast } from "./dom";
import { adminPage } from "./pages/admin";
import { annotatePage, instructionsPage } from "./pages/annotate";
import { signinPage, signupPage } from "./pages/auth";
import { consolePage, newTaskPage, taskConsolePage } from "./pages/console";
import { dashboardPage } from "./pages/dashboard";
import { invitePage, studyPage } from "./pages/study";
import { queue } from "./queue";
import { guard, navigate, render, route, start } from "./router";
import { isAdmin, isTaskmaster, me, onSession, refresh, signOut } from "./session";

const topbar = document.getElementById("topbar")!;
const main = document.getElementById("main")!;

function renderTopbar(): void {
  const u = me();
  const path = location.pathname;
  const link = (href: string, label: string): HTMLAnchorElement =>
    h("a", { href, class: (href === "/" ? path === "/" : path.startsWith(href)) ? "active" : "", "aria-current": path === href ? "page" : undefined }, label);
  const pending = queue.list().length;
  const out = h("button", { class: "btn btn-ghost", type: "button", "data-testid": "signout" }, "Sign out");
  out.addEventListener("click", async () => {
    await signOut();
    navigate("/signin");
  });
  topbar.replaceChildren(
    h(
      "div",
      { class: "topbar" },
      h("a", { class: "brand", href: "/", "aria-label": "crowdseg" }, h("span", { class: "brand-mark" }), h("span", { class: "brand-name" }, "crowdseg")),
      u
        ? h(
            "nav",
            { class: "nav", "aria-label": "Main" },
            link("/", "Dashboard"),
            isTaskmaster() ? link("/console", "Console") : null,
            isAdmin() ? link("/admin", "Admin") : null,
          )
        : null,
      h("span", { class: "spacer" }),
      pending ? h("span", { class: "pending-badge", title: "Submissions kept on this device until the server acknowledges them" }, `${pending} unsaved`) : null,
      u
        ? h("div", { class: "user-chip" }, h("span", { class: "avatar", "aria-hidden": "true" }, (u.name || u.email).slice(0, 1).toUpperCase()), h("span", { class: "name" }, u.name || u.email), out)
        : h("nav", { class: "nav" }, link("/signin", "Sign in"), link("/signup", "Sign up")),
    ),
  );
}

const PUBLIC = new Set(["/signin", "/signup"]);
guard((path) => {
  const u = me();
  if (path.startsWith("/study/")) return null; // a panel's worker, signed in or not: the page signs them in
  if (!u && !PUBLIC.has(path)) return `/signin${path !== "/" ? `?next=${encodeURIComponent(path)}` : ""}`;
  if (u && PUBLIC.has(path)) return "/";
  if (u && path.startsWith("/console") && !isTaskmaster()) return "/";
  if (u && path.startsWith("/admin") && !isAdmin()) return "/";
  return null;
});

route("/signin", signinPage);
route("/signup", signupPage);
route("/", dashboardPage);
route("/tasks/:id", annotatePage);
route("/tasks/:id/instructions", instructionsPage);
route("/console", consolePage);
route("/console/new", newTaskPage);
route("/console/tasks/:id", taskConsolePage);
route("/admin", adminPage);
route("/study/:id", studyPage);
route("/invite/:id", invitePage);

onSession(() => renderTopbar());
queue.onChange(() => renderTopbar());
const origPush = history.pushState.bind(history);
history.pushState = (...args: Parameters<History["pushState"]>) => {
  origPush(...args);
  renderTopbar();
};
window.addEventListener("popstate", renderTopbar);

onUnauthorized(() => {
  if (!me()) return;
  toast("Your session has ended — please sign in again. Unsaved work is kept on this device.", "error", 6000);
  void signOut().then(() => navigate(`/signin?next=${encodeURIComponent(location.pathname)}`));
});

async function boot(): Promise<void> {
  try {
    await refresh();
  } catch {
    toast("The server is not reachable — retrying…", "error");
  }
  renderTopbar();
  start(main);
  if (me()) void queue.flush();
}

window.addEventListener("unhandledrejection", (e) => {
  const msg = e.reason instanceof Error ? e.reason.message : String(e.reason);
  toast(msg, "error");
});

void boot();
void render;
