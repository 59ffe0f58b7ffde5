"""One set of Markdown rules for the staff pages (ops/markdown.py) and the customer's page
(static/chat/markdown.js): both read static/chat/markdown-rules.json, and neither adds a tag,
an attribute or a link scheme of its own. (tests/browser/test_chat_rendering.py renders the same
texts with both and compares the results.)"""

from __future__ import annotations

import json
import re

from ops import markdown
from ops.markdown import link_allowed

ROOT = markdown.RULES_PATH.parents[2]
RULES = json.loads(markdown.RULES_PATH.read_text())
SCRIPT = (ROOT / "static" / "chat" / "markdown.js").read_text()


def test_the_staff_renderer_takes_its_allowlists_from_the_rules_file():
    headings = {f"h{n}" for n in range(1 + markdown.HEADING_SHIFT, 7)}
    assert set(RULES["tags"]) | headings == markdown.ALLOWED_TAGS
    assert {t: set(a) for t, a in RULES["attributes"].items()} == markdown.ALLOWED_ATTRIBUTES
    assert {"http", "https", "mailto"} == markdown.LINK_SCHEMES
    parser = markdown.MessageMarkdown()
    for option, value in RULES["markdown"]["options"].items():
        assert parser.options[option] == value
    assert {"table", "strikethrough"} <= set(parser.get_active_rules()["block"]) | set(
        parser.get_active_rules()["inline"]
    )


def test_the_page_renderer_reads_the_same_file_and_lists_nothing_of_its_own():
    assert 'fetch(new URL("./markdown-rules.json", import.meta.url))' in SCRIPT
    # Its allowlists come from the rules object; no tag list or scheme of its own.
    for key in ("rules.tags", "rules.attributes", "rules.linkPrefixes", "rules.markdown.options"):
        assert key in SCRIPT
    assert not re.search(r'"(?:javascript|data|vbscript|ftp):', SCRIPT)
    assert not re.search(r'\[\s*"p"\s*,', SCRIPT)
    # Heading shift is each page's own, and equal today.
    shift = re.search(r"export const HEADING_SHIFT = (\d);", SCRIPT)
    assert shift and int(shift.group(1)) == markdown.HEADING_SHIFT


def test_link_prefixes_allow_web_and_mail_only():
    assert RULES["linkPrefixes"] == ["http://", "https://", "mailto:"]
    for url in ("https://example.com/a", "HTTP://EXAMPLE.COM", "mailto:help@example.com"):
        assert link_allowed(url)
    for url in ("javascript:alert(1)", "https:///x", "//evil.example", "/admin/", "mailto: x", ""):
        assert not link_allowed(url)


def test_the_vendored_libraries_carry_version_and_licence():
    vendor = ROOT / "static" / "vendor"
    for name, build in (
        ("markdown-it", "markdown-it.esm.min.mjs"),
        ("dompurify", "purify.es.mjs"),
    ):
        version = (vendor / name / "VERSION").read_text().strip()
        assert re.fullmatch(r"\d+\.\d+\.\d+", version)
        assert (vendor / name / "LICENSE").stat().st_size > 500
        source = (vendor / name / build).read_text()
        assert "sourceMappingURL" not in source  # the maps are not shipped
        # The build is the version the VERSION file names.
        assert f"markdown-it {version}" in source or f'DOMPurify.version = "{version}"' in source
