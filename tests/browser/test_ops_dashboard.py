"""The ops pages of issue 15 in Chromium against the real server: the service dashboard after
real turns (tiles, SVG charts, ranges, a bad range), the same page at phone width in dark mode,
the knowledge-gap page grouping the questions the help centre could not answer, and the alert
banner while an alert fires and after it resolves.

The server is the embedded default with no model configured, so the offline assistant answers
from the starter knowledge base: deterministic, and whether an answer cites an article is what
the gap page reads. Turns go through the real REST API and the chat page; the server flushes
its metrics to its database every METRICS_FLUSH_SECONDS, so the pages are polled until they
show them. Alerts are evaluated as beat would, by ``evaluate_alerts`` in another process on the
server's database, never written by hand.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import (
    ROOT,
    SignIn,
    admin_sign_in,
    manage_shell,
    open_chat,
    send,
)
from tests.fakes.live_server import LiveServer

pytestmark = pytest.mark.browser

USERNAME = "olivia"
PASSWORD = "correct horse battery staple"
# The server flushes every 2 s by default; a loaded machine may take a few flushes longer.
FLUSH_WAIT_SECONDS = 15.0
RANGE_KEYS = ("1h", "24h", "7d", "30d")
# Questions the starter knowledge base answers (the offline assistant cites an article) ...
ANSWERED = ("How do I reset my password?", "How do I share a folder?", "What are the plans?")
# ... and one it cannot: it has no German articles.
UNANSWERED = "Wie kann ich mein Konto löschen?"

TILES_JS = """() => Object.fromEntries(Array.from(document.querySelectorAll(".dash-tile")).map(
    (tile) => [tile.querySelector(".dash-tile-label").textContent.trim(), [
        tile.querySelector(".dash-tile-value").textContent.trim(),
        tile.querySelector(".dash-tile-note").textContent.trim(),
    ]]))"""
# Each chart's title, the size its svg is drawn at, and each bar's tooltip.
CHARTS_JS = """() => Array.from(document.querySelectorAll(".dash-charts .dash-card")).map(
    (card) => {
        const box = card.querySelector("figure.chart svg").getBoundingClientRect();
        return {
            title: card.querySelector("h2").textContent.trim(),
            width: box.width,
            height: box.height,
            bars: Array.from(card.querySelectorAll("svg rect.bar > title"))
                .map((title) => title.textContent),
        };
    })"""
# Axis labels that reach outside their svg (which clips them), with half a pixel of rounding.
CLIPPED_AXIS_TEXT_JS = """() => Array.from(document.querySelectorAll("figure.chart svg")).flatMap(
    (svg) => {
        const outer = svg.getBoundingClientRect();
        return Array.from(svg.querySelectorAll("text.axis")).filter((text) => {
            const box = text.getBoundingClientRect();
            return box.left < outer.left - 0.5 || box.right > outer.right + 0.5
                || box.top < outer.top - 0.5 || box.bottom > outer.bottom + 0.5;
        }).map((text) => `${svg.getAttribute("aria-label")}: ${text.textContent}`);
    })"""
# Neighbouring x-axis labels that run into each other (half a pixel of rounding allowed).
OVERLAPPING_AXIS_LABELS_JS = """() => Array.from(document.querySelectorAll("figure.chart svg"))
    .flatMap((svg) => {
        const labels = Array.from(svg.querySelectorAll("text.axis"))
            .filter((text) => Number(text.getAttribute("y")) > 180)  // the x axis, at the foot
            .map((text) => ({ text: text.textContent, box: text.getBoundingClientRect() }))
            .sort((a, b) => a.box.left - b.box.left);
        return labels.slice(1).map((label, i) => [labels[i], label])
            .filter(([left, right]) => left.box.right > right.box.left + 0.5)
            .map(([a, b]) => `${svg.getAttribute("aria-label")}: ${a.text} | ${b.text}`);
    })"""
# Line charts whose table has values but whose svg draws nothing: a lone point is a polyline
# of one vertex (which paints nothing) unless it has a dot.
INVISIBLE_LINE_CHARTS_JS = """() => Array.from(document.querySelectorAll(".dash-charts .dash-card"))
    .filter((card) => card.querySelector("svg polyline"))
    .filter((card) => !card.querySelector("svg circle") && !Array.from(
        card.querySelectorAll("svg polyline")).some(
        (line) => line.getAttribute("points").trim().split(/\\s+/).length > 1))
    .map((card) => card.querySelector("h2").textContent.trim())"""
COLOURS_JS = """() => {
    const style = (selector) => getComputedStyle(document.querySelector(selector));
    return {
        body: style("body").backgroundColor,
        tile: style(".dash-tile").backgroundColor,
        tileValue: style(".dash-tile-value").color,
        tileLabel: style(".dash-tile-label").color,
        tileNote: style(".dash-tile-note").color,
    };
}"""
OVERFLOW_JS = """() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    svgRights: Array.from(document.querySelectorAll("figure.chart svg")).map(
        (svg) => svg.getBoundingClientRect().right),
})"""


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Replaces the conftest's server (which talks to the fake model): no model at all, so the
    offline assistant answers. With REDIS_URL the metrics live in Redis, where another run's
    turns would be counted too: this run gets a prefix of its own."""
    env = {"RATE_LIMITS_ENABLED": "false"}
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
        env["METRICS_PREFIX"] = f"supportbot-test-{uuid.uuid4().hex[:12]}:metrics"
    server = LiveServer(tmp_path_factory.mktemp("ops"), env=env).prepare()
    try:
        server.start()
        yield server
    finally:
        server.close()


