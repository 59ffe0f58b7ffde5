from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from chat.models import ChatSession
from chat.sessions import session_create, session_get
from supportbot.clients import client_ip
from supportbot.errors import ApiError

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


def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page; the session id travels in an HttpOnly cookie and a data- attribute."""
    try:
        session = page_session(
            cookie_value=request.COOKIES.get(SESSION_COOKIE), client_ip=client_ip(request)
        )
    except ApiError as refused:
        # A session limit: say so on a page (this is the one HTML answer to it).
        response = render(
            request, "chat/limited.html", {"message": refused.message}, status=refused.status
        )
        if refused.retry_after is not None:
            response["Retry-After"] = str(refused.retry_after)
        return response
    response = render(request, "chat/index.html", {"session_id": session.pk})
    _set_session_cookie(response, session.pk)
    return response


@require_POST
def new_conversation(request: HttpRequest) -> JsonResponse:
    """POST /conversation/new: a fresh session, named by the cookie from now on (CSRF-checked)."""
    session = session_create(client_ip=client_ip(request))
    response = JsonResponse({"sessionId": session.pk}, status=201)
    _set_session_cookie(response, session.pk)
    return response


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
