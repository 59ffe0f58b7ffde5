"""ASGI entry point: HTTP (Django, with our static files) and WebSocket routing."""

from __future__ import annotations

import os

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.sessions import SessionMiddlewareStack
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")

django_asgi = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from supportbot.routing import websocket_urlpatterns  # noqa: E402  (needs the app registry)

application = ProtocolTypeRouter(
    {
        # Static files are served by the same process (no separate web server needed); a CDN or
        # proxy in front caches them in production.
        "http": ASGIStaticFilesHandler(django_asgi),
        # The Django session (loaded only when read) tells staff watchers from end users.
        "websocket": AllowedHostsOriginValidator(
            SessionMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
