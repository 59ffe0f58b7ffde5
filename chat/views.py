from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from chat.models import ChatSession
from chat.sessions import session_create, session_end, session_get
from chat.suggestions import suggested_questions
from supportbot import ratelimit
from supportbot.branding import page_brand
from supportbot.clients import client_ip, client_label
from supportbot.errors import ApiError
from supportbot.pages import html_page, page_refusal

SESSION_COOKIE = "supportbot_session"
# Matches the inactivity expiry; the server refuses an expired id anyway.
COOKIE_MAX_AGE = 24 * 60 * 60


def page_session(*, cookie_value: str | None, client_ip: str = "") -> ChatSession:
    """The live session named by the cookie, or a new one when it is missing, gone or ended."""
    if cookie_value:
        try:
            session = session_get(session_id=cookie_value, allow_ended=False)
        except ApiError:
            pass
        else:
            return session
    return session_create(client_ip=client_ip)


def page_context() -> dict[str, Any]:
    """What the chat page's template shows besides the conversation: the brand (name, colour,
    avatar, greeting) and the suggested questions of a new conversation."""
    return {"brand": page_brand(), "suggestions": suggested_questions()}


@html_page
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page; the session id travels in an HttpOnly cookie and a data- attribute."""
    try:
        session = page_session(
            cookie_value=request.COOKIES.get(SESSION_COOKIE), client_ip=client_ip(request)
        )
    except ApiError as refused:
        # A session limit: a page that says how long to wait (with Retry-After and the code
        # the security log recorded), never the API's JSON.
        return page_refusal(request, refused, template="chat/limited.html")
    response = render(request, "chat/index.html", {"session_id": session.pk, **page_context()})
    _set_session_cookie(response, session.pk)
    return response


@require_POST
def new_conversation(request: HttpRequest) -> JsonResponse:
    """POST /conversation/new: a fresh session, named by the cookie from now on (CSRF-checked).

    The session it replaces (the cookie's) is ended first, as "End conversation" ends it: a
    person pressing the button holds one live session, never a pile that fills the per-IP
    limit of sessions at once. A fetch of the page's script, so its refusals stay JSON."""
    ip = client_ip(request)
    # Refused before the old session is ended: a press refused for the hourly number of new
    # sessions leaves the conversation as it was, still usable.
    ratelimit.require_budget(("ip_session_creations", client_label(ip)), client_ip=ip)
    end_replaced_session(request.COOKIES.get(SESSION_COOKIE))
    session = session_create(client_ip=ip)
    response = JsonResponse({"sessionId": session.pk}, status=201)
    _set_session_cookie(response, session.pk)
    return response


def end_replaced_session(cookie_value: str | None) -> None:
    """End the live session the cookie names, if any; a missing, malformed, unknown, expired or
    already ended one needs no ending (the new conversation starts all the same)."""
    if not cookie_value:
        return
    with contextlib.suppress(ApiError):
        session_end(session_id=cookie_value)


def _set_session_cookie(response: HttpResponse, session_id: str) -> None:
    # HttpOnly: page scripts never read it; they get the id from the page or this view's body.
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=settings.HTTPS,
    )