class Traffic:
    """Customers' turns through the server's real REST API, counted: the dashboard's figures
    are checked against this count (the module's server starts with an empty database)."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.turns = 0

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.server.base_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.load(response))

    def session(self) -> str:
        return self.server.create_session()

    def ask(self, message: str, session_id: str | None = None) -> dict[str, Any]:
        """One turn (in a new session unless given one); the answer as POST /api/chat gives it."""
        session_id = session_id or self.session()
        answer = self._post("/api/chat", {"sessionId": session_id, "message": message})
        self.turns += 1
        assert answer["sessionId"] == session_id
        assert answer["metadata"]["aiModel"] == "offline-assistant"
        return answer


@pytest.fixture(scope="module")
def traffic(app_server: LiveServer) -> Traffic:
    return Traffic(app_server)


@pytest.fixture(scope="module")
def staff_account(app_server: LiveServer) -> None:
    """A superuser: the gap page's "Write an article" needs the add-article permission."""
    manage_shell(
        app_server,
        "from django.contrib.auth.models import User\n"
        f"User.objects.create_superuser({USERNAME!r}, 'olivia@example.com', {PASSWORD!r}, "
        "first_name='Olivia')\n",
    )


@pytest.fixture
def sign_in(browser: Browser, app_server: LiveServer, staff_account: None) -> Iterator[SignIn]:
    with admin_sign_in(browser, app_server, USERNAME, PASSWORD) as open_signed_in:
        yield open_signed_in


def evaluate_alerts(server: LiveServer, rules: dict[str, dict[str, Any]] | None) -> dict[str, str]:
    """Run ``ops.alerts.evaluate_alerts`` as beat would: another process on the server's
    database, with ``rules`` as its ALERT_RULES (None: the defaults)."""
    env = dict(server.env)
    if rules is not None:
        env["ALERT_RULES"] = json.dumps(rules)
    out = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "import json\nfrom ops.alerts import evaluate_alerts\n"
            "print(json.dumps(evaluate_alerts()))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.fixture
def no_alert_left(app_server: LiveServer) -> Iterator[None]:
    """A test that fails while its alert fires does not leave the banner to the tests after."""
    yield
    manage_shell(
        app_server,
        "from ops.models import Alert\n"
        "print(Alert.objects.filter(status='firing').update(status='resolved'))",
    )


