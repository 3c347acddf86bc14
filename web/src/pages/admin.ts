import { api, type Role, type UserRow } from "../api";
import { h, toast } from "../dom";
import { slicePage, windowLabel } from "../paging";
import { me } from "../session";
import { pagerControls } from "../ui/pager";

const PAGE = 100; // rows on show: every user is in memory (page after page of the API), the DOM holds one page

const ROLES: Role[] = ["annotator", "taskmaster", "admin"];

export async function adminPage(root: HTMLElement): Promise<void> {
  const page = h("div", { class: "page stack" }, h("h1", null, "Users and roles"));
  root.append(page);
  let users: UserRow[] = [];
  try {
    users = await api.users();
  } catch (e) {
    page.append(h("div", { class: "card" }, h("p", null, `The user list is not available: ${e instanceof Error ? e.message : e}`)));
  }
  const filter = h("input", { type: "text", placeholder: "Filter by name or email", "aria-label": "Filter users" });
  const tbody = h("tbody");
  let at = 0;
  const controls = pagerControls("users-page", () => render(at - 1), () => render(at + 1));
  const render = (to = 0): void => {
    const q = filter.value.trim().toLowerCase();
    const matching = users.filter((u) => !q || u.email.toLowerCase().includes(q) || u.name.toLowerCase().includes(q));
    const cut = slicePage(matching, to, PAGE);
    at = cut.page;
    const label = windowLabel(cut.offset, cut.rows.length, matching.length) + (q ? ` (filtered from ${users.length})` : "");
    controls.set({ label, hasPrev: cut.hasPrev, hasNext: cut.hasNext });
    tbody.replaceChildren(
      ...cut.rows
        .map((u) => {
          const boxes = ROLES.map((r) => {
            const cb = h("input", { type: "checkbox", checked: u.roles.includes(r), "aria-label": `${r} role for ${u.email}`, dataset: { role: r, user: u.id } });
            if (u.id === me()?.id && r === "admin") cb.disabled = true;
            cb.addEventListener("change", async () => {
              const roles = ROLES.filter((x) => (x === r ? cb.checked : u.roles.includes(x)));
              try {
                await api.setRoles(u.id, roles);
                u.roles = roles;
                toast(`Roles of ${u.email}: ${roles.join(", ") || "none"}`, "ok");
              } catch (e) {
                cb.checked = !cb.checked;
                toast(e instanceof Error ? e.message : String(e), "error");
              }
            });
            return h("td", null, cb);
          });
          return h("tr", null, h("td", null, u.name), h("td", null, u.email), ...boxes);
        }),
    );
  };
  filter.addEventListener("input", () => render(0));
  render();
  page.append(
    h(
      "div",
      { class: "card stack" },
      filter,
      h("div", { class: "table-wrap" }, h("table", null, h("thead", null, h("tr", null, h("th", null, "Name"), h("th", null, "Email"), ...ROLES.map((r) => h("th", null, r)))), tbody)),
      controls.el,
    ),
  );
}
