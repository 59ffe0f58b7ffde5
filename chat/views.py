from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from chat.models import ChatSession
from chat.sessions import session_create, session_get
from supportbot.errors import ApiError

SESSION_COOKIE = "supportbot_session"
# Matches the inactivity expiry; the server refuses an expired id anyway.
COOKIE_MAX_AGE = 24 * 60 * 60


def page_session(*, cookie_value: str | None) -> ChatSession:
    """The live session named by the cookie, or a new one when it is missing, gone or ended."""
    if cookie_value:
        try:
            session = session_get(session_id=cookie_value, allow_ended=False)
        except ApiError:
            pass
        else:
            return session
    return session_create()


def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page; the session id travels in an HttpOnly cookie and a data- attribute."""
    session = page_session(cookie_value=request.COOKIES.get(SESSION_COOKIE))
    response = render(request, "chat/index.html", {"session_id": session.pk})
    response.set_cookie(
        SESSION_COOKIE,
        session.pk,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=settings.HTTPS,
    )
    return response
