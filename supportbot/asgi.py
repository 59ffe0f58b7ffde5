"""ASGI entry point: HTTP (Django, with our static files) and WebSocket routing."""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import urlparse

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator, WebsocketDenier
from channels.sessions import SessionMiddlewareStack
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")

django_asgi = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402

from chat.guards.content import warm_up_in_background  # noqa: E402
from supportbot.routing import websocket_urlpatterns  # noqa: E402  (needs the app registry)

if "daphne.server" in sys.modules:  # plain `daphne`: 1009 for huge frames, 413 for huge bodies
    from supportbot.server import use_our_factories

    use_our_factories()
if "daphne.cli" in sys.modules:  # daphne's access log is built after this import
    from supportbot.logconfig import use_server_access_log

    use_server_access_log()

# Only the web server checks messages: its content filter loads while it starts listening
# (management commands and the Celery worker never pay for the model).
warm_up_in_background()


class BrowserOriginValidator(OriginValidator):
    """Refuse a WebSocket whose Origin is not ours (cross-site WebSocket hijacking).

    Browsers always send Origin. It must be the origin of a page this server serves: a host of
    ``ALLOWED_HOSTS`` with the scheme and port the socket itself came in on (the request's Host
    header; https with ``HTTPS=true``), so a page on another port or scheme of the same machine
    is refused; or exactly one of ``CORS_ALLOWED_ORIGINS``. A client that sends none is not a
    browser (server-to-server, the old bot's clients): it passes, and still needs the session
    id. ``Origin: null`` (sandboxed frames, files) is refused. Settings are read per handshake.
    """

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("BrowserOriginValidator guards WebSocket connections only")
        headers = dict(scope.get("headers") or ())
        origin = headers.get(b"origin")
        if origin is None or self.origin_allowed(
            origin.decode("latin-1"), host=headers.get(b"host", b"").decode("latin-1"), scope=scope
        ):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    def origin_allowed(self, origin: str, *, host: str, scope: dict[str, Any]) -> bool:
        """Whether a browser page at ``origin`` may open this socket (see the class)."""
        try:
            parsed = urlparse(origin.strip().lower())
            origin_port = self.get_origin_port(parsed)
        except ValueError:  # a port that is not a number
            return False
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path:
            return False  # "null", or not an origin at all
        if any(self.match_allowed_origin(parsed, listed) for listed in _listed_origins()):
            return True
        page_scheme = "https" if settings.HTTPS or scope.get("scheme") == "wss" else "http"
        _, page_port = split_domain_port(host.lower())
        if not page_port:
            server = scope.get("server") or (None, None)
            default = 443 if page_scheme == "https" else 80
            page_port = str(server[1] or default) if not host else str(default)
        return (
            parsed.scheme == page_scheme
            and str(origin_port) == page_port
            and validate_host(_host_spelling(parsed.hostname), _allowed_hosts())
        )


def _host_spelling(hostname: str) -> str:
    return f"[{hostname}]" if ":" in hostname else hostname  # IPv6, as ALLOWED_HOSTS spells it


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]
    return hosts


def _listed_origins() -> list[str]:
    # Only full origins (scheme://host[:port]); django-cors-headers requires that spelling too.
    return [origin for origin in settings.CORS_ALLOWED_ORIGINS if "://" in origin]


application = ProtocolTypeRouter(
    {
        # Static files are served by the same process (no separate web server needed); a CDN or
        # proxy in front caches them in production.
        "http": ASGIStaticFilesHandler(django_asgi),
        # The Django session (loaded only when read) tells staff watchers from end users.
        "websocket": BrowserOriginValidator(
            SessionMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