def open_dashboard(page: Page, query: str = "") -> dict[str, list[str]]:
    """Load the dashboard; its tiles as label → [value, note]."""
    response = page.goto(f"/admin/ops/dashboard/{query}")
    assert response is not None and response.status == 200, response and response.text()
    return dict(page.evaluate(TILES_JS))


def wait_for_tile(page: Page, label: str, expected: list[str], query: str = "") -> None:
    """Reload the dashboard until its ``label`` tile shows ``expected`` ([value, note]): the
    server flushes its metrics every few seconds."""
    deadline = time.monotonic() + FLUSH_WAIT_SECONDS
    while True:
        tiles = open_dashboard(page, query)
        if tiles[label] == expected or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    assert tiles[label] == expected, tiles


def wait_for_turns(page: Page, count: int, query: str = "") -> dict[str, list[str]]:
    """Reload the dashboard until its Turns tile counts ``count`` turns; its tiles then."""
    wait_for_tile(page, "Turns", [f"{count:,}", f"{count:,} answered"], query)
    return dict(page.evaluate(TILES_JS))


def answered_in_turns_chart(chart: dict[str, Any]) -> int:
    """The sum of the "answered" bars of the Turns chart (tooltips read "<time>, answered: 3")."""
    total = 0
    for tip in chart["bars"]:
        found = re.fullmatch(r".+, answered: (\d+)", tip)
        if found:
            total += int(found.group(1))
    return total


def luminance(css_colour: str) -> float:
    """Relative luminance (0 black … 1 white) of a computed ``rgb()``/``rgba()`` colour."""
    found = re.match(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", css_colour)
    assert found, css_colour
    assert found.group(4) in (None, "1"), f"{css_colour} is see-through"

    def linear(value: str) -> float:
        c = int(value) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(found.group(i)) for i in (1, 2, 3))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# --- the tests ---------------------------------------------------------------------------------


def test_the_dashboard_shows_real_turns_in_its_tiles_and_charts_and_switches_range(
    sign_in: SignIn, traffic: Traffic
) -> None:
    for question in ANSWERED:
        answer = traffic.ask(question)
        assert answer["metadata"]["citations"], f"{question!r} should cite an article"
    page = sign_in()

    tiles = wait_for_turns(page, traffic.turns)
    assert tiles["Error rate"] == ["0 %", "0 failed"]
    assert tiles["No source"] == ["0 %", "0 answers"]
    assert tiles["Fallback rate"] == ["0 %", "0 answers"]
    charts = page.evaluate(CHARTS_JS)
    assert len(charts) >= 5
    assert [c["title"] for c in charts if not (c["width"] > 0 and c["height"] > 0)] == []
    assert charts[0]["title"] == "Turns per hour"
    assert answered_in_turns_chart(charts[0]) == traffic.turns
    expect(page.locator(".dash-range.selected")).to_have_text("Last 24 hours")
    for table in ("#breakers", "#models", "#tools", "#top-users", "#guards"):
        expect(page.locator(table)).to_be_visible()
    expect(page.locator("#models tbody tr")).to_have_count(1)
    expect(page.locator("#models tbody td").first).to_contain_text("offline")

    page.get_by_role("link", name="Last 7 days", exact=True).click()
    page.wait_for_url(re.compile(r"/admin/ops/dashboard/\?range=7d$"))
    expect(page.locator(".dash-range.selected")).to_have_text("Last 7 days")
    expect(page.locator(".dash-range.selected")).to_have_attribute("aria-current", "true")
    week = page.evaluate(CHARTS_JS)
    titles = [chart["title"] for chart in week]
    assert "Tokens per day" in titles and "Cost per day and per answer" in titles, titles
    assert answered_in_turns_chart(week[0]) == traffic.turns
    assert dict(page.evaluate(TILES_JS))["Turns"][0] == str(traffic.turns)

    response = page.goto("/admin/ops/dashboard/?range=bogus")
    assert response is not None and response.status == 400
    expect(page.locator("#dashboard-error")).to_have_text("range must be one of 1h, 24h, 7d, 30d.")
    expect(page.locator("figure.chart")).to_have_count(0)
    expect(page.locator(".dash-range.selected")).to_have_count(0)


