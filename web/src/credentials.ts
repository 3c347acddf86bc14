/**
 * What authenticates a request. A signed-in browser relies on the HttpOnly session cookie, so the
 * session survives reloads and new tabs; a write made with that cookie must echo the CSRF cookie's
 * value in X-CSRF-Token (libs/http.py refuses it otherwise). A study link's worker may also carry a
 * bearer token for their tab: in a panel's iframe (MTurk) the browser withholds SameSite cookies.
 */
export const CSRF_COOKIE = "crowdseg_csrf";
export const CSRF_HEADER = "X-CSRF-Token";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** The value of one cookie in a `document.cookie` string, or null. */
export function cookieValue(cookies: string, name: string): string | null {
  for (const part of cookies.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      const raw = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(raw);
      } catch {
        return raw;
      }
    }
  }
  return null;
}

/** The headers that authenticate a request of `method`: the bearer token when there is one, else the
 * CSRF header on writes (the cookie itself is sent by the browser). */
export function credentialHeaders(method: string, cookies: string, bearer: string | null): Record<string, string> {
  if (bearer) return { Authorization: `Bearer ${bearer}` };
  if (SAFE_METHODS.has(method.toUpperCase())) return {};
  const csrf = cookieValue(cookies, CSRF_COOKIE);
  return csrf ? { [CSRF_HEADER]: csrf } : {};
}
