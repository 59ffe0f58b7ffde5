"""Subject requests in Chromium against the real server: a customer chats, asks for a person
with their contact address and ends the conversation (so it is archived) through the real REST
API; a supervisor looks them up by that address, downloads the export, erases everything behind
the confirmation and reads the receipt. Afterwards the server's own database and archive folder
hold nothing of the customer, while another customer's conversation is untouched. The same pages
at phone width (light and dark) do not scroll sideways.

Screenshots go to ``SHOTS`` (default: the test's temporary folder) as ``subject-*.png``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import (
    NO_OVERFLOW_JS,
    WAIT_MS,
    SignIn,
    admin_sign_in,
    manage_shell,
    offline_server,
)
from tests.fakes.live_server import LiveServer

pytestmark = pytest.mark.browser

USERNAME = "sam"
PASSWORD = "correct horse battery staple"
EMAIL = "Jane.Doe@Example.com"
MARK = "Zanzibar parcel 81"
OTHER_MARK = "Reykjavik kettle 17"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with offline_server(tmp_path_factory.mktemp("subjects")) as server:
        yield server


@pytest.fixture(scope="module")
def supervisor_account(app_server: LiveServer) -> None:
    """A staff member of the "Supervisors" group that ``migrate`` made: no superuser."""
    manage_shell(
        app_server,
        "from django.contrib.auth.models import Group, User\n"
        f"user = User.objects.create_user({USERNAME!r}, password={PASSWORD!r}, is_staff=True)\n"
        "user.groups.add(Group.objects.get(name='Supervisors'))\n",
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


def customer(server: LiveServer, *, user_id: str, text: str, email: str = "") -> str:
    """A conversation through the REST API: a question, a request for a person (with a contact
    address when given), then ended, which archives it. Returns its id."""
    session_id = str(call(server, "POST", "/api/session", {"userId": user_id})["sessionId"])
    call(server, "POST", "/api/chat", {"sessionId": session_id, "message": text})
    body = {"reason": "Please call me back", **({"contactEmail": email} if email else {})}
    call(server, "POST", f"/api/session/{session_id}/handoff", body)
    call(server, "DELETE", f"/api/session/{session_id}")
    return session_id


def held(server: LiveServer, **who: str) -> dict[str, int]:
    """``find_holdings(...).counts()`` in the server's database."""
    out = manage_shell(
        server,
        "import json\nfrom ops.subjects import find_holdings, subject_from\n"
        f"print(json.dumps(find_holdings(subject_from(**{who!r})).counts()))",
    )
    return dict(json.loads(out))


def archive_files(server: LiveServer) -> list[Path]:
    return sorted(p for p in (server.var_dir / "archives").rglob("*.json.gz"))


def wait_for_archives(server: LiveServer, count: int) -> list[Path]:
    """Ending archives the conversation in a task (run eagerly by the live server, after the
    commit): polled for a few seconds on a loaded machine."""
    deadline = time.monotonic() + WAIT_MS / 1000
    files = archive_files(server)
    while len(files) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        files = archive_files(server)
    assert len(files) == count, files
    return files


@pytest.fixture
def sign_in(browser: Browser, app_server: LiveServer, supervisor_account: None) -> Iterator[SignIn]:
    with admin_sign_in(browser, app_server, USERNAME, PASSWORD) as open_signed_in:
        yield open_signed_in


def count_of(page: Page, label: str) -> str:
    row = page.locator(".subj-counts tr").filter(has=page.locator("th", has_text=label)).first
    return row.locator("td.subj-count").inner_text()


