"""The embeddable widget's sessions and the signed identity a host site gives its customer.

Why the widget does not use the chat page's cookie: the page names its session in a
``SameSite=Lax`` cookie, and a browser sends no Lax cookie (nor stores one) inside a frame of
another site; a ``SameSite=None`` or partitioned (CHIPS) cookie needs HTTPS, and third-party
cookies are blocked outright by several browsers. So the widget keeps its session in the *host*
page's own storage instead:

1. The loader (``static/widget/loader.js``) keeps the session id in the host's ``localStorage``
   under a key naming supportbot's origin, and opens the frame at ``/widget/#origin=…&session=…``.
   A fragment never reaches a server, so the id is in no access log of ours or the host's; the
   frame removes it from its address at once.
2. The frame (``static/widget/frame.js``) accepts the claimed host origin only when it is one of
   ``SUPPORTBOT_WIDGET_ORIGINS`` (or its own) and, where the browser says, the real parent's
   origin; then ``widget_session`` resumes the named session or opens a new one, and the frame
   posts the id back to that origin only (``postMessage`` with an exact target origin; each side
   checks ``event.origin`` and ``event.source`` of what it receives).
3. From there the chat page runs unchanged: history over REST and the WebSocket with its resume
   and reconnect, both naming the session by id, which is how API.md grants access anyway.

The token is the session id itself, a bearer secret of 192 random bits (``supportbot.ids``):
guessing one is hopeless, and a well-formed id that is unknown, expired or ended only ever opens
a *new* session, never someone else's. A signed wrapper around the id would make it no harder
to guess, and would be one more secret to rotate.

Identity: the host signs ``f"{timestamp}:{userId}"`` with ``SUPPORTBOT_WIDGET_SECRET``
(HMAC-SHA256, hex); ``widget_identify`` checks it in constant time and refuses a timestamp older
than ``SUPPORTBOT_WIDGET_IDENTITY_MAX_AGE`` seconds (or more than five minutes ahead), so a
signature that leaks (a cached page, a log) stops working. A session already identified as
another customer is ended and a new one opened: the next person on a shared computer never sees
the previous customer's conversation.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from django.conf import settings

from chat.guards.validation import unstorable
from chat.models import ChatSession
from chat.sessions import session_create, session_end, session_get
from supportbot.db import write_transaction
from supportbot.errors import ApiError
from supportbot.ids import require_session_id

MAX_USER_ID = 128  # ChatSession.user_id
CLOCK_SKEW_SECONDS = 300  # a host's clock may run this far ahead of ours
SIGNATURE_RE = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class WidgetSession:
    """The session a widget frame talks in, and whether it is the one the host remembered."""

    session: ChatSession
    resumed: bool


def widget_session(
    *, session_id: str | None, restart: bool = False, client_ip: str = ""
) -> WidgetSession:
    """Resume the live session the host remembered, or open a new one when there is none, it is
    gone or ended, or ``restart`` asks for a fresh conversation (which ends the named one)."""
    if session_id is not None:
        require_session_id(session_id)
        current = _live_session(session_id)
        if current is not None and not restart:
            return WidgetSession(session=current, resumed=True)
        if current is not None:
            _end_quietly(current.pk)
    return WidgetSession(session=session_create(client_ip=client_ip), resumed=False)


def widget_identify(
    *, session_id: str, user_id: str, timestamp: int, signature: str, client_ip: str = ""
) -> WidgetSession:
    """Attach a host-signed ``user_id`` to the session; nothing changes unless it verifies.

    ``resumed`` is False when the session belonged to another customer and a new one was opened.
    """
    require_session_id(session_id)
    _check_user_id(user_id)
    verify_identity(user_id=user_id, timestamp=timestamp, signature=signature)
    with write_transaction():
        session = session_get(session_id=session_id, allow_ended=False)
        session = ChatSession.objects.select_for_update().get(pk=session.pk)
        if session.user_id in ("", user_id):
            if not session.user_id:
                session.user_id = user_id
                session.save(update_fields=["user_id"])
            return WidgetSession(session=session, resumed=True)
    _end_quietly(session.pk)
    fresh = session_create(user_id=user_id, client_ip=client_ip)
    return WidgetSession(session=fresh, resumed=False)


def identity_signature(*, user_id: str, timestamp: int, secret: str) -> str:
    """What the host site computes: HMAC-SHA256 of ``"<timestamp>:<userId>"``, hex."""
    message = f"{timestamp}:{user_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_identity(*, user_id: str, timestamp: int, signature: str) -> None:
    """Refuse (403 ``ACCESS_DENIED``) an identity that is not signed with our secret, or whose
    signature has expired; a malformed signature is a 400."""
    if not SIGNATURE_RE.match(signature):
        raise ApiError(
            "INVALID_FIELD_VALUE",
            "signature must be 64 hexadecimal characters (HMAC-SHA256).",
            details={"field": "signature"},
        )
    secret = settings.SUPPORTBOT_WIDGET_SECRET
    if not secret:
        raise ApiError(
            "ACCESS_DENIED",
            "Identity verification is not set up on this server: it has no widget secret.",
            details={"field": "signature"},
        )
    now = time.time()
    if timestamp < now - settings.SUPPORTBOT_WIDGET_IDENTITY_MAX_AGE:
        raise ApiError(
            "ACCESS_DENIED",
            "The identity signature has expired: sign the userId with a current timestamp.",
            details={"field": "timestamp", "maxAge": settings.SUPPORTBOT_WIDGET_IDENTITY_MAX_AGE},
        )
    if timestamp > now + CLOCK_SKEW_SECONDS:
        raise ApiError(
            "ACCESS_DENIED",
            "The identity timestamp is in the future: it is seconds since 1970, in UTC.",
            details={"field": "timestamp"},
        )
    expected = identity_signature(user_id=user_id, timestamp=timestamp, secret=secret)
    if not hmac.compare_digest(expected, signature.lower()):
        raise ApiError(
            "ACCESS_DENIED",
            "The signature does not match this userId and timestamp.",
            details={"field": "signature"},
        )


def _check_user_id(user_id: str) -> None:
    problem = unstorable(user_id)
    if problem or not user_id.strip() or len(user_id) > MAX_USER_ID:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            f"userId {problem or f'must be 1 to {MAX_USER_ID} characters, not blank'}.",
            details={"field": "userId"},
        )


def _live_session(session_id: str) -> ChatSession | None:
    try:
        return session_get(session_id=session_id, allow_ended=False)
    except ApiError:
        return None  # unknown, expired, restored or ended: the widget starts afresh


def _end_quietly(session_id: str) -> None:
    # ApiError: it ended meanwhile (another tab), which is what was wanted.
    with contextlib.suppress(ApiError):
        session_end(session_id=session_id)
