import DOMPurify from "dompurify";
import { marked } from "marked";

let hooked = false;

/** Render task instructions: Markdown → HTML → DOMPurify (scripts, handlers and styles removed). */
export function renderMarkdown(src: string): string {
  if (!hooked) {
    DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
    hooked = true;
  }
  const html = marked.parse(src ?? "", { async: false, gfm: true, breaks: false }) as string;
  return DOMPurify.sanitize(html, {
    USE_PROFILES: { html: true },
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
    FORBID_ATTR: ["style"],
  });
}

export function markdownInto(el: HTMLElement, src: string): HTMLElement {
  el.innerHTML = renderMarkdown(src);
  el.classList.add("markdown");
  return el;
}