def test_at_phone_width_in_dark_mode_nothing_overflows_and_the_page_is_dark(
    sign_in: SignIn, traffic: Traffic, tmp_path: Path
) -> None:
    traffic.ask(ANSWERED[0])  # the charts draw bars and lines, not "No data"
    page = sign_in(viewport={"width": 390, "height": 844}, color_scheme="dark")
    wait_for_turns(page, traffic.turns, "?range=1h")

    for key in RANGE_KEYS:
        open_dashboard(page, f"?range={key}")
        page.screenshot(path=tmp_path / f"dashboard-{key}-390-dark.png", full_page=True)
        sizes = page.evaluate(OVERFLOW_JS)
        assert sizes["scrollWidth"] <= sizes["innerWidth"] + 1, (key, sizes, tmp_path)
        assert len(sizes["svgRights"]) >= 5
        assert max(sizes["svgRights"]) <= 390, (key, sizes, tmp_path)
        assert page.evaluate(CLIPPED_AXIS_TEXT_JS) == [], (key, tmp_path)

    colours = page.evaluate(COLOURS_JS)
    assert luminance(colours["body"]) < 0.05, colours
    assert luminance(colours["tile"]) < 0.05, colours
    for text in ("tileValue", "tileLabel", "tileNote"):
        assert luminance(colours[text]) > 0.4, (text, colours)

    page.goto("/admin/ops/knowledge-gaps/")
    page.screenshot(path=tmp_path / "knowledge-gaps-390-dark.png", full_page=True)
    sizes = page.evaluate(OVERFLOW_JS)
    assert sizes["scrollWidth"] <= sizes["innerWidth"] + 1, (sizes, tmp_path)


def test_the_gap_page_groups_unanswered_and_disliked_questions_and_drafts_an_article(
    sign_in: SignIn, traffic: Traffic, page: Page
) -> None:
    asked_in = []
    for _ in range(2):
        answer = traffic.ask(UNANSWERED)
        assert answer["metadata"]["citations"] == []
        # Offline, a question in another language gets an honest hand-off, no source.
        assert "only answer in English" in answer["response"]
        asked_in.append(answer["sessionId"])

    # A cited answer the customer disliked, through the chat page's own thumb.
    disliked_in = open_chat(page)
    send(page, ANSWERED[0])
    traffic.turns += 1
    cited = page.locator("article.from-assistant")
    expect(cited.locator(".body")).to_contain_text("Source: Resetting or changing your password")
    down = cited.get_by_role("button", name="This did not help")
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")

    staff = sign_in()
    staff.goto("/admin/ops/knowledge-gaps/")
    german = staff.locator("section.gap").filter(has=staff.locator("h2", has_text=UNANSWERED))
    expect(german).to_have_count(1)
    expect(german.locator("h2")).to_have_text(f"2 \N{MULTIPLICATION SIGN} “{UNANSWERED}”")
    expect(german.locator(".gap-meta")).to_contain_text("2 conversations")
    expect(german.locator(".gap-meta")).to_contain_text("no source 2")
    links = german.locator(".gap-questions a")
    expect(links).to_have_text([UNANSWERED, UNANSWERED])
    hrefs = {links.nth(i).get_attribute("href") for i in range(2)}
    assert hrefs == {f"/admin/ops/conversations/{session_id}/" for session_id in asked_in}

    disliked = staff.locator("section.gap").filter(has=staff.locator("h2", has_text=ANSWERED[0]))
    expect(disliked.locator("h2")).to_have_text(f"1 \N{MULTIPLICATION SIGN} “{ANSWERED[0]}”")
    expect(disliked.locator(".gap-meta")).to_contain_text("thumbs down 1")
    expect(disliked.locator(".gap-questions a")).to_have_attribute(
        "href", f"/admin/ops/conversations/{disliked_in}/"
    )

    first = links.first.get_attribute("href")
    links.first.click()
    staff.wait_for_url(f"**{first}")
    expect(staff.locator("table.transcript tr.transcript-user")).to_contain_text(UNANSWERED)
    staff.go_back()

    german.get_by_role("link", name="Write an article").click()
    staff.wait_for_url(re.compile(r"/admin/tools/article/add/\?"))
    expect(staff.locator("#id_title")).to_have_value(UNANSWERED)
    expect(staff.locator("#id_content")).to_have_value(
        re.compile(r"Customers asked \(2 times\):\n- Wie kann ich mein Konto löschen\?\n")
    )

    # The vote is on the dashboard too, once the server has flushed it.
    wait_for_tile(staff, "Satisfaction", ["\N{EN DASH}", "0 ratings; thumbs 0 up, 1 down"])


