"""Message Markdown as HTML for staff pages: ``render_markdown``, the one renderer every admin page
that shows a message uses (transcripts, live rows, and whatever shows a message next).

Why on the server: staff pages are Django templates, and a row fetched live must look exactly
like the one on the first page load, so the HTML is made in one place, in Python. The customer's
page renders the same Markdown in its browser (``static/chat/markdown.js``, markdown-it and
DOMPurify), under the same rules: both read ``static/chat/markdown-rules.json`` (parser options,
link schemes, allowed tags and attributes); only the heading shift is each page's own.

Why two steps: markdown-it-py is configured not to make anything dangerous (raw HTML disabled, so
typed HTML stays text; links only to http, https and mailto; images never become ``<img>``), and
nh3 (the ammonia sanitizer) then cleans its output against an allowlist of tags, attributes and
URL schemes. Either step alone should be enough; together a bug or a future option in one of
them (a plugin, a parser quirk) still does not put script, an event handler or a tracking pixel
in front of staff, who are logged in to the admin.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

# The rules both renderers share (see the module docstring).
RULES_PATH = Path(__file__).resolve().parents[1] / "static" / "chat" / "markdown-rules.json"
RULES: dict[str, Any] = json.loads(RULES_PATH.read_text(encoding="utf-8"))
# What a link may start with; anything else (javascript:, data:, vbscript:, relative or
# protocol-relative URLs) is left as the text that was typed.
LINK_PREFIXES: tuple[str, ...] = tuple(RULES["linkPrefixes"])
LINK_SCHEMES = frozenset(prefix.split(":", 1)[0] for prefix in LINK_PREFIXES)
# A message's "# Title" is a heading inside an admin page, under the page's own h1 and the
# fieldset's h2: it starts at h3.
HEADING_SHIFT = 2

ALLOWED_TAGS = frozenset({*RULES["tags"], *(f"h{level}" for level in range(1 + HEADING_SHIFT, 7))})
# rel is not listed: nh3 sets it on every link (link_rel) and would refuse the combination.
ALLOWED_ATTRIBUTES = {tag: frozenset(names) for tag, names in RULES["attributes"].items()}
LINK_REL = "noopener noreferrer nofollow"


class MessageMarkdown(MarkdownIt):
    """CommonMark with tables and strikethrough, no raw HTML, no linkify, safe links only."""

    def __init__(self) -> None:
        parser = RULES["markdown"]
        super().__init__(parser["preset"], dict(parser["options"]))
        self.enable(list(parser["enable"]))
        if parser["imagesAsLinks"]:
            self.add_render_rule("image", _image_as_link)
        self.core.ruler.push("staff_tags", _staff_tags)

    def validateLink(self, url: str) -> bool:  # markdown-it names it so
        # A link or image that fails this is not parsed as one: its source stays visible as text.
        return link_allowed(url)


def link_allowed(url: str) -> bool:
    """Whether ``url`` starts with an allowed prefix followed by something that is neither a
    blank nor a slash (``https:///x`` and ``mailto: x`` are not links). markdown.js has the
    same function."""
    url = url.strip()
    for prefix in LINK_PREFIXES:
        if url[: len(prefix)].lower() == prefix:
            rest = url[len(prefix) :]
            return bool(rest) and not rest[0].isspace() and rest[0] != "/"
    return False


def _staff_tags(state: StateCore) -> None:
    """Headings shifted down (see HEADING_SHIFT); ~~text~~ as <del> (markdown-it writes <s>)."""
    for token in state.tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1:]) + HEADING_SHIFT)}"
        for child in token.children or ():
            if child.type in ("s_open", "s_close"):
                child.tag = "del"


def _image_as_link(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """An image as a link to it, named by its alt text: the admin loads nothing a message points
    at (no tracking pixels). Inside a link, only the alt text (a link cannot hold a link)."""
    token = tokens[idx]
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    src = str(token.attrGet("src") or "")
    depth = sum((t.type == "link_open") - (t.type == "link_close") for t in tokens[:idx])
    if depth > 0 or not src:
        return str(escape(alt))
    return f'<a href="{escape(src)}">{escape(alt or src)}</a>'


_markdown = MessageMarkdown()


def render_markdown(text: str) -> SafeString:
    """``text`` (Markdown as typed or generated) as sanitised HTML, safe to put in any page."""
    if not text:
        return SafeString("")
    html = nh3.clean(
        _markdown.render(text),
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(LINK_SCHEMES),
        link_rel=LINK_REL,
        # Every link opens outside the admin, so the page a staff member works in stays.
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    # nh3 leaves ' as is in text; Django's escape writes &#x27;, and staff pages (and their
    # tests) expect one escaping wherever a message appears. Attribute values are double-quoted,
    # so the reference is equally valid there.
    return mark_safe(html.replace("'", "&#x27;"))  # noqa: S308 (nh3's sanitised output)
