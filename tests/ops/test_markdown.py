"""The staff pages' Markdown renderer: what a customer or a model writes comes out as inert,
sanitised HTML, and the Markdown staff read (tables, steps, code) keeps its shape."""

from __future__ import annotations

import re

import pytest
from django.utils.safestring import SafeString

from ops.markdown import render_markdown

LINK_ATTRS = 'target="_blank" rel="noopener noreferrer nofollow"'


def tags(html: str) -> list[str]:
    """Every tag name in ``html``, in order (closing tags as "/name")."""
    return re.findall(r"<(/?[a-z0-9]+)", html)


def test_output_is_a_safe_string():
    assert isinstance(render_markdown("**hi**"), SafeString)
    assert render_markdown("") == ""


def test_a_script_tag_is_shown_as_text():
    html = render_markdown("<script>alert('xss')</script>")
    assert html == "<p>&lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt;</p>\n"


def test_an_image_tag_with_an_event_handler_is_shown_as_text():
    html = render_markdown("<img src=x onerror=alert(1)>")
    assert html == "<p>&lt;img src=x onerror=alert(1)&gt;</p>\n"
    assert "<img" not in html


@pytest.mark.parametrize(
    "text",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](java&#x09;script:alert(1))",
        "[x](data:text/html,<script>alert(1)</script>)",
        "[x](vbscript:msgbox(1))",
        "<javascript:alert(1)>",
        "[x](/admin/auth/user/)",  # relative: it would act inside the admin
        "[x](//evil.example/)",
    ],
)
def test_links_other_than_web_and_mail_stay_text(text):
    html = render_markdown(text)
    assert "<a" not in html
    assert "href" not in html
    assert "<script" not in html


def test_raw_html_a_customer_types_is_inert():
    typed = (
        '<a href="javascript:alert(1)" onclick="steal()">click</a>\n\n'
        '<div style="position:fixed" onmouseover="x()">hover</div>\n\n'
        "<iframe src=https://evil.example></iframe><!-- hidden -->"
        "<svg onload=alert(1)></svg><style>body{display:none}</style>"
    )
    html = render_markdown(typed)
    assert tags(html) == ["p", "/p", "p", "/p", "p", "/p"]
    assert "&lt;a href=" in html and "&lt;iframe" in html and "&lt;!-- hidden --&gt;" in html
    for dangerous in ("<a", "<div", "<iframe", "<svg", "<style", "<!--"):
        assert dangerous not in html


def test_web_and_mail_links_open_outside_with_rel():
    html = render_markdown(
        "See [the guide](https://example.com/a?b=1&c=2) or <mailto:help@example.com>"
    )
    assert html == (
        f'<p>See <a href="https://example.com/a?b=1&amp;c=2" {LINK_ATTRS}>the guide</a> or '
        f'<a href="mailto:help@example.com" {LINK_ATTRS}>mailto:help@example.com</a></p>\n'
    )


def test_bare_urls_are_not_turned_into_links():
    assert render_markdown("www.example.com and https://example.com") == (
        "<p>www.example.com and https://example.com</p>\n"
    )


def test_an_image_is_a_link_to_it_never_an_img():
    html = render_markdown("![tracking pixel](https://t.example/p.gif?u=1)")
    assert html == f'<p><a href="https://t.example/p.gif?u=1" {LINK_ATTRS}>tracking pixel</a></p>\n'
    linked = render_markdown("[![logo](https://x.example/i.png)](https://y.example/)")
    assert linked == f'<p><a href="https://y.example/" {LINK_ATTRS}>logo</a></p>\n'
    assert "<img" not in render_markdown("![x](data:image/png;base64,AAAA)")


def test_a_table_renders_with_header_and_data_cells():
    html = render_markdown("| Plan | Price |\n|------|------:|\n| Basic | 5 € |\n| Pro | 12 € |")
    assert tags(html) == [
        "table", "thead", "tr", "th", "/th", "th", "/th", "/tr", "/thead",
        "tbody", "tr", "td", "/td", "td", "/td", "/tr", "tr", "td", "/td", "td", "/td", "/tr",
        "/tbody", "/table",
    ]  # fmt: skip
    assert "<th>Plan</th>" in html and "<td>12 €</td>" in html
    assert "style" not in html  # the alignment's inline style is not kept


def test_numbered_steps_stay_one_list_with_their_start():
    steps = render_markdown("1. Open **Settings**\n2. Click *Billing*\n\n3. Press `Save`")
    assert tags(steps).count("ol") == 1
    assert steps.startswith("<ol>\n<li>") and steps.count("<li>") == 3
    later = render_markdown("4. Fourth step\n5. Fifth step")
    assert later == '<ol start="4">\n<li>Fourth step</li>\n<li>Fifth step</li>\n</ol>\n'


def test_a_fenced_code_block_is_pre_code_and_ends_at_its_fence():
    html = render_markdown("```python\nprint('<b>')\n```\nAfter the code.")
    assert html == (
        "<pre><code>print(&#x27;&lt;b&gt;&#x27;)\n</code></pre>\n<p>After the code.</p>\n"
    )


def test_emphasis_strikethrough_quotes_and_rules():
    html = render_markdown("**bold** *it* ~~gone~~ `code`\n\n> quoted\n\n---")
    assert html == (
        "<p><strong>bold</strong> <em>it</em> <del>gone</del> <code>code</code></p>\n"
        "<blockquote>\n<p>quoted</p>\n</blockquote>\n<hr>\n"
    )


def test_headings_sit_below_the_admin_pages_own():
    assert render_markdown("# Title\n## Sub\n###### Small") == (
        "<h3>Title</h3>\n<h4>Sub</h4>\n<h6>Small</h6>\n"
    )
