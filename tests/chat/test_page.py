"""The chat page: creates or restores the session behind an HttpOnly cookie."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from chat.models import ChatSession
from chat.sessions import session_create, session_end
from chat.views import SESSION_COOKIE

pytestmark = pytest.mark.django_db(transaction=True)


def page_session_id(html: str) -> str:
    match = re.search(r'data-session-id="(sess_[A-Za-z0-9_-]+)"', html)
    assert match, "the page carries no session id"
    return match.group(1)


def test_first_visit_creates_a_session_and_sets_an_httponly_lax_cookie():
    response = Client().get("/")
    assert response.status_code == 200
    session_id = page_session_id(response.content.decode())
    assert ChatSession.objects.filter(pk=session_id).exists()
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value == session_id
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]


def test_cookie_is_secure_when_served_over_https(settings):
    settings.HTTPS = True
    response = Client().get("/", secure=True)
    assert response.cookies[SESSION_COOKIE]["secure"]


def test_return_visit_restores_the_same_session():
    client = Client()
    first = page_session_id(client.get("/").content.decode())
    second = page_session_id(client.get("/").content.decode())
    assert first == second
    assert ChatSession.objects.count() == 1


def test_ended_unknown_or_malformed_session_is_replaced_by_a_new_one():
    ended = session_create()
    session_end(session_id=ended.pk)
    for stale in (ended.pk, "sess_" + "x" * 32, "<script>"):
        client = Client()
        client.cookies[SESSION_COOKIE] = stale
        fresh = page_session_id(client.get("/").content.decode())
        assert fresh != stale
        assert ChatSession.objects.get(pk=fresh).status == ChatSession.Status.ACTIVE


def csrf_token_of(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def test_new_conversation_creates_a_session_and_moves_the_cookie_to_it():
    client = Client(enforce_csrf_checks=True)
    page = client.get("/").content.decode()
    old = page_session_id(page)
    response = client.post("/conversation/new", headers={"X-CSRFToken": csrf_token_of(page)})
    assert response.status_code == 201
    new = response.json()["sessionId"]
    assert new != old
    assert ChatSession.objects.get(pk=new).status == ChatSession.Status.ACTIVE
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value == new
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    # What the reload after "New conversation" shows.
    assert page_session_id(client.get("/").content.decode()) == new


def test_new_conversation_without_the_csrf_token_is_refused_in_the_error_shape():
    client = Client(enforce_csrf_checks=True)
    old = page_session_id(client.get("/").content.decode())
    response = client.post("/conversation/new")
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["code"] == "ACCESS_DENIED"
    assert (body["path"], body["method"]) == ("/conversation/new", "POST")
    assert SESSION_COOKIE not in response.cookies
    assert ChatSession.objects.count() == 1
    assert page_session_id(client.get("/").content.decode()) == old


def test_new_conversation_answers_other_methods_with_a_json_405():
    response = Client().get("/conversation/new")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    body = response.json()
    assert body["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert body["error"]["retryable"] is False
    assert body["requestId"] and isinstance(body["timestamp"], int)
    assert (body["path"], body["method"]) == ("/conversation/new", "GET")
    assert ChatSession.objects.count() == 0
