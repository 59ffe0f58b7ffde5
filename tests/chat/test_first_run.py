"""A first run without traps: the chat page's refusals are HTML pages that say how long to wait,
the API's stay JSON, and "New conversation" ends the session it replaces, so a person pressing
it never fills the per-IP limit of sessions at once."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from chat.models import ChatSession
from chat.sessions import session_create, session_end
from chat.views import SESSION_COOKIE
from supportbot import ratelimit, security
from supportbot.errors import ApiError, wait_in_words

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_IN_WORDS = re.compile(r"about \d+ minutes?|\d+ seconds?|about [\d.]+ hours?")


def limit(settings, name: str, amount: int) -> None:
    setattr(settings, ratelimit.configured_limits()[name].setting, amount)


def csrf_token_of(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def fill_the_ip(count: int) -> None:
    """``count`` live sessions of 127.0.0.1, the test client's address."""
    for _ in range(count):
        session_create(client_ip="127.0.0.1")


# --- the words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "1 second"),
        (-5, "1 second"),
        (0.2, "1 second"),
        (1, "1 second"),
        (45, "45 seconds"),
        (59.5, "about 1 minute"),
        (60, "about 1 minute"),
        (89, "about 1 minute"),
        (90, "about 2 minutes"),
        (843, "about 14 minutes"),
        (3569, "about 59 minutes"),
        (3593, "about 1 hour"),
        (5340, "about 1.5 hours"),
        (7200, "about 2 hours"),
        (86400, "about 24 hours"),
    ],
)
def test_a_wait_is_said_in_words(seconds, words):
    assert wait_in_words(seconds) == words


def test_a_limit_refusal_says_the_wait_in_words_not_in_seconds(settings):
    limit(settings, "ip_concurrent_sessions", 1)
    fill_the_ip(1)
    with pytest.raises(ApiError) as refused:
        session_create(client_ip="127.0.0.1")
    message = str(refused.value)
    assert WAIT_IN_WORDS.search(message), message
    assert not re.search(r"\d+ s\.", message)


# --- the chat page's refusal is a page ----------------------------------------------------------


def test_the_chat_page_at_the_session_limit_is_an_html_page_with_the_wait_and_retry_after(
    settings,
):
    limit(settings, "ip_concurrent_sessions", 5)
    fill_the_ip(5)
    security.clear_recent()
    response = Client().get("/", headers={"Accept": "text/html"})
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert not html.lstrip().startswith("{")
    assert "<!doctype html>" in html.lower()
    retry = int(response["Retry-After"])
    # The oldest session frees its place after SESSION_IDLE_MINUTES of silence.
    assert retry > 60
    assert wait_in_words(retry) in html
    assert WAIT_IN_WORDS.search(html)
    # The code on the page is the code the security log recorded for this refusal.
    logged = security.recent_events("rate_limited")[0]
    assert logged["code"] == "CONCURRENT_LIMIT_EXCEEDED"
    assert "<code>CONCURRENT_LIMIT_EXCEEDED</code>" in html
    assert response["X-Request-ID"] in html
    assert SESSION_COOKIE not in response.cookies
    assert ChatSession.objects.count() == 5


def test_the_same_refusal_through_the_api_stays_json(settings):
    limit(settings, "ip_concurrent_sessions", 1)
    fill_the_ip(1)
    response = Client().post("/api/session", data="{}", content_type="application/json")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "CONCURRENT_LIMIT_EXCEEDED"
    assert response["Retry-After"] == str(error["retryAfter"])
    assert wait_in_words(error["retryAfter"]) in error["message"]


def test_a_refusal_before_the_page_view_runs_is_a_page_too():
    # A NUL in the query string is refused by the middleware before any view runs.
    response = Client().get("/?q=%00")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "<code>INVALID_FIELD_VALUE</code>" in html
    assert "Retry-After" not in response
    assert ChatSession.objects.count() == 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/status?q=%00", 400),
        ("get", "/no/such/page", 404),
        ("get", "/api/no-such-route", 404),
        ("get", "/conversation/new", 405),
        ("post", "/conversation/new", 403),  # no CSRF token
    ],
)
def test_everything_that_is_not_a_page_keeps_answering_json(method, path, status):
    response = getattr(Client(enforce_csrf_checks=True), method)(path)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] and body["path"] == path.split("?")[0]


# --- New conversation ------------------------------------------------------------------------


def test_new_conversation_ends_the_session_it_replaces():
    client = Client(enforce_csrf_checks=True)
    page = client.get("/").content.decode()
    old = client.cookies[SESSION_COOKIE].value
    response = client.post("/conversation/new", headers={"X-CSRFToken": csrf_token_of(page)})
    assert response.status_code == 201
    replaced = ChatSession.objects.get(pk=old)
    assert replaced.status == ChatSession.Status.ENDED
    assert replaced.ended_at is not None
    new = ChatSession.objects.get(pk=response.json()["sessionId"])
    assert new.status == ChatSession.Status.ACTIVE


def test_pressing_new_conversation_more_often_than_the_ip_limit_is_never_refused(settings):
    limit(settings, "ip_concurrent_sessions", 5)
    client = Client(enforce_csrf_checks=True)
    token = csrf_token_of(client.get("/").content.decode())
    for press in range(7):
        response = client.post("/conversation/new", headers={"X-CSRFToken": token})
        assert response.status_code == 201, (press, response.content)
    assert ChatSession.objects.count() == 8
    live = ChatSession.objects.exclude(status=ChatSession.Status.ENDED)
    assert list(live.values_list("pk", flat=True)) == [client.cookies[SESSION_COOKIE].value]
    # The page itself still opens: one live session of five.
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("cookie", ["", "sess_" + "x" * 32, "<script>", "ended"])
def test_new_conversation_with_a_cookie_that_names_no_live_session_still_starts_one(cookie):
    if cookie == "ended":
        ended = session_create()
        session_end(session_id=ended.pk)
        cookie = ended.pk
    client = Client(enforce_csrf_checks=True)
    token = csrf_token_of(client.get("/").content.decode())
    client.cookies[SESSION_COOKIE] = cookie
    before = ChatSession.objects.exclude(status=ChatSession.Status.ENDED).count()
    response = client.post("/conversation/new", headers={"X-CSRFToken": token})
    assert response.status_code == 201
    assert response.cookies[SESSION_COOKIE].value == response.json()["sessionId"]
    # Only the new session was added; the page's own session (not named by the cookie) stays.
    live = ChatSession.objects.exclude(status=ChatSession.Status.ENDED).count()
    assert live == before + 1


def test_new_conversation_refused_says_the_wait_in_words_and_keeps_json(settings):
    limit(settings, "ip_session_creations", 2)
    client = Client(enforce_csrf_checks=True)
    token = csrf_token_of(client.get("/").content.decode())
    assert client.post("/conversation/new", headers={"X-CSRFToken": token}).status_code == 201
    refused = client.post("/conversation/new", headers={"X-CSRFToken": token})
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused["Retry-After"] == str(error["retryAfter"])
    assert "try again in " + wait_in_words(error["retryAfter"]) in error["message"]
    assert "moment" not in error["message"]
    # Refused before anything changed: the conversation the cookie names is still live.
    kept = client.cookies[SESSION_COOKIE].value
    assert ChatSession.objects.get(pk=kept).status != ChatSession.Status.ENDED
