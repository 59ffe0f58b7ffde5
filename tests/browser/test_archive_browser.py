"""The archive browser in Chromium against the real server: a customer's conversation goes through
the real REST API, ends (archived) and expires (its rows deleted); staff sign in, find it by
userId, open it, read the transcript checked against its sha256, restore it through the
confirmation, and see the session back in the session list, marked restored. The same pages at
phone width (light and dark) do not scroll sideways.

Screenshots go to ``SHOTS`` (default: the test's temporary folder) as ``archive-*.png``.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import (
    NO_OVERFLOW_JS,
    SignIn,
    admin_sign_in,
    manage_shell,
    offline_server,
)
from tests.fakes.live_server import LiveServer

pytestmark = pytest.mark.browser

USERNAME = "rita"
PASSWORD = "correct horse battery staple"
QUESTION = "How do I reset my password?"
PERMISSIONS = (
    "view_sessionarchive",
    "change_sessionarchive",
    "view_chatsession",
    "view_message",
    "view_handoff",
)
# Elements that reach past the right edge of the window (the culprits of a sideways scroll).
WIDE_JS = """() => Array.from(document.querySelectorAll("body *"))
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
    .slice(0, 8).map((e) => `${e.tagName}.${e.className}#${e.id}`)"""


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with offline_server(tmp_path_factory.mktemp("archives")) as server:
        yield server


@pytest.fixture(scope="module")
def staff_account(app_server: LiveServer) -> None:
    """Staff with the archive permissions and the session views: no superuser."""
    manage_shell(
        app_server,
        "from django.contrib.auth.models import Permission, User\n"
        f"user = User.objects.create_user({USERNAME!r}, password={PASSWORD!r}, is_staff=True)\n"
        f"user.user_permissions.add(*Permission.objects.filter(codename__in={PERMISSIONS!r}))\n",
    )


def call(server: LiveServer, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{server.base_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def archived_conversation(server: LiveServer, user_id: str) -> str:
    """A conversation through the REST API, ended (which archives it) and then expired as beat
    would expire it (its rows deleted once the archive reads back): in its archive only."""
    session_id = str(call(server, "POST", "/api/session", {"userId": user_id})["sessionId"])
    call(server, "POST", "/api/chat", {"sessionId": session_id, "message": QUESTION})
    call(server, "DELETE", f"/api/session/{session_id}")
    out = manage_shell(
        server,
        "from datetime import timedelta\nfrom django.utils import timezone\n"
        "from chat.lifecycle import expire_sessions\nfrom chat.models import ChatSession\n"
        f"ChatSession.objects.filter(pk={session_id!r}).update("
        "expires_at=timezone.now() - timedelta(seconds=1))\n"
        f"expire_sessions()\nprint(ChatSession.objects.filter(pk={session_id!r}).count())",
    )
    assert out == "0", out
    return session_id


@pytest.fixture
def sign_in(browser: Browser, app_server: LiveServer, staff_account: None) -> Iterator[SignIn]:
    with admin_sign_in(browser, app_server, USERNAME, PASSWORD) as open_signed_in:
        yield open_signed_in


def test_staff_find_read_and_restore_an_archived_conversation(
    sign_in: SignIn, app_server: LiveServer, shots: Path
) -> None:
    user_id = f"cust-{uuid.uuid4().hex[:8]}"
    session_id = archived_conversation(app_server, user_id)
    other = archived_conversation(app_server, f"cust-{uuid.uuid4().hex[:8]}")

    page = sign_in(viewport={"width": 1280, "height": 900})
    page.get_by_role("link", name="Archives").first.click()
    page.wait_for_url(re.compile(r"/admin/chat/sessionarchive/$"))
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.screenshot(path=shots / "archive-list-desktop.png", full_page=True)

    page.locator("#searchbar").fill(user_id)
    page.locator("#searchbar").press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(session_id)
    expect(rows.first).not_to_contain_text(other)
    expect(rows.first.locator(".integrity-badge")).to_have_text("Intact")

    # The range of days keeps the search; today holds it, tomorrow does not.
    today = date.today().isoformat()
    page.locator("#archive-since").fill(today)
    page.locator("#archive-until").fill(today)
    page.get_by_role("button", name="Show these days").click()
    expect(page.locator("#searchbar")).to_have_value(user_id)
    expect(rows).to_have_count(1)
    page.screenshot(path=shots / "archive-search-desktop.png", full_page=True)

    rows.first.locator("td.field-key_link a").click()
    expect(page.locator("#archive-intact")).to_contain_text("matches its sha256")
    transcript = page.locator("#archive-transcript table.transcript")
    expect(transcript.locator("tr.transcript-user").first).to_contain_text(QUESTION)
    expect(transcript.locator("tr.transcript-assistant")).to_have_count(1)
    page.screenshot(path=shots / "archive-page-desktop.png", full_page=True)

    page.locator("#restore").click()
    expect(page.locator("#archive-confirm")).to_contain_text(f"Restore session {session_id}")
    page.screenshot(path=shots / "archive-confirm-desktop.png", full_page=True)
    page.locator("#confirm-restore").click()
    expect(page.locator("ul.messagelist")).to_contain_text(f"Restored session {session_id}")
    expect(page.locator("#restored-banner")).to_contain_text(f"by {USERNAME} at")
    expect(page.locator("#restore")).to_have_count(0)
    page.screenshot(path=shots / "archive-restored-desktop.png", full_page=True)

    page.goto("/admin/chat/chatsession/")
    row = page.locator("#result_list tbody tr", has_text=session_id)
    expect(row.locator(".archive-state")).to_have_text("Restored from archive (read-only)")
    page.screenshot(path=shots / "archive-session-list-desktop.png", full_page=True)

    row.locator("th a, td a").first.click()
    expect(page.locator("#restored-banner")).to_contain_text(": read-only.")
    expect(page.locator("#restored-banner #release")).to_be_visible()
    page.screenshot(path=shots / "archive-session-page-desktop.png", full_page=True)

    # The agent's view of it: the banner, the transcript, and nothing to write with.
    page.goto(f"/admin/ops/conversations/{session_id}/")
    expect(page.locator("#restored-banner")).to_contain_text(f"by {USERNAME} at")
    expect(page.locator(".conversation-main")).to_contain_text(QUESTION)
    expect(page.locator("#note-form")).to_be_hidden()
    expect(page.locator("#reply-form")).to_have_count(0)
    page.screenshot(path=shots / "archive-conversation-desktop.png", full_page=True)

    # The client API still does not know the id.
    with pytest.raises(urllib.error.HTTPError) as refused:
        call(app_server, "GET", f"/api/session/{session_id}")
    assert refused.value.code == 404


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_at_phone_width_the_archive_pages_do_not_scroll_sideways(
    sign_in: SignIn, app_server: LiveServer, shots: Path, scheme: str
) -> None:
    user_id = f"cust-{uuid.uuid4().hex[:8]}"
    archived_conversation(app_server, user_id)
    page = sign_in(viewport={"width": 390, "height": 844}, color_scheme=scheme)

    page.goto(f"/admin/chat/sessionarchive/?q={user_id}")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.screenshot(path=shots / f"archive-list-390-{scheme}.png", full_page=True)
    assert page.evaluate(NO_OVERFLOW_JS), page.evaluate(WIDE_JS)

    page.goto("/admin/chat/sessionarchive/?since=2024-02-30")
    expect(page.locator("ul.messagelist")).to_contain_text("“since” must be a date as YYYY-MM-DD")
    page.screenshot(path=shots / f"archive-bad-date-390-{scheme}.png", full_page=True)
    assert page.evaluate(NO_OVERFLOW_JS), page.evaluate(WIDE_JS)

    page.goto(f"/admin/chat/sessionarchive/?q={user_id}")
    page.locator("#result_list tbody tr td.field-key_link a").click()
    expect(page.locator("#archive-transcript")).to_contain_text(QUESTION)
    page.screenshot(path=shots / f"archive-page-390-{scheme}.png", full_page=True)
    assert page.evaluate(NO_OVERFLOW_JS), page.evaluate(WIDE_JS)

    page.locator("#restore").click()
    expect(page.locator("#archive-confirm")).to_be_visible()
    page.screenshot(path=shots / f"archive-confirm-390-{scheme}.png", full_page=True)
    assert page.evaluate(NO_OVERFLOW_JS), page.evaluate(WIDE_JS)


def archive_key(server: LiveServer, session_id: str) -> str:
    return manage_shell(
        server,
        "from chat.models import SessionArchive\n"
        f"print(SessionArchive.objects.get(session_id={session_id!r}).key)",
    )


def test_a_tampered_archive_is_shown_loudly_and_never_as_a_transcript(
    sign_in: SignIn, app_server: LiveServer, shots: Path
) -> None:
    user_id = f"cust-{uuid.uuid4().hex[:8]}"
    session_id = archived_conversation(app_server, user_id)
    stored = app_server.var_dir / "archives" / archive_key(app_server, session_id)
    stored.write_bytes(stored.read_bytes()[:-40])  # truncated in storage

    for width, name in ((1280, "desktop"), (390, "390")):
        page = sign_in(viewport={"width": width, "height": 900})
        page.goto(f"/admin/chat/sessionarchive/?q={user_id}")
        row = page.locator("#result_list tbody tr")
        row.locator("td.field-key_link a").click()
        problem = page.locator("#archive-problem")
        expect(problem).to_contain_text("Altered: the stored object is not the archive")
        expect(problem).to_contain_text("does not match its record")
        expect(page.locator("#archive-transcript")).to_have_count(0)
        expect(page.locator("body")).not_to_contain_text(QUESTION)
        expect(page.locator("#restore")).to_have_count(0)
        expect(page.locator("#download-anyway")).to_be_visible()
        assert page.evaluate(NO_OVERFLOW_JS), page.evaluate(WIDE_JS)
        page.screenshot(path=shots / f"archive-altered-{name}.png", full_page=True)

        page.goto(f"/admin/chat/sessionarchive/?q={user_id}")
        badge = page.locator("#result_list tbody tr .integrity-badge")
        expect(badge).to_have_text("Altered (sha256 mismatch)")
        page.screenshot(path=shots / f"archive-list-altered-{name}.png", full_page=True)
