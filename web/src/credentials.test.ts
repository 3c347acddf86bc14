import { describe, expect, it } from "vitest";
import { cookieValue, credentialHeaders } from "./credentials";

describe("credentials", () => {
  const cookies = "theme=dark; crowdseg_csrf=abc%2D123; other=1";

  it("reads one cookie out of document.cookie", () => {
    expect(cookieValue(cookies, "crowdseg_csrf")).toBe("abc-123");
    expect(cookieValue(cookies, "missing")).toBeNull();
    expect(cookieValue("", "crowdseg_csrf")).toBeNull();
  });

  it("cookie-authenticated writes echo the CSRF cookie; reads send nothing", () => {
    expect(credentialHeaders("POST", cookies, null)).toEqual({ "X-CSRF-Token": "abc-123" });
    expect(credentialHeaders("delete", cookies, null)).toEqual({ "X-CSRF-Token": "abc-123" });
    expect(credentialHeaders("GET", cookies, null)).toEqual({});
    expect(credentialHeaders("POST", "theme=dark", null)).toEqual({});
  });

  it("a bearer token (a study link's tab) is sent instead", () => {
    expect(credentialHeaders("POST", cookies, "tok")).toEqual({ Authorization: "Bearer tok" });
    expect(credentialHeaders("GET", cookies, "tok")).toEqual({ Authorization: "Bearer tok" });
  });
});
