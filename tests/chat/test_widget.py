"""The embeddable widget's server side: the loader, the framed page's CSP, the widget's session
(resume, restart, malformed ids) and the signed identity (good, bad, missing, expired)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from chat.models import ChatSession
from chat.sessions import session_create, session_end
from supportbot.env import env_origins

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "host-shared-secret"


def post(client: Client, path: str, body: object) -> tuple[int, dict]:
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def sign(user_id: str, timestamp: int, secret: str = SECRET) -> str:
    """What a host site computes (the README's one-liners)."""
    return hmac.new(secret.encode(), f"{timestamp}:{user_id}".encode(), hashlib.sha256).hexdigest()


def identity(session_id: str, user_id: str = "cust-1001", **changes: object) -> dict:
    timestamp = int(time.time())
    body = {
        "sessionId": session_id,
        "userId": user_id,
        "timestamp": timestamp,
        "signature": sign(user_id, timestamp),
    }
    body.update(changes)
    return body


def assert_error(status: int, body: dict, expected_status: int, code: str) -> dict:
    assert status == expected_status, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["requestId"].startswith("req_") and body["path"].startswith("/api/widget/")
    return body["error"]


# --- the loader ---------------------------------------------------------------------------------


def test_loader_is_javascript_with_the_allowed_origins_and_brand_and_is_cacheable(settings):
    settings.SUPPORTBOT_WIDGET_ORIGINS = ["https://shop.example"]
    settings.SUPPORTBOT_BRAND_NAME = "Acme </script> Help"
    response = Client().get("/widget.js")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Cache-Control"] in ("public, max-age=300", "max-age=300, public")
    source = response.content.decode()
    match = re.search(r"const CONFIG = (\{.*\});", source)
    assert match, "the configuration is not in place of the marker"
    config = json.loads(match.group(1))
    assert config["origins"] == ["https://shop.example"]
    assert config["brand"]["name"] == "Acme </script> Help"
    assert config["brand"]["color"].startswith("#") and config["brand"]["avatar"]
    assert "</script>" not in match.group(0) and "\\u003c/script>" in match.group(0)
    assert "SUPPORTBOT_CONFIG" not in source

    again = Client().get("/widget.js", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304


def test_loader_changes_its_etag_when_the_origins_change(settings):
    first = Client().get("/widget.js")["ETag"]
    settings.SUPPORTBOT_WIDGET_ORIGINS = ["https://other.example"]
    assert Client().get("/widget.js")["ETag"] != first


# --- the framed page ----------------------------------------------------------------------------


def directive(response, name: str) -> str:
    policy = response["Content-Security-Policy"]
    found = [part.strip() for part in policy.split(";") if part.strip().startswith(name + " ")]
    assert len(found) == 1, policy
    return found[0]


def test_frame_may_be_embedded_by_this_origin_only_by_default():
    response = Client().get("/widget/")
    assert response.status_code == 200
    assert directive(response, "frame-ancestors") == "frame-ancestors 'self'"
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    # The rest of the policy is the site's: still no inline script.
    assert directive(response, "script-src") == "script-src 'self'"


def test_frame_lists_the_allowed_origins_and_drops_x_frame_options(settings):
    settings.SUPPORTBOT_WIDGET_ORIGINS = ["https://shop.example", "http://localhost:8001"]
    response = Client().get("/widget/")
    assert directive(response, "frame-ancestors") == (
        "frame-ancestors 'self' https://shop.example http://localhost:8001"
    )
    assert "X-Frame-Options" not in response


def test_the_chat_page_itself_still_refuses_every_frame(settings):
    settings.SUPPORTBOT_WIDGET_ORIGINS = ["https://shop.example"]
    response = Client().get("/")
    assert directive(response, "frame-ancestors") == "frame-ancestors 'none'"
    assert response["X-Frame-Options"] == "DENY"


def test_frame_is_the_chat_page_in_embed_mode_and_opens_no_session():
    html = Client().get("/widget/").content.decode()
    assert "data-embed" in html and 'id="widget-close"' in html
    assert 'data-session-id=""' in html
    assert "widget/frame.js" in html and 'id="widget-config"' in html
    assert 'data-new-conversation-url="/api/widget/session/new"' in html
    assert ChatSession.objects.count() == 0


def test_frame_refuses_writes():
    response = Client().post("/widget/")
    assert response.status_code == 405


# --- the demo page ------------------------------------------------------------------------------


def test_demo_page_carries_the_snippet_and_signs_a_demo_customer_only_in_debug(settings):
    settings.DEBUG = True
    settings.SUPPORTBOT_WIDGET_SECRET = SECRET
    response = Client().get("/widget-demo/")
    html = response.content.decode()
    assert '<script src="/widget.js" data-supportbot async></script>' in html
    assert "&lt;script src=&quot;http://testserver/widget.js&quot; data-supportbot async" in html
    found = re.search(r'id="demo-identity"[^>]*>(.*?)</script>', html)
    assert found, "the demo carries no identity"
    signed = json.loads(found.group(1))
    assert signed["signature"] == sign(signed["userId"], signed["timestamp"])
    assert "no-store" in response["Cache-Control"]

    settings.DEBUG = False
    html = Client().get("/widget-demo/").content.decode()
    assert re.search(r'id="demo-identity"[^>]*>null</script>', html)


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "shop.example",
        "https://shop.example/path",
        "https://*.shop.example",
        "ftp://shop.example",
        "https://shop.example?x=1",
        "https://user@shop.example",
        "https://shop.example:port",
    ],
)
def test_an_origin_that_is_not_an_origin_stops_start_up(monkeypatch, value):
    monkeypatch.setenv("SUPPORTBOT_WIDGET_ORIGINS", f"https://ok.example,{value}")
    with pytest.raises(ImproperlyConfigured, match="SUPPORTBOT_WIDGET_ORIGINS"):
        env_origins("SUPPORTBOT_WIDGET_ORIGINS")


