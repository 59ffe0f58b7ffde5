"""Markdown on the customer's page, in Chromium against the real server and the fake model:
tables, steps with nested bullets, code fences and inline code render as such while the answer
streams in; nothing a model or a customer writes ever runs; the page renders a text exactly as
the staff pages do; and the log follows an answer down to its last source link unless the
reader scrolled up."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from ops.markdown import render_markdown
from tests.browser.conftest import WAIT_MS, open_chat, send
from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply, tool_call

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__xss=1">'
RICH_ANSWER = f"""To reset your password:

1. Open **Settings** and choose *Security*.
   - On the web: the gear icon, top right.
   - On the phone: *Profile*, then *Security*.
2. Click `Reset password`.
3. Follow the link in the email.

| Plan | Refund window |
| --- | --- |
| Monthly | 14 days |
| Annual | 30 days |

```
nimbus sync --reset
```

After the code block, a paragraph of its own. {HOSTILE} [click](javascript:window.__xss=2)
<svg onload="window.__xss=3"></svg> ![pixel](https://t.example/p.gif) ~~gone~~

Source: [Resetting your password](https://help.nimbus.example/articles/reset-password)"""

# Installed before anything is sent: every node the log ever receives (even one removed again
# in the same task) is checked, and the answer's shape is recorded after every change.
WATCH_JS = """() => {
    window.__violations = [];
    window.__shapes = [];
    const bad = /^\\s*(?:javascript|data|vbscript):/i;
    const inspect = (node) => {
        if (node.nodeType !== 1) return;
        for (const el of [node, ...node.querySelectorAll("*")]) {
            const tag = el.tagName.toLowerCase();
            // The page's own images: the avatar, and the thumbs' icons under an answer.
            const image = tag === "img" && !el.classList.contains("avatar");
            const icon = tag === "svg" && el.closest("button.thumb");
            const active = ["script", "svg", "iframe", "object", "embed", "style"].includes(tag);
            if (image || (active && !icon)) {
                window.__violations.push(tag);
            }
            for (const attr of el.attributes) {
                if (attr.name.startsWith("on") || bad.test(attr.value)) {
                    window.__violations.push(tag + " " + attr.name + "=" + attr.value);
                }
            }
        }
    };
    new MutationObserver((records) => {
        for (const record of records) {
            for (const node of record.addedNodes) inspect(node);
            if (record.type === "attributes") inspect(record.target);
        }
        const body = document.querySelector("article.from-assistant .body");
        if (body && body.lastElementChild) {
            window.__shapes.push({
                last: body.lastElementChild.tagName,
                text: body.textContent,
                streaming: body.parentNode.classList.contains("streaming"),
            });
        }
    }).observe(document.getElementById("log"), {subtree: true, childList: true, attributes: true});
}"""


def collect_dialogs(page: Page) -> list[str]:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


def test_markdown_renders_as_it_streams_and_nothing_executable_reaches_the_page(
    page: Page, fake_model: FakeOpenAIServer
) -> None:
    fake_model.script(Reply(RICH_ANSWER, delay=0.02))
    dialogs = collect_dialogs(page)
    open_chat(page)
    page.evaluate(WATCH_JS)
    send(page, f'Why? <svg onload="window.__xss=4"> {HOSTILE}')

    answer = page.locator("article.from-assistant:not(.streaming) .body")
    expect(answer).to_contain_text("Source: Resetting your password")
    shapes: list[dict[str, Any]] = page.evaluate("window.__shapes")
    # It was drawn while it streamed, and an open fence was a code block before it closed.
    assert sum(1 for s in shapes if s["streaming"]) >= 10
    assert any(
        s["streaming"] and s["last"] == "PRE" and "After the code block" not in s["text"]
        for s in shapes
    ), [s["last"] for s in shapes]
    # No stage of the answer showed Markdown's table or fence syntax as text.
    assert not any("| ---" in s["text"] or "```" in s["text"] for s in shapes)

    # Steps stay one list of three, the bullets nested inside the first step.
    steps = answer.locator(":scope > ol")
    expect(steps).to_have_count(1)
    assert steps.get_attribute("start") is None
    expect(steps.locator(":scope > li")).to_have_count(3)
    expect(steps.locator(":scope > li:first-child > ul > li")).to_have_count(2)
    expect(steps.locator(":scope > li:nth-child(2) code")).to_have_text("Reset password")
    # A real table, no pipes.
    table = answer.locator("table")
    expect(table.locator("thead th")).to_have_text(["Plan", "Refund window"])
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody tr").nth(1).locator("td")).to_have_text(["Annual", "30 days"])
    assert "|" not in answer.inner_text()
    # The fence holds its code only; the paragraph after it is a paragraph.
    expect(answer.locator("pre code")).to_have_text("nimbus sync --reset")
    after = answer.locator("pre + p")
    expect(after).to_contain_text("After the code block, a paragraph of its own.")
    expect(after).to_contain_text(HOSTILE)  # typed HTML is shown as the text it is
    expect(after.locator("del")).to_have_text("gone")
    # Links: the web ones only, opening outside the page; the image is a link, not an image.
    links = answer.locator("a")
    assert links.evaluate_all("ls => ls.map(a => [a.href, a.rel, a.target])") == [
        ["https://t.example/p.gif", "noopener noreferrer", "_blank"],
        [
            "https://help.nimbus.example/articles/reset-password",
            "noopener noreferrer",
            "_blank",
        ],
    ]
    expect(after).to_contain_text("[click](javascript:window.__xss=2)")

    user = page.locator("article.from-user .body")
    expect(user).to_have_text(f'Why? <svg onload="window.__xss=4"> {HOSTILE}')
    assert page.evaluate("window.__violations") == []
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert dialogs == []


SAMPLES = [
    RICH_ANSWER,
    "# Title\n## Sub\n###### Small",
    "4. Fourth step\n5. Fifth step\n\nText between.\n\n6. Sixth step",
    "```python\nprint('<b>')\n```\nAfter the code.",
    "**bold** *it* ~~gone~~ `code`\n\n> quoted\n\n---",
    "[x](JaVaScRiPt:alert(1)) [y](//evil.example/) [z](/admin/) <mailto:help@example.com>",
    "[![logo](https://x.example/i.png)](https://y.example/) ![](https://t.example/p.gif)",
    '<a href="javascript:alert(1)" onclick="x()">a</a>\n\n<iframe src=https://e.example>',
    "| a | b |\n|:--|--:|\n| 1 | 2 |",
    "Line one\nline two  \nline three",
]


class _Shape(HTMLParser):
    """Tags with their attributes (rel and target aside: each page sets its own) and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[Any] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        kept = sorted((k, v) for k, v in attrs if k not in ("rel", "target"))
        self.items.append((tag, kept))

    def handle_endtag(self, tag: str) -> None:
        self.items.append("/" + tag)

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.items.append(data.strip())


def shape(html: str) -> list[Any]:
    parser = _Shape()
    parser.feed(html)
    return parser.items


def test_the_page_renders_markdown_exactly_as_the_staff_pages_do(page: Page) -> None:
    open_chat(page)
    rendered = page.evaluate(
        """async (samples) => {
            const { renderMarkdown } = await import("/static/chat/markdown.js");
            return samples.map((text) => {
                const box = document.createElement("div");
                box.append(renderMarkdown(text));
                return box.innerHTML;
            });
        }""",
        SAMPLES,
    )
    for text, html in zip(SAMPLES, rendered, strict=True):
        assert shape(html) == shape(str(render_markdown(text))), text


# Long enough to scroll several times over in a 600 px window; it names the articles it used,
# so they are its sources (listed under it, after the text).
LONG_ANSWER = "\n\n".join(
    f"Paragraph {n}: the sync client retries on its own, so give it a minute before acting."
    for n in range(1, 31)
) + (
    "\n\nSee Sync error codes (NB-1xxx) and what to do, and Fixing NB-1042: file name or path "
    "not allowed."
)
GAP_JS = (
    "() => { const l = document.getElementById('log'); "
    "return l.scrollHeight - l.scrollTop - l.clientHeight; }"
)


def searched_then_answered(fake_model: FakeOpenAIServer) -> None:
    fake_model.script(
        tool_call("kb_search", {"query": "sync error codes NB-1042"}),
        Reply(LONG_ANSWER, delay=0.01),
    )


def test_the_log_follows_the_answer_to_its_last_source_unless_the_reader_scrolls_up(
    browser: Browser, app_server: LiveServer, fake_model: FakeOpenAIServer
) -> None:
    context = browser.new_context(
        base_url=app_server.base_url, viewport={"width": 900, "height": 600}
    )
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        open_chat(page)
        searched_then_answered(fake_model)
        # Every frame, how far the end of the log is below what is shown.
        page.evaluate(
            """() => {
                window.__gaps = [];
                const log = document.getElementById("log");
                const tick = () => {
                    if (document.querySelector("article.from-assistant.streaming")) {
                        window.__gaps.push(log.scrollHeight - log.scrollTop - log.clientHeight);
                    }
                    requestAnimationFrame(tick);
                };
                requestAnimationFrame(tick);
            }"""
        )
        send(page, "What does sync error NB-1042 mean?")
        answer = page.locator("article.from-assistant").last
        last_source = answer.locator(".citations a").last
        expect(last_source).to_be_in_viewport()
        expect(answer.locator(".thumb").first).to_be_in_viewport()
        gaps = page.evaluate("window.__gaps")
        assert len(gaps) >= 10 and max(gaps) < 40, gaps
        assert page.evaluate(GAP_JS) < 2
        expect(page.locator("#jump")).to_be_hidden()

        # A reader who scrolls up to read stays where they are; a button offers the way back.
        searched_then_answered(fake_model)
        send(page, "And NB-1043?")
        streaming = page.locator("article.from-assistant.streaming")
        expect(streaming).to_have_count(1)
        page.wait_for_function(
            "() => document.querySelector('article.from-assistant.streaming')"
            ".textContent.includes('Paragraph 6:')"
        )
        page.locator("#log").hover()
        page.mouse.wheel(0, -400)
        page.wait_for_function("() => document.getElementById('log').scrollTop > 0")
        page.wait_for_timeout(100)
        held = page.evaluate("document.getElementById('log').scrollTop")
        second = page.locator("article.from-assistant").nth(1)
        expect(second).not_to_have_class(re.compile(r"\bstreaming\b"))
        expect(second.locator(".citations a").last).to_be_attached()
        assert abs(page.evaluate("document.getElementById('log').scrollTop") - held) <= 1
        jump = page.locator("#jump")
        expect(jump).to_be_visible()
        jump.click()
        expect(second.locator(".citations a").last).to_be_in_viewport()
        expect(jump).to_be_hidden()
        expect(page.locator("#message")).to_be_focused()
    finally:
        context.close()
