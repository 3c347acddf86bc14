import { api, ApiError } from "../api";
import { h } from "../dom";
import { navigate } from "../router";
import { signIn } from "../session";

function hero(sub: string): HTMLElement {
  return h("div", { class: "auth-hero" }, h("div", { class: "brand", style: { justifyContent: "center", fontSize: "1.5rem" } }, h("span", { class: "brand-mark" }), "crowdseg"), h("p", null, sub));
}

function field(label: string, input: HTMLInputElement, hint?: string): HTMLElement {
  const id = `f-${input.name}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label, hint ? h("span", { class: "hint" }, ` — ${hint}`) : null), input);
}

export function signinPage(root: HTMLElement): void {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const err = h("div", { class: "form-error", role: "alert" });
  const submit = h("button", { class: "btn btn-primary btn-lg", type: "submit", style: { width: "100%" }, "data-testid": "signin-submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card", novalidate: false },
    h("h1", null, "Sign in"),
    field("Email", email),
    field("Password", password),
    err,
    submit,
    h("p", { class: "small muted", style: { textAlign: "center", marginBottom: "0" } }, "New here? ", h("a", { href: "/signup" }, "Create an account")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    submit.disabled = true;
    try {
      await signIn(email.value.trim(), password.value);
      const back = new URLSearchParams(location.search).get("next");
      navigate(back && back.startsWith("/") && !back.startsWith("//") ? back : "/", true);
    } catch (ex) {
      err.textContent = ex instanceof ApiError && (ex.status === 401 || ex.status === 400) ? "Wrong email or password." : ex instanceof Error ? ex.message : String(ex);
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h("div", { class: "page narrow" }, hero("Crowdsourced annotation of scientific and medical images"), form));
  email.focus();
}

export function signupPage(root: HTMLElement): void {
  const name = h("input", { type: "text", name: "name", autocomplete: "name", required: true, maxLength: 120 });
  const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", required: true, minLength: 8 });
  const err = h("div", { class: "form-error", role: "alert" });
  const submit = h("button", { class: "btn btn-primary btn-lg", type: "submit", style: { width: "100%" }, "data-testid": "signup-submit" }, "Create account");
  const form = h(
    "form",
    { class: "card" },
    h("h1", null, "Create your account"),
    field("Name", name, "shown to task masters"),
    field("Email", email),
    field("Password", password, "at least 8 characters"),
    err,
    submit,
    h("p", { class: "small muted", style: { textAlign: "center", marginBottom: "0" } }, "Already have an account? ", h("a", { href: "/signin" }, "Sign in")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    if (password.value.length < 8) {
      err.textContent = "The password needs at least 8 characters.";
      return;
    }
    submit.disabled = true;
    try {
      await api.signup({ email: email.value.trim(), password: password.value, name: name.value.trim() });
      await signIn(email.value.trim(), password.value);
      navigate("/", true);
    } catch (ex) {
      err.textContent = ex instanceof Error ? ex.message : String(ex);
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h("div", { class: "page narrow" }, hero("Help researchers by outlining structures in images"), form));
  name.focus();
}