def test_origins_are_written_as_browsers_write_them(monkeypatch):
    monkeypatch.setenv(
        "SUPPORTBOT_WIDGET_ORIGINS", " https://Shop.Example:443/ , http://localhost:8001,"
    )
    assert env_origins("SUPPORTBOT_WIDGET_ORIGINS") == [
        "https://shop.example",
        "http://localhost:8001",
    ]


# --- the widget's session -----------------------------------------------------------------------


def test_widget_session_resumes_a_live_session_and_starts_one_when_none_is_named():
    client = Client()
    status, body = post(client, "/api/widget/session", {})
    assert status == 201 and body["resumed"] is False
    first = body["sessionId"]
    assert ChatSession.objects.get(pk=first).status == ChatSession.Status.ACTIVE

    status, body = post(client, "/api/widget/session", {"sessionId": first})
    assert status == 200 and body["resumed"] is True and body["sessionId"] == first
    assert ChatSession.objects.count() == 1


def test_an_unknown_or_ended_session_is_never_resumed_only_replaced():
    ended = session_create()
    session_end(session_id=ended.pk)
    guessed = "sess_" + "A" * 32
    for stale in (ended.pk, guessed):
        status, body = post(Client(), "/api/widget/session", {"sessionId": stale})
        assert status == 201 and body["resumed"] is False
        assert body["sessionId"] not in (ended.pk, guessed)
    assert not ChatSession.objects.filter(pk=guessed).exists()


@pytest.mark.parametrize(
    ("session_id", "code"),
    [
        ("not-a-session", "INVALID_SESSION"),
        ("sess_short", "INVALID_SESSION"),
        ("sess_" + "A" * 32 + "/../x", "INVALID_SESSION"),
        (12345, "INVALID_FIELD_VALUE"),
        (["sess_" + "A" * 32], "INVALID_FIELD_VALUE"),
    ],
)
def test_a_malformed_session_id_is_refused(session_id, code):
    status, body = post(Client(), "/api/widget/session", {"sessionId": session_id})
    assert_error(status, body, 400, code)
    assert ChatSession.objects.count() == 0


def test_a_body_that_is_not_an_object_is_refused():
    status, body = post(Client(), "/api/widget/session", ["sess_" + "A" * 32])
    assert_error(status, body, 400, "INVALID_REQUEST_FORMAT")


def test_new_conversation_ends_the_named_session_and_starts_another():
    old = session_create()
    status, body = post(Client(), "/api/widget/session/new", {"sessionId": old.pk})
    assert status == 201 and body["sessionId"] != old.pk
    old.refresh_from_db()
    assert old.status == ChatSession.Status.ENDED
    # Named nothing, or one that ended already: a new session all the same.
    status, again = post(Client(), "/api/widget/session/new", {"sessionId": old.pk})
    assert status == 201 and again["sessionId"] not in (old.pk, body["sessionId"])


def test_the_widget_reads_no_cookie_and_needs_no_csrf_token():
    client = Client(enforce_csrf_checks=True)
    status, body = post(client, "/api/widget/session", {})
    assert status == 201
    status, _ = post(client, "/api/widget/session/new", {"sessionId": body["sessionId"]})
    assert status == 201


# --- identify -----------------------------------------------------------------------------------


@pytest.fixture
def secret(settings):
    settings.SUPPORTBOT_WIDGET_SECRET = SECRET
    return SECRET


def test_a_correctly_signed_user_id_is_attached_to_the_session(secret):
    session = session_create()
    status, body = post(Client(), "/api/widget/identify", identity(session.pk))
    assert status == 200, body
    assert body["sessionId"] == session.pk and body["userId"] == "cust-1001"
    assert body["resumed"] is True
    session.refresh_from_db()
    assert session.user_id == "cust-1001"
    # The same customer again (every page load of the host): nothing changes.
    status, body = post(Client(), "/api/widget/identify", identity(session.pk))
    assert status == 200 and body["sessionId"] == session.pk