def test_a_supervisor_exports_and_erases_a_customer_found_by_address(
    sign_in: SignIn, app_server: LiveServer, shots: Path
) -> None:
    jane = customer(app_server, user_id="cust-jane", text=f"Where is my {MARK}?", email=EMAIL)
    other = customer(app_server, user_id="cust-olaf", text=f"My {OTHER_MARK} broke.")
    wait_for_archives(app_server, 2)
    page = sign_in(viewport={"width": 1280, "height": 900})

    page.locator("#ops-subjects-link").get_by_role("link", name="Subject requests").click()
    page.wait_for_url("**/admin/ops/subjects/")
    page.get_by_label("or e-mail address").fill(EMAIL.upper())
    page.get_by_label("Your reference").fill("DSAR-7")
    page.get_by_role("button", name="Look up").click()

    expect(page.locator("#subject-preview")).to_be_visible()
    assert page.url.endswith("/admin/ops/subjects/")  # the address is in no URL
    assert count_of(page, "Sessions in the database") == "1"
    assert count_of(page, "Archives") == "1" and count_of(page, "Tickets") == "1"
    assert int(count_of(page, "Messages")) >= 2
    expect(page.locator("#subject-sessions tr.subj-session")).to_have_count(1)
    expect(page.locator(f'tr[data-session="{jane}"] a')).to_have_text(jane)
    expect(page.locator("#other-user-ids code")).to_have_text(["cust-jane"])
    page.screenshot(path=shots / "subject-preview-desktop.png", full_page=True)

    with page.expect_download() as downloaded:
        page.get_by_role("button", name="Download export (JSON)").click()
    download = downloaded.value
    assert re.fullmatch(r"subject-export-\d+\.json", download.suggested_filename)
    document = json.loads(Path(download.path()).read_text())
    assert document["subject"] == {"matchedBy": "email", "value": EMAIL.upper()}
    assert [s["sessionId"] for s in document["sessions"]] == [jane]
    assert document["sessions"][0]["messages"][0]["content"] == f"Where is my {MARK}?"
    (archive,) = document["archives"]
    assert archive["document"]["messages"][0]["content"] == f"Where is my {MARK}?"
    assert document["tickets"][0]["userEmail"] == EMAIL  # as the customer gave it

    page.get_by_role("button", name="Erase…").click()
    expect(page.locator("#confirm-erase")).to_be_visible()
    page.screenshot(path=shots / "subject-confirm-desktop.png", full_page=True)
    page.get_by_label("Type the e-mail address again to confirm").fill("jane.doe@example.org")
    page.get_by_role("button", name="Erase for good").click()
    expect(page.locator("#subj-confirm-errors")).to_contain_text("Type the e-mail address again")
    assert held(app_server, email=EMAIL)["sessions"] == 1  # a wrong confirmation erased nothing

    page.get_by_label("Type the e-mail address again to confirm").fill(EMAIL.lower())
    page.get_by_role("button", name="Erase for good").click()

    page.wait_for_url(re.compile(r"/admin/ops/subjects/receipts/\d+/$"))
    expect(page.locator("#subject-receipt h2")).to_have_text(re.compile(r"Erasure #\d+: completed"))
    expect(page.locator("#receipt-by")).to_have_text(USERNAME)
    expect(page.locator("#receipt-matched-by")).to_have_text("E-mail address")
    expect(page.locator("#receipt-reference")).to_have_text("DSAR-7")
    assert count_of(page, "Archive objects deleted from storage") == "1"
    receipt_text = page.locator("#content").inner_text()
    for secret in (EMAIL, EMAIL.lower(), MARK, jane):
        assert secret.lower() not in receipt_text.lower(), secret
    page.screenshot(path=shots / "subject-receipt-desktop.png", full_page=True)
    page.get_by_role("link", name="All receipts").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)  # the export, then the erasure
    expect(rows.first).to_contain_text("DSAR-7")
    assert "jane" not in page.locator("#result_list").inner_text().lower()
    page.screenshot(path=shots / "subject-receipts-desktop.png", full_page=True)

    # Nothing is found by the address any more. Her userId still has its usage days (counted
    # per userId, not per conversation): the preview pointed at it, and looking it up erases them.
    assert set(held(app_server, email=EMAIL).values()) == {0}
    left = held(app_server, user_id="cust-jane")
    assert {k: v for k, v in left.items() if v} == {"usage_days": 1}
    page.goto("/admin/ops/subjects/")
    page.get_by_label("userId").fill("cust-jane")
    page.get_by_role("button", name="Look up").click()
    assert count_of(page, "Usage days") == "1"
    page.get_by_role("button", name="Erase…").click()
    page.get_by_label("Type the userId again to confirm").fill("cust-jane")
    page.get_by_role("button", name="Erase for good").click()
    page.wait_for_url(re.compile(r"/admin/ops/subjects/receipts/\d+/$"))
    assert set(held(app_server, user_id="cust-jane").values()) == {0}
    # Olaf's conversation and archive are still there.
    files = archive_files(app_server)
    assert [f.name for f in files] == [f"{other}-ended.json.gz"]
    assert held(app_server, user_id="cust-olaf")["archives"] == 1


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_at_phone_width_the_pages_fit(
    sign_in: SignIn, app_server: LiveServer, shots: Path, scheme: str
) -> None:
    user_id = f"cust-phone-{scheme}-with-a-rather-long-identifier-0123456789"
    customer(app_server, user_id=user_id, text=f"Phone {MARK}", email=f"{scheme}@example.com")
    page = sign_in(viewport={"width": 390, "height": 844}, color_scheme=scheme)

    page.goto("/admin/ops/subjects/")
    page.get_by_label("userId").fill(user_id)
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#subject-preview")).to_be_visible()
    page.screenshot(path=shots / f"subject-preview-390-{scheme}.png", full_page=True)
    assert page.evaluate(NO_OVERFLOW_JS)

    page.get_by_role("button", name="Erase…").click()
    expect(page.locator("#confirm-erase")).to_be_visible()
    page.screenshot(path=shots / f"subject-confirm-390-{scheme}.png", full_page=True)
    assert page.evaluate(NO_OVERFLOW_JS)

    page.get_by_label("Type the userId again to confirm").fill(user_id)
    page.get_by_role("button", name="Erase for good").click()
    page.wait_for_url(re.compile(r"/admin/ops/subjects/receipts/\d+/$"))
    page.screenshot(path=shots / f"subject-receipt-390-{scheme}.png", full_page=True)
    assert page.evaluate(NO_OVERFLOW_JS)

    page.goto("/admin/ops/subjects/")
    page.get_by_label("userId").fill("")
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#subj-form-error")).to_have_text(
        "Give the person's userId or their e-mail address."
    )
    page.screenshot(path=shots / f"subject-error-390-{scheme}.png", full_page=True)
    assert page.evaluate(NO_OVERFLOW_JS)
