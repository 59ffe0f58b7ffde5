// Message Markdown for the customer's page: markdown-it parses, DOMPurify cleans, and the page
// gets DOM nodes. Both libraries are vendored from their npm packages (static/vendor/refresh.sh).
//
// The rules are the staff pages' (ops/markdown.py): both read markdown-rules.json, so a tag, an
// attribute or a link scheme allowed on one page is allowed on the other. Two steps, as there:
// markdown-it makes nothing dangerous (raw HTML off, so typed HTML stays text; links only to the
// allowed prefixes; images as links, never <img>), and DOMPurify then drops whatever is not on
// the allowlist, should a parser quirk or a future option ever produce it.

import DOMPurify from "../vendor/dompurify/purify.es.mjs";
import MarkdownIt from "../vendor/markdown-it/markdown-it.esm.min.mjs";

const rules = await (await fetch(new URL("./markdown-rules.json", import.meta.url))).json();

// A message's "# Title" sits under the page's h1 and the bubble: it starts at h3, as on the
// staff pages (the one rule each page may set for itself).
export const HEADING_SHIFT = 2;
const LINK_REL = "noopener noreferrer";

const ALLOWED_TAGS = [...rules.tags];
for (let level = 1 + HEADING_SHIFT; level <= 6; level += 1) ALLOWED_TAGS.push(`h${level}`);
const ALLOWED_ATTRIBUTES = new Map(
  Object.entries(rules.attributes).map(([tag, names]) => [tag, new Set(names)]),
);
const SCHEMES = rules.linkPrefixes.map((prefix) => prefix.split(":")[0]);

/** Whether url starts with an allowed prefix followed by neither a blank nor a slash (the same
 * function as ops/markdown.py's link_allowed). */
export function linkAllowed(url) {
  const text = String(url).trim();
  for (const prefix of rules.linkPrefixes) {
    if (text.slice(0, prefix.length).toLowerCase() === prefix) {
      const next = text.charAt(prefix.length);
      return next !== "" && !/\s/.test(next) && next !== "/";
    }
  }
  return false;
}

const md = new MarkdownIt(rules.markdown.preset, { ...rules.markdown.options });
md.enable(rules.markdown.enable);
// A link or image that fails this is not parsed as one: its source stays visible as text.
md.validateLink = linkAllowed;
if (rules.markdown.imagesAsLinks) md.renderer.rules.image = imageAsLink;
md.core.ruler.push("page_tags", pageTags);

/** Headings shifted down (HEADING_SHIFT); ~~text~~ as <del> (markdown-it writes <s>). */
function pageTags(state) {
  for (const token of state.tokens) {
    if (token.type === "heading_open" || token.type === "heading_close") {
      token.tag = `h${Math.min(6, Number(token.tag.slice(1)) + HEADING_SHIFT)}`;
    }
    for (const child of token.children || []) {
      if (child.type === "s_open" || child.type === "s_close") child.tag = "del";
    }
  }
}

/** An image as a link to it, named by its alt text: the page loads nothing a message points at
 * (no tracking pixels). Inside a link, only the alt text (a link cannot hold a link). */
function imageAsLink(tokens, idx, options, env, renderer) {
  const token = tokens[idx];
  const alt = renderer.renderInlineAsText(token.children || [], options, env);
  const src = String(token.attrGet("src") || "");
  let depth = 0;
  for (const other of tokens.slice(0, idx)) {
    depth += (other.type === "link_open") - (other.type === "link_close");
  }
  const escape = md.utils.escapeHtml;
  if (depth > 0 || !src) return escape(alt);
  return `<a href="${escape(src)}">${escape(alt || src)}</a>`;
}

// An instance of our own, so its hook applies to message text only.
const purify = DOMPurify(window);
purify.addHook("uponSanitizeAttribute", (node, data) => {
  // DOMPurify's ALLOWED_ATTR is one list for every tag; the rules name them per tag.
  const allowed = ALLOWED_ATTRIBUTES.get(node.nodeName.toLowerCase());
  if (!allowed || !allowed.has(data.attrName)) data.keepAttr = false;
});
const ATTRIBUTE_NAMES = [...new Set(Object.values(rules.attributes).flat())];
const PURIFY_OPTIONS = {
  ALLOWED_TAGS,
  ALLOWED_ATTR: ATTRIBUTE_NAMES,
  // A link's href must start with an allowed scheme; the other attributes (an ordered list's
  // start, a link's title) are not URLs, and DOMPurify would otherwise hold them to that too.
  ALLOWED_URI_REGEXP: new RegExp(`^(?:${SCHEMES.join("|")}):`, "i"),
  ADD_URI_SAFE_ATTR: ATTRIBUTE_NAMES.filter((name) => name !== "href"),
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

// A table's delimiter row ("| --- | :-: |").
const TABLE_DELIMITER = /^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$/;

/** While an answer streams, a table's header row arrives before its delimiter row, and until
 * both are in, markdown-it can only show the pipes as text: those trailing rows are held back
 * until the table can be drawn (a table whose rows start with "|", as models write them). */
export function withholdUnfinishedTable(text) {
  const lines = text.split("\n");
  const end = lines[lines.length - 1] === "" ? lines.length - 1 : lines.length;
  let start = end;
  while (start > 0 && /^ {0,3}\|/.test(lines[start - 1])) start -= 1;
  if (start === end) return text;
  const complete = text.endsWith("\n") ? end - start : end - start - 1;
  if (complete >= 2 && TABLE_DELIMITER.test(lines[start + 1])) return text;
  return lines.slice(0, start).join("\n");
}

/** ``source`` (Markdown as typed or generated, finished or still streaming) as a sanitised
 * DocumentFragment. An unclosed code fence runs to the end, so a fence still streaming shows
 * as a code block until its closing line arrives; with ``streaming``, a table shows once its
 * header and delimiter rows are in. */
export function renderMarkdown(source, { streaming = false } = {}) {
  let text = String(source || "");
  if (streaming) text = withholdUnfinishedTable(text);
  if (!text) return document.createDocumentFragment();
  const fragment = purify.sanitize(md.render(text), PURIFY_OPTIONS);
  for (const link of fragment.querySelectorAll("a")) {
    link.rel = LINK_REL;
    link.target = "_blank";
  }
  // markdown-it ends every block with a newline: between blocks it is layout noise, and the
  // text of a one-paragraph message stays exactly what was typed.
  for (const node of [...fragment.childNodes]) {
    if (node.nodeType === Node.TEXT_NODE && !node.textContent.trim()) node.remove();
  }
  return fragment;
}