def test_an_upper_case_signature_is_the_same_signature(secret):
    session = session_create()
    body = identity(session.pk)
    body["signature"] = body["signature"].upper()
    status, _ = post(Client(), "/api/widget/identify", body)
    assert status == 200


@pytest.mark.parametrize(
    "changes",
    [
        {"signature": sign("cust-1001", int(time.time()), secret="someone-elses-secret")},
        {"userId": "cust-9999"},  # the signature of another customer's id
        {"timestamp": int(time.time()) - 10},  # the signature does not cover this time
    ],
)
def test_a_wrong_signature_is_refused_and_changes_nothing(secret, changes):
    session = session_create()
    status, body = post(Client(), "/api/widget/identify", identity(session.pk, **changes))
    error = assert_error(status, body, 403, "ACCESS_DENIED")
    assert error["details"]["field"] == "signature"
    assert "does not match" in error["message"]
    session.refresh_from_db()
    assert session.user_id == "" and session.status == ChatSession.Status.ACTIVE
    assert ChatSession.objects.count() == 1


def test_an_expired_or_future_signature_is_refused(secret, settings):
    settings.SUPPORTBOT_WIDGET_IDENTITY_MAX_AGE = 600
    session = session_create()
    for timestamp, words in (
        (int(time.time()) - 601, "expired"),
        (int(time.time()) + 3600, "future"),
    ):
        body = identity(session.pk, timestamp=timestamp, signature=sign("cust-1001", timestamp))
        status, answer = post(Client(), "/api/widget/identify", body)
        error = assert_error(status, answer, 403, "ACCESS_DENIED")
        assert words in error["message"] and error["details"]["field"] == "timestamp"
    session.refresh_from_db()
    assert session.user_id == ""


def test_identify_is_refused_when_the_server_has_no_secret(settings):
    settings.SUPPORTBOT_WIDGET_SECRET = ""
    session = session_create()
    # Signed with an empty key: exactly what a server with no secret must not accept.
    body = identity(session.pk)
    body["signature"] = sign("cust-1001", body["timestamp"], secret="")
    status, answer = post(Client(), "/api/widget/identify", body)
    error = assert_error(status, answer, 403, "ACCESS_DENIED")
    assert "no widget secret" in error["message"]
    session.refresh_from_db()
    assert session.user_id == ""


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"signature": None}, "signature", "INVALID_FIELD_VALUE"),
        ({"signature": "xyz"}, "signature", "INVALID_FIELD_VALUE"),
        ({"signature": "g" * 64}, "signature", "INVALID_FIELD_VALUE"),
        ({"timestamp": "1700000000"}, "timestamp", "INVALID_FIELD_VALUE"),
        ({"timestamp": True}, "timestamp", "INVALID_FIELD_VALUE"),
        ({"timestamp": 1.5}, "timestamp", "INVALID_FIELD_VALUE"),
        ({"userId": 1001}, "userId", "INVALID_FIELD_VALUE"),
        ({"userId": ""}, "userId", "INVALID_FIELD_VALUE"),
        ({"userId": "   "}, "userId", "INVALID_FIELD_VALUE"),
        ({"userId": "u" * 129}, "userId", "INVALID_FIELD_VALUE"),
        ({"sessionId": "nope"}, "sessionId", "INVALID_SESSION"),
    ],
)
def test_malformed_identity_fields_are_refused(secret, changes, field, code):
    session = session_create()
    status, body = post(Client(), "/api/widget/identify", identity(session.pk, **changes))
    error = assert_error(status, body, 400, code)
    assert error["details"]["field"] == field
    session.refresh_from_db()
    assert session.user_id == ""


@pytest.mark.parametrize("missing", ["sessionId", "userId", "timestamp", "signature"])
def test_a_missing_identity_field_is_named(secret, missing):
    session = session_create()
    body = identity(session.pk)
    del body[missing]
    status, answer = post(Client(), "/api/widget/identify", body)
    error = assert_error(status, answer, 400, "MISSING_REQUIRED_FIELD")
    assert error["details"]["field"] == missing


def test_identify_on_an_ended_or_unknown_session_is_refused(secret):
    ended = session_create()
    session_end(session_id=ended.pk)
    status, body = post(Client(), "/api/widget/identify", identity(ended.pk))
    assert_error(status, body, 409, "INVALID_SESSION")
    status, body = post(Client(), "/api/widget/identify", identity("sess_" + "B" * 32))
    assert_error(status, body, 404, "SESSION_NOT_FOUND")


def test_another_customer_on_the_same_browser_gets_a_conversation_of_their_own(secret):
    session = session_create(user_id="cust-1001")
    status, body = post(Client(), "/api/widget/identify", identity(session.pk, "cust-2002"))
    assert status == 201 and body["resumed"] is False
    assert body["sessionId"] != session.pk and body["userId"] == "cust-2002"
    assert ChatSession.objects.get(pk=body["sessionId"]).user_id == "cust-2002"
    session.refresh_from_db()
    assert session.status == ChatSession.Status.ENDED and session.user_id == "cust-1001"