def test_a_firing_alert_shows_a_banner_on_admin_pages_until_it_resolves(
    sign_in: SignIn, traffic: Traffic, app_server: LiveServer, no_alert_left: None
) -> None:
    traffic.ask(ANSWERED[1])
    page = sign_in()
    wait_for_turns(page, traffic.turns, "?range=1h")  # flushed: the evaluator can read it
    page.goto("/admin/")
    expect(page.locator("#alert-banner")).to_have_count(0)

    # Any real turn takes longer than 1 ms: with that threshold the p95 rule fires.
    fired = evaluate_alerts(app_server, {"latency_p95": {"threshold": 1, "min_samples": 1}})
    assert fired["latency_p95"] == "fired", fired
    assert [rule for rule, outcome in fired.items() if outcome == "fired"] == ["latency_p95"]

    summary = re.compile(
        r"Turn latency p95: turn p95 [\d,]+ ms over \d+ turns? \(threshold 1 ms\) "
        r"in the last 5 min\s+since \d\d:\d\d"
    )
    for path in ("/admin/", "/admin/ops/dashboard/"):
        page.goto(path)
        banner = page.locator("#alert-banner")
        expect(banner).to_be_visible()
        expect(banner.locator("> strong")).to_have_text("1 alert firing:")
        expect(banner.locator("li")).to_have_text(summary)
        expect(banner.get_by_role("link", name="Dashboard")).to_have_attribute(
            "href", "/admin/ops/dashboard/"
        )

    # The defaults again (20 s): the figure is back under the threshold, the alert resolves.
    assert evaluate_alerts(app_server, None)["latency_p95"] == "resolved"
    for path in ("/admin/", "/admin/ops/dashboard/"):
        page.goto(path)
        expect(page.locator("h1")).to_be_visible()
        expect(page.locator("#alert-banner")).to_have_count(0)


# --- two defects these tests found (since fixed in ops/charts.py) ----------------------------


def test_at_phone_width_the_axis_labels_do_not_run_into_each_other(
    sign_in: SignIn, tmp_path: Path
) -> None:
    page = sign_in(viewport={"width": 390, "height": 844})
    overlapping = {}
    for key in RANGE_KEYS:
        open_dashboard(page, f"?range={key}")
        page.screenshot(path=tmp_path / f"dashboard-{key}-390.png", full_page=True)
        overlapping[key] = page.evaluate(OVERLAPPING_AXIS_LABELS_JS)
    assert overlapping == {key: [] for key in RANGE_KEYS}, tmp_path


def test_every_line_chart_with_values_draws_them_in_every_range(
    sign_in: SignIn, traffic: Traffic
) -> None:
    traffic.ask(ANSWERED[2])
    page = sign_in()
    wait_for_turns(page, traffic.turns)
    open_dashboard(page, "?range=7d")
    hours_with_turns = [bar for bar in page.evaluate(CHARTS_JS)[0]["bars"] if "answered" in bar]
    if len(hours_with_turns) != 1:
        pytest.skip("the module's turns straddle an hour: no lone point to draw")
    invisible = {}
    for key in RANGE_KEYS:
        open_dashboard(page, f"?range={key}")
        invisible[key] = page.evaluate(INVISIBLE_LINE_CHARTS_JS)
    assert invisible == {key: [] for key in RANGE_KEYS}
