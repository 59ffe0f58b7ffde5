// A small Markdown subset rendered with DOM nodes and textContent only: no message text is ever
// parsed as HTML.

const SAFE_URL = /^https?:\/\//i;

function inline(parent, text) {
  const pattern = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*]+\*)|(\[[^\]]+\]\([^)\s]+\))/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) parent.append(text.slice(last, match.index));
    const token = match[0];
    if (match[1]) {
      const code = document.createElement("code");
      code.textContent = token.slice(1, -1);
      parent.append(code);
    } else if (match[2]) {
      const strong = document.createElement("strong");
      inline(strong, token.slice(2, -2));
      parent.append(strong);
    } else if (match[3]) {
      const em = document.createElement("em");
      inline(em, token.slice(1, -1));
      parent.append(em);
    } else {
      const [, label, url] = token.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/);
      if (SAFE_URL.test(url)) {
        const link = document.createElement("a");
        link.href = url;
        link.rel = "noopener noreferrer";
        link.target = "_blank";
        link.textContent = label;
        parent.append(link);
      } else {
        parent.append(token);
      }
    }
    last = match.index + token.length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].startsWith("```")) body.push(lines[i++]);
      i += 1;
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = body.join("\n");
      pre.append(code);
      fragment.append(pre);
    } else if (/^\s*([-*]|\d+\.)\s+/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const list = document.createElement(ordered ? "ol" : "ul");
      while (i < lines.length && /^\s*([-*]|\d+\.)\s+/.test(lines[i])) {
        const item = document.createElement("li");
        inline(item, lines[i].replace(/^\s*([-*]|\d+\.)\s+/, ""));
        list.append(item);
        i += 1;
      }
      fragment.append(list);
    } else if (line.startsWith(">")) {
      const quote = document.createElement("blockquote");
      const body = [];
      while (i < lines.length && lines[i].startsWith(">")) body.push(lines[i++].replace(/^>\s?/, ""));
      quote.append(renderMarkdown(body.join("\n")));
      fragment.append(quote);
    } else if (line.trim() === "") {
      i += 1;
    } else {
      const body = [];
      while (i < lines.length && lines[i].trim() !== "" && !/^(```|>|\s*([-*]|\d+\.)\s+)/.test(lines[i])) {
        body.push(lines[i++]);
      }
      const paragraph = document.createElement("p");
      inline(paragraph, body.join("\n"));
      fragment.append(paragraph);
    }
  }
  return fragment;
}
