"""Who may read the service's figures: a signed-in staff user, or ``METRICS_TOKEN`` as a bearer.

``GET /metrics`` (Prometheus) is off (404) while ``METRICS_TOKEN`` is unset and then takes the
token only; ``GET /api/metrics`` takes a staff session or the token. API keys come later.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest

from supportbot.errors import ApiError


def bearer_token(request: HttpRequest) -> str:
    """The token of an ``Authorization: Bearer …`` header, or ``""``."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def token_matches(request: HttpRequest) -> bool:
    """Whether the request carries METRICS_TOKEN (compared in constant time)."""
    expected = settings.METRICS_TOKEN
    given = bearer_token(request)
    return bool(expected and given) and hmac.compare_digest(given.encode(), expected.encode())


def require_metrics_reader(request: HttpRequest) -> None:
    """Let a staff user or the token through; anyone else gets API.md's 401 or 403."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return
    if token_matches(request):
        return
    if user is not None and user.is_authenticated:
        raise ApiError("ACCESS_DENIED", "The metrics are for staff.", status=403)
    raise ApiError(
        "ACCESS_DENIED",
        "Sign in as staff, or send the metrics token as 'Authorization: Bearer <token>'.",
        status=401,
    )
