"""The rate-limit page of the ops admin, on memory and on Redis: the configured limits, the
busiest keys, recent refusals, and a CSRF-protected reset; staff only; Redis down is a message,
not an error page."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import reverse

from supportbot import ratelimit, security
from supportbot.errors import ApiError

pytestmark = pytest.mark.django_db

KEY = "sess_x"


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
        r'<tr class="busy-key" data-limit="([^"]+)" data-key="([^"]+)">\s*'
        r"<td>[^<]*</td>\s*<td><code>[^<]*</code></td>\s*<td>([^<]+)</td>",
        html,
    )
    return {(name, key): used for name, key, used in rows}


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
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
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
    assert row is not None and row.group(1).strip().endswith("<td>no</td>")


def test_busy_key_is_listed_and_reset_clears_it(admin_client: Client, storage, page, settings):
    settings.RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE = 30
    for _ in range(3):
        ratelimit.hit(("session_requests", KEY))
    html = admin_client.get(page).text
    assert busy_rows(html) == {("session_requests", KEY): "3 / 30 (10%)"}
    row = re.search(r'data-key="sess_x">(.*?)</tr>', html, re.S)
    assert row is not None
    assert re.search(r"<td>27</td>", row.group(1))
    resets_in = re.search(r"\(in (\d+) s\)", row.group(1))
    assert resets_in is not None and 0 < int(resets_in.group(1)) <= 60

    response = admin_client.post(page, {"name": "session_requests", "identifier": KEY})
    assert response.status_code == 302 and response["Location"] == page
    after = admin_client.get(page).text
    assert "Reset session_requests for sess_x." in after
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
    order = re.findall(r'<tr class="busy-key" data-limit="([^"]+)"', html)
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
    assert f"<code>{KEY}</code>" in rows[0] and "RATE_LIMIT_EXCEEDED" in rows[0]
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


@pytest.mark.parametrize(
    ("name", "identifier"),
    [("no_such_limit", KEY), ("session_requests", ""), ("global_active_sessions", "all")],
)
def test_reset_refuses_what_is_not_a_stored_counter(
    admin_client: Client, storage, page, settings, name, identifier
):
    settings.RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE = 30
    ratelimit.hit(("session_requests", KEY))
    response = admin_client.post(page, {"name": name, "identifier": identifier}, follow=True)
    assert "Choose a rate limit with a counter and give its key." in response.text
    assert busy_rows(response.text) == {("session_requests", KEY): "1 / 30 (3%)"}


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
