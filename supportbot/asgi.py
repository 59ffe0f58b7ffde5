"""ASGI entry point: HTTP (Django, with our static files) and WebSocket routing."""

from __future__ import annotations

import os
import sys
from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from channels.sessions import SessionMiddlewareStack
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")

django_asgi = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from chat.guards.content import warm_up_in_background  # noqa: E402
from supportbot.routing import websocket_urlpatterns  # noqa: E402  (needs the app registry)

if "daphne.server" in sys.modules:  # served by plain `daphne`: close oversized frames with 1009
    from supportbot.server import use_closing_factory

    use_closing_factory()

# Only the web server checks messages: its content filter loads while it starts listening
# (management commands and the Celery worker never pay for the model).
warm_up_in_background()


class BrowserOriginValidator(OriginValidator):
    """Refuse a WebSocket whose Origin is not ours (cross-site WebSocket hijacking).

    Browsers always send Origin, so a page on another site is refused. A client that sends none
    is not a browser (server-to-server, the old bot's clients): it passes, and still needs the
    session id. ``Origin: null`` (sandboxed frames, files) is refused.
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


def allowed_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]
    return hosts + list(settings.CORS_ALLOWED_ORIGINS)


application = ProtocolTypeRouter(
    {
        # Static files are served by the same process (no separate web server needed); a CDN or
        # proxy in front caches them in production.
        "http": ASGIStaticFilesHandler(django_asgi),
        # The Django session (loaded only when read) tells staff watchers from end users.
        "websocket": BrowserOriginValidator(
            SessionMiddlewareStack(URLRouter(websocket_urlpatterns)), allowed_origins()
        ),
    }
)
