import { api, ApiError, setToken, type Me, type Role } from "./api";

let current: Me | null = null;
const listeners = new Set<(me: Me | null) => void>();

export function me(): Me | null {
  return current;
}

export function hasRole(r: Role): boolean {
  if (!current) return false;
  if (current.roles.includes("admin")) return true;
  return current.roles.includes(r);
}

export function isTaskmaster(): boolean {
  return hasRole("taskmaster");
}

export function isAdmin(): boolean {
  return !!current?.roles.includes("admin");
}

export function onSession(fn: (me: Me | null) => void): void {
  listeners.add(fn);
}

function set(m: Me | null): void {
  current = m;
  for (const fn of listeners) fn(m);
}

export async function refresh(): Promise<Me | null> {
  try {
    set(await api.me());
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      setToken(null);
      set(null);
    } else throw e;
  }
  return current;
}

export async function signIn(email: string, password: string): Promise<Me | null> {
  await api.login({ email, password });
  setToken(null); // the session cookie the answer set signs this browser in, in every tab
  return refresh();
}

export async function signOut(): Promise<void> {
  try {
    await api.logout();
  } catch {
    /* best effort: the token is dropped either way */
  }
  setToken(null);
  set(null);
}
