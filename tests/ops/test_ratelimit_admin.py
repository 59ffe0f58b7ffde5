"""The rate-limit page of the ops admin, on memory and on Redis: the configured limits, the
busiest keys (stored counters and the sessions-at-once limits, each with its client), recent
refusals, and a CSRF-protected reset that ends a client's live sessions only once confirmed;
staff with the permission only; Redis down and bad input are messages, not error pages."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat.models import ChatSession, SessionArchive
from chat.sessions import session_create
from ops import rate_limits
from supportbot import ratelimit, security
from supportbot.clients import client_label, ip_fingerprint
from supportbot.errors import ApiError

pytestmark = pytest.mark.django_db

KEY = "sess_x"
IP, OTHER_IP = "203.0.113.7", "198.51.100.2"
CONCURRENT = "ip_concurrent_sessions"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "redis"])
def storage(request, settings) -> Iterator[str]:
    """Each test runs on the memory storage and on Redis (when the run has one)."""
    settings.RATE_LIMITS_ENABLED = True
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    ratelimit.reset_backend()
    security.clear_recent()
    yield request.param
    ratelimit.reset_backend()
    security.clear_recent()


@pytest.fixture
def page() -> str:
    return reverse("ops:rate_limits")


def busy_rows(html: str) -> dict[tuple[str, str], str]:
    """(limit, key) -> the "used / limit" cell of each busy-key row."""
    rows = re.findall(
        r'<tr class="busy-key" id="[^"]*" data-limit="([^"]+)" data-key="([^"]+)">\s*'
        r"<td>[^<]*</td>\s*<td[^>]*><code[^>]*>[^<]*</code></td>\s*<td[^>]*>([^<]+)</td>",
        html,
    )
    return {(name, key): used for name, key, used in rows}


def busy_row(html: str, name: str, key: str) -> str:
    """The whole row of one busy key."""
    row = re.search(
        rf'<tr class="busy-key" id="[^"]*" data-limit="{name}" data-key="{re.escape(key)}">'
        r"(.*?)</tr>",
        html,
        re.S,
    )
    assert row is not None, f"no busy row for {name} {key}"
    return row.group(1)


def client_cell(row: str) -> str:
    cell = re.search(r'<td data-label="Client" class="rl-client">(.*?)</td>', row, re.S)
    assert cell is not None
    return " ".join(cell.group(1).split())


def open_session(customer: Client, ip: str, user_id: str = "") -> str:
    """A session opened through the real API from ``ip``."""
    body = json.dumps({"userId": user_id} if user_id else {})
    response = customer.post("/api/session", body, content_type="application/json", REMOTE_ADDR=ip)
    assert response.status_code == 201, response.content
    return response.json()["sessionId"]


def statuses(*ids: str) -> list[str]:
    found = dict(ChatSession.objects.filter(pk__in=ids).values_list("pk", "status"))
    return [found[i] for i in ids]


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_page_lists_every_configured_limit(admin_client: Client, storage, page, settings):
    settings.RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE = 30
    response = admin_client.get(page)
    assert response.status_code == 200
    html = response.text
    for spec in ratelimit.configured_limits().values():
        assert f'<tr data-limit="{spec.name}">' in html
        assert f"<code>{spec.setting}</code>" in html
    row = re.search(r'<tr data-limit="session_requests">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells == [
        "session_requests",
        "session",
        "requests",
        "30 per minute",
        "<code>RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE</code>",
        "yes",
    ]
    assert "Redis" in html if storage == "redis" else "this process only" in html


def test_page_says_when_limits_are_off(admin_client: Client, storage, page, settings):
    settings.RATE_LIMITS_ENABLED = False
    html = admin_client.get(page).text
    assert "off (RATE_LIMITS_ENABLED=false)" in html
    row = re.search(r'<tr data-limit="session_requests">(.*?)</tr>', html, re.S)
    assert row is not None and row.group(1).strip().endswith('<td data-label="Enabled">no</td>')


def test_busy_key_is_listed_and_reset_clears_it(admin_client: Client, storage, page, settings):
    settings.RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE = 30
    for _ in range(3):
        ratelimit.hit(("session_requests", KEY))
    html = admin_client.get(page).text
    assert busy_rows(html) == {("session_requests", KEY): "3 / 30 (10%)"}
    row = re.search(r'data-key="sess_x">(.*?)</tr>', html, re.S)
    assert row is not None
    assert re.search(r'<td data-label="Remaining">27</td>', row.group(1))
    resets_in = re.search(r"\(in (\d+) s\)", row.group(1))
    assert resets_in is not None and 0 < int(resets_in.group(1)) <= 60

    response = admin_client.post(page, {"name": "session_requests", "identifier": KEY})
    assert response.status_code == 302 and response["Location"] == page
    after = admin_client.get(page).text
    assert "Reset session_requests for sess_x. It had used 3 of 30." in after
    assert busy_rows(after) == {}
    assert ratelimit.busiest() == []
    # The key is whole again: its full allowance is available.
    for _ in range(30):
        ratelimit.hit(("session_requests", KEY))


def test_busiest_keys_come_first(admin_client: Client, storage, page, settings):
    settings.RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE = 30
    settings.RATE_LIMIT_IP_API_REQUESTS_PER_MINUTE = 10
    ratelimit.hit(("session_requests", "sess_calm"))
    for _ in range(5):
        ratelimit.hit(("ip_api_requests", "203.0.113.9"))
    html = admin_client.get(page).text
    order = re.findall(r'<tr class="busy-key" id="[^"]*" data-limit="([^"]+)"', html)
    assert order == ["ip_api_requests", "session_requests"]


def test_recent_refusals_are_shown(admin_client: Client, storage, page, settings):
    settings.RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE = 2
    ratelimit.hit(("session_requests", KEY), session_id=KEY)
    ratelimit.hit(("session_requests", KEY), session_id=KEY)
    with pytest.raises(ApiError) as refused:
        ratelimit.hit(("session_requests", KEY), session_id=KEY)
    assert refused.value.code == "RATE_LIMIT_EXCEEDED"

    html = admin_client.get(page).text
    rows = re.findall(r'<tr class="refusal" data-limit="session_requests">(.*?)</tr>', html, re.S)
    assert len(rows) == 1
    assert f'<code title="{KEY}">{KEY}</code>' in rows[0] and "RATE_LIMIT_EXCEEDED" in rows[0]
    assert busy_rows(html) == {("session_requests", KEY): "2 / 2 (100%)"}


def test_reset_needs_the_csrf_token(storage, page, admin_user):
    ratelimit.hit(("session_requests", KEY))
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(page, {"name": "session_requests", "identifier": KEY})
    assert response.status_code == 403
    assert [(u.spec.name, u.identifier) for u in ratelimit.busiest()] == [("session_requests", KEY)]

    # The page's own form carries the token.
    html = client.get(page).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token is not None
    response = client.post(
        page,
        {"name": "session_requests", "identifier": KEY, "csrfmiddlewaretoken": token.group(1)},
    )
    assert response.status_code == 302
    assert ratelimit.busiest() == []


def test_page_is_for_staff_only(client: Client, storage, page, django_user_model):
    response = client.get(page)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))

    ratelimit.hit(("session_requests", KEY))
    user = django_user_model.objects.create_user("customer", password="x")
    client.force_login(user)
    response = client.post(page, {"name": "session_requests", "identifier": KEY})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert len(ratelimit.busiest()) == 1


def test_storage_down_is_a_message_not_an_error(admin_client: Client, page, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.RATE_LIMITS_ENABLED = True
    settings.RATE_LIMIT_STORAGE_URL = f"redis://127.0.0.1:{port}/0"
    ratelimit.reset_backend()
    try:
        response = admin_client.get(page)
        assert response.status_code == 200
        assert "cannot be reached" in response.text
        response = admin_client.post(
            page, {"name": "session_requests", "identifier": KEY}, follow=True
        )
        assert "cannot be reached; nothing was reset" in response.text
    finally:
        ratelimit.reset_backend()


def test_index_links_to_the_page(admin_client: Client, page):
    assert f'href="{page}"' in admin_client.get(reverse("admin:index")).text


# --- the sessions-at-once limits: counted, shown with their client, reset by ending sessions ---


@pytest.fixture
def session_limits(settings) -> None:
    settings.RATE_LIMIT_IP_CONCURRENT_SESSIONS = 5
    settings.RATE_LIMIT_GLOBAL_ACTIVE_SESSIONS = 100
    settings.RATE_LIMIT_IP_SESSION_CREATIONS_PER_HOUR = 100
    settings.SESSION_IDLE_MINUTES = 15


def test_counted_limits_appear_in_the_busiest_keys_with_their_client(
    admin_client: Client, storage, page, session_limits
):
    customer = Client()
    for user_id in ("alice", "bob", ""):
        open_session(customer, IP, user_id)
    open_session(customer, OTHER_IP)

    html = admin_client.get(page).text
    rows = busy_rows(html)
    assert rows[(CONCURRENT, IP)] == "3 / 5 (60%)"
    assert rows[(CONCURRENT, OTHER_IP)] == "1 / 5 (20%)"
    assert rows[("global_active_sessions", "all")] == "4 / 100 (4%)"
    # The busiest client comes before the calmer one.
    order = re.findall(r'data-limit="ip_concurrent_sessions" data-key="([^"]+)"', html)
    assert order == [IP, OTHER_IP]

    mine = busy_row(html, CONCURRENT, IP)
    assert client_cell(mine) == (
        f"Address <code>{IP}</code>; 3 live sessions, the newest claims userId “bob”"
    )
    assert client_cell(busy_row(html, CONCURRENT, OTHER_IP)) == (
        f"Address <code>{OTHER_IP}</code>; 1 live session"
    )
    assert 'value="End 3 live sessions…"' in mine
    # A stored counter of the same client names it the same way.
    creations = busy_row(html, "ip_session_creations", IP)
    assert "3 live sessions" in client_cell(creations) and 'value="Reset"' in creations

    everyone = busy_row(html, "global_active_sessions", "all")
    assert client_cell(everyone) == "Everyone"
    assert "Not resettable" in everyone and "<form" not in everyone
    assert "<strong>global_active_sessions</strong> is not resettable:" in html


def test_idle_ended_and_expired_sessions_are_not_counted(
    admin_client: Client, storage, page, session_limits
):
    customer = Client()
    live, idle, ended, expired = (open_session(customer, IP) for _ in range(4))
    now = timezone.now()
    ChatSession.objects.filter(pk=idle).update(last_activity=now - timedelta(minutes=16))
    ChatSession.objects.filter(pk=ended).update(status=ChatSession.Status.ENDED, ended_at=now)
    ChatSession.objects.filter(pk=expired).update(expires_at=now - timedelta(seconds=1))

    rows = busy_rows(admin_client.get(page).text)
    assert rows[(CONCURRENT, IP)] == "1 / 5 (20%)"
    assert rows[("global_active_sessions", "all")] == "1 / 100 (1%)"
    assert rate_limits.live_sessions(now=timezone.now()).get().pk == live


def test_counting_the_busiest_clients_takes_two_queries_however_many_there_are(
    storage, session_limits, admin_user
):
    session_create(client_ip=IP)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            found = rate_limits.busy_keys(refusals=[], user=admin_user)
        assert found.keys
        return len(captured)

    one = queries()
    for n in range(20):
        session_create(client_ip=f"192.0.2.{n + 1}")
    assert queries() == one == 2
    usages = rate_limits.busy_keys(refusals=[], user=admin_user).by_key
    assert usages[(CONCURRENT, "192.0.2.20")].usage.used == 1
    assert usages[("global_active_sessions", "all")].usage.used == 21


def test_a_client_the_counters_no_longer_name_shows_and_resets_by_its_hash_label(
    admin_client: Client, storage, page, session_limits
):
    customer = Client()
    first, second = open_session(customer, IP), open_session(customer, IP)
    ratelimit.reset_backend()  # the counters (and with them the address) are gone
    label = "ip_" + ip_fingerprint(IP)[:20]

    html = admin_client.get(page).text
    assert busy_rows(html) == {
        (CONCURRENT, label): "2 / 5 (40%)",
        ("global_active_sessions", "all"): "2 / 100 (2%)",
    }
    cell = client_cell(busy_row(html, CONCURRENT, label))
    assert cell.startswith(f"Client <code>{label}</code>") and "not on record" in cell

    response = admin_client.post(
        page, {"name": CONCURRENT, "identifier": label, "confirm_sessions": "2"}, follow=True
    )
    assert messages_of(response) == [
        f"Ended 2 live sessions of {label} ({CONCURRENT}): this client can open new sessions again."
    ]
    assert statuses(first, second) == ["ended", "ended"]


def test_with_hashed_addresses_refusal_and_row_share_the_clients_label(
    admin_client: Client, storage, page, session_limits, settings
):
    settings.HASH_CLIENT_IPS = True
    settings.RATE_LIMIT_IP_CONCURRENT_SESSIONS = 1
    customer = Client()
    open_session(customer, IP, "erin")
    refused = customer.post("/api/session", "{}", content_type="application/json", REMOTE_ADDR=IP)
    assert refused.status_code == 429

    label = client_label(IP)
    assert label.startswith("ip_") and IP not in label
    html = admin_client.get(page).text
    assert IP not in html
    assert busy_rows(html)[(CONCURRENT, label)] == "1 / 1 (100%)"
    assert "the newest claims userId “erin”" in client_cell(busy_row(html, CONCURRENT, label))
    refusal = re.search(
        r'<tr class="refusal" data-limit="ip_concurrent_sessions">(.*?)</tr>', html, re.S
    )
    assert refusal is not None
    assert f'name="identifier" value="{label}"' in refusal.group(1)
    assert 'value="End 1 live session…"' in refusal.group(1)


def test_a_session_key_names_its_session_with_links(
    admin_client: Client, storage, page, session_limits
):
    session = session_create(user_id="dana", client_ip=IP)
    ratelimit.hit(("session_requests", session.id))
    made_up = "sess_" + "x" * 30
    ratelimit.hit(("session_requests", made_up))

    html = admin_client.get(page).text
    cell = client_cell(busy_row(html, "session_requests", session.id))
    admin_url = reverse("admin:chat_chatsession_change", args=[quote(session.id)])
    agent_url = reverse("ops:conversation", args=[session.id])
    assert cell == (
        f'Session <a href="{admin_url}">{session.id}</a> (active), claims userId “dana” · '
        f'<a href="{agent_url}">agent view</a>'
    )
    assert client_cell(busy_row(html, "session_requests", made_up)) == (
        "No stored session has this id (expired, or one the client made up)"
    )


def test_ending_a_clients_sessions_asks_first_then_ends_exactly_the_counted_ones(
    admin_client: Client, storage, page, session_limits, settings, caplog
):
    settings.RATE_LIMIT_IP_CONCURRENT_SESSIONS = 2
    customer = Client()
    idle = open_session(customer, IP, "old")
    ChatSession.objects.filter(pk=idle).update(last_activity=timezone.now() - timedelta(minutes=30))
    first, second = open_session(customer, IP, "alice"), open_session(customer, IP, "bob")
    other = open_session(customer, OTHER_IP, "carol")
    refused = customer.post("/api/session", "{}", content_type="application/json", REMOTE_ADDR=IP)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "CONCURRENT_LIMIT_EXCEEDED"

    html = admin_client.get(page).text
    assert busy_rows(html)[(CONCURRENT, IP)] == "2 / 2 (100%)"
    refusal = re.search(
        r'<tr class="refusal" data-limit="ip_concurrent_sessions">(.*?)</tr>', html, re.S
    )
    assert refusal is not None and "still busy: 2 / 2" in refusal.group(1)

    # First the confirmation: what would end, and nothing ended yet.
    asked = admin_client.post(page, {"name": CONCURRENT, "identifier": IP})
    assert asked.status_code == 200
    assert f"End 2 live sessions of {IP}?" in asked.text
    listed = re.findall(r'<li class="rl-session"><a href="[^"]+"><code>([^<]+)</code>', asked.text)
    assert listed == [first, second]
    assert 'name="confirm_sessions" value="2"' in asked.text
    assert 'value="Yes, end 2 live sessions"' in asked.text
    assert statuses(idle, first, second, other) == ["active"] * 4

    caplog.set_level(logging.INFO, logger="ops.rate_limits")
    done = admin_client.post(
        page, {"name": CONCURRENT, "identifier": IP, "confirm_sessions": "2"}, follow=True
    )
    assert done.redirect_chain == [(page, 302)]
    assert messages_of(done) == [
        f"Ended 2 live sessions of {IP} ({CONCURRENT}): this client can open new sessions again."
    ]
    assert statuses(idle, first, second, other) == ["active", "ended", "ended", "active"]
    archived = set(
        SessionArchive.objects.filter(reason="ended").values_list("session_id", flat=True)
    )
    assert archived == {first, second}
    logged = [r.msg for r in caplog.records if r.name == "ops.rate_limits"]
    assert [(m["event"], m["key"], m["ended"], m["by"]) for m in logged if isinstance(m, dict)] == [
        ("ratelimit_sessions_ended", IP, 2, "admin")
    ]

    rows = busy_rows(done.text)
    assert (CONCURRENT, IP) not in rows and rows[(CONCURRENT, OTHER_IP)] == "1 / 2 (50%)"
    refusal = re.search(
        r'<tr class="refusal" data-limit="ip_concurrent_sessions">(.*?)</tr>', done.text, re.S
    )
    assert refusal is not None and "no longer busy" in refusal.group(1)
    # The client is free again: the real API opens its session.
    open_session(customer, IP)


def test_more_live_sessions_than_confirmed_asks_again(
    admin_client: Client, storage, page, session_limits
):
    customer = Client()
    sessions = [open_session(customer, IP) for _ in range(3)]
    asked = admin_client.post(page, {"name": CONCURRENT, "identifier": IP, "confirm_sessions": "2"})
    assert asked.status_code == 200
    assert "More sessions went live since you confirmed." in asked.text
    assert 'name="confirm_sessions" value="3"' in asked.text
    assert statuses(*sessions) == ["active"] * 3


@pytest.mark.parametrize(
    ("name", "identifier", "message"),
    [
        ("no_such_limit", KEY, "There is no rate limit named “no_such_limit”; nothing was reset."),
        ("session_requests", "  ", "Give the key of session_requests to reset"),
        ("session_requests", "a b", "“a b” is not a key of session_requests: keys are at most"),
        ("session_requests", "x" * 201, "is not a key of session_requests: keys are at most 200"),
        ("ip_api_requests", "localhost", "“localhost” is not a key of ip_api_requests: give a"),
        ("global_model_calls", "me", "a limit of the whole service has the one key “all”"),
        ("global_active_sessions", "all", "global_active_sessions is not resettable: Counts"),
        ("ip_concurrent_sessions", "", "Give the key of ip_concurrent_sessions to reset"),
        ("ip_concurrent_sessions", "203.0.113.300", "is not a client of ip_concurrent_sessions"),
        ("ip_concurrent_sessions", "2001:db8::/48", "is not a client of ip_concurrent_sessions"),
        ("ip_concurrent_sessions", "ip_nothex", "is not a client of ip_concurrent_sessions"),
        ("ip_concurrent_sessions", "198.51.100.77", "198.51.100.77 has no live session now"),
    ],
)
def test_bad_input_is_a_message_and_changes_nothing(
    admin_client: Client, storage, page, session_limits, settings, name, identifier, message
):
    settings.RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE = 30
    ratelimit.hit(("session_requests", KEY))
    live = session_create(client_ip=IP).pk
    for confirm in ("", "9"):
        response = admin_client.post(
            page, {"name": name, "identifier": identifier, "confirm_sessions": confirm}, follow=True
        )
        assert response.status_code == 200
        assert len(messages_of(response)) == 1 and message in messages_of(response)[0]
        rows = busy_rows(response.text)
        assert rows[("session_requests", KEY)] == "1 / 30 (3%)"
        assert rows[(CONCURRENT, IP)] == "1 / 5 (20%)"
    assert statuses(live) == ["active"]


def test_a_confirmation_that_is_not_a_number_only_asks(
    admin_client: Client, storage, page, session_limits
):
    live = session_create(client_ip=IP).pk
    asked = admin_client.post(
        page, {"name": CONCURRENT, "identifier": IP, "confirm_sessions": "yes"}
    )
    assert asked.status_code == 200 and "End 1 live session of" in asked.text
    assert statuses(live) == ["active"]


def test_staff_without_the_permission_see_the_page_but_cannot_reset(
    storage, page, session_limits, django_user_model
):
    ratelimit.hit(("session_requests", KEY))
    live = session_create(client_ip=IP).pk
    agent = django_user_model.objects.create_user("agent", password="x", is_staff=True)
    client = Client()
    client.force_login(agent)

    html = client.get(page).text
    assert busy_rows(html)[(CONCURRENT, IP)] == "1 / 5 (20%)"
    assert "<form" not in html.split('id="content-main"')[1]
    assert "that needs the “Can change chat session” permission" in html
    for data in (
        {"name": "session_requests", "identifier": KEY},
        {"name": CONCURRENT, "identifier": IP, "confirm_sessions": "1"},
    ):
        assert client.post(page, data).status_code == 403
    assert {(u.spec.name, u.identifier) for u in ratelimit.busiest()} == {
        ("session_requests", KEY),
        ("ip_session_creations", IP),
    }
    assert statuses(live) == ["active"]

    agent.user_permissions.add(
        Permission.objects.get(content_type__app_label="chat", codename="change_chatsession")
    )
    client.force_login(django_user_model.objects.get(pk=agent.pk))  # a fresh permission cache
    response = client.post(page, {"name": CONCURRENT, "identifier": IP, "confirm_sessions": "1"})
    assert response.status_code == 302
    assert statuses(live) == ["ended"]


def test_with_the_storage_down_sessions_are_still_counted_and_can_be_ended(
    admin_client: Client, page, settings, session_limits
):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    live = session_create(client_ip=IP).pk  # counted in memory, before the storage goes
    settings.RATE_LIMIT_STORAGE_URL = f"redis://127.0.0.1:{port}/0"
    ratelimit.reset_backend()
    label = "ip_" + ip_fingerprint(IP)[:20]
    try:
        response = admin_client.get(page)
        assert response.status_code == 200
        assert "cannot be reached: no counter to show, only the sessions at once" in response.text
        assert busy_rows(response.text)[(CONCURRENT, label)] == "1 / 5 (20%)"
        response = admin_client.post(
            page, {"name": "ip_api_requests", "identifier": IP}, follow=True
        )
        assert messages_of(response) == [
            "The rate-limit storage cannot be reached; nothing was reset."
        ]
        assert statuses(live) == ["active"]
        # Ending sessions needs the database only.
        response = admin_client.post(
            page, {"name": CONCURRENT, "identifier": IP, "confirm_sessions": "1"}, follow=True
        )
        assert messages_of(response)[0].startswith(f"Ended 1 live session of {IP}")
        assert statuses(live) == ["ended"]
    finally:
        ratelimit.reset_backend()


def test_the_page_styles_use_only_the_admins_colour_variables(admin_client: Client, page):
    html = admin_client.get(page).text
    assert 'href="/static/ops/rate_limits.css"' in html
    css = (ROOT / "static" / "ops" / "rate_limits.css").read_text()
    assert re.findall(r"#[0-9a-fA-F]{3,8}\b|rgba?\(|hsla?\(", css) == []
    colours = re.findall(r"\b(?:color|background|border(?:-bottom)?):\s*([^;]+);", css)
    assert colours and all("var(--" in value for value in colours if value != "0")
    assert "@media (max-width: 767px)" in css


def test_an_ipv6_client_is_its_64_network_and_a_typed_address_in_it_resets_it(
    admin_client: Client, storage, page, session_limits
):
    customer = Client()
    first = open_session(customer, "2001:db8::5")
    second = open_session(customer, "2001:db8::9")  # the same /64: the same client

    rows = busy_rows(admin_client.get(page).text)
    assert rows[(CONCURRENT, "2001:db8::/64")] == "2 / 5 (40%)"
    # A stored key holds the network whole, "/" and all, and resets.
    assert rows[("ip_session_creations", "2001:db8::/64")] == "2 / 100 (2%)"
    admin_client.post(page, {"name": "ip_session_creations", "identifier": "2001:db8::/64"})
    assert ("ip_session_creations", "2001:db8::/64") not in busy_rows(admin_client.get(page).text)

    response = admin_client.post(
        page,
        {"name": CONCURRENT, "identifier": "2001:db8::77", "confirm_sessions": "2"},
        follow=True,
    )
    assert messages_of(response)[0].startswith("Ended 2 live sessions of 2001:db8::77")
    assert statuses(first, second) == ["ended", "ended"]
