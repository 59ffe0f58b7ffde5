"""The embeddable chat widget: the loader script, the framed chat page and a demo host page.

A host site adds one line, ``<script src="https://support.example/widget.js" data-supportbot
async></script>``. The loader (``static/widget/loader.js``, served at ``/widget.js`` with this
server's settings baked in) draws a launcher in a shadow root on the host page and opens
``/widget/`` in an iframe: the chat page itself in an embed mode. Which sites may frame it is
``SUPPORTBOT_WIDGET_ORIGINS``, enforced by the browser through ``frame-ancestors``; how the
frame keeps its session without a cookie is ``chat.widget_sessions``.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.csp import CSP
from django.views.decorators.http import require_safe

from chat.views import page_context
from chat.widget_sessions import identity_signature
from supportbot.branding import page_brand
from supportbot.pages import html_page

LOADER_FILE = "widget/loader.js"
CONFIG_MARK = "/*SUPPORTBOT_CONFIG*/ null"
# Hosts fetch the loader on every page view; five minutes keeps that cheap while a change of
# origins or branding still reaches them soon (and the ETag makes a revalidation a 304).
LOADER_MAX_AGE = 300
DEMO_USER_ID = "demo-customer-42"


def launcher_brand() -> dict[str, str]:
    """The launcher's part of the page's brand (``supportbot.branding``): name, colours, avatar."""
    page = page_brand()
    return {key: page[key] for key in ("name", "color", "color_fg", "avatar")}


def frame_ancestors() -> list[str]:
    """Who may frame the widget: this origin and ``SUPPORTBOT_WIDGET_ORIGINS``."""
    return [CSP.SELF, *settings.SUPPORTBOT_WIDGET_ORIGINS]


def loader_config() -> dict[str, Any]:
    """What the loader needs before it draws anything (all of it public: the CSP says as much)."""
    return {
        "origins": list(settings.SUPPORTBOT_WIDGET_ORIGINS),
        "frame": "/widget/",
        "brand": launcher_brand(),
    }


@require_safe
def widget_loader(request: HttpRequest) -> HttpResponse:
    """GET /widget.js: the loader, with this server's configuration in place of its marker."""
    path = finders.find(LOADER_FILE)
    if not isinstance(path, str):
        raise FileNotFoundError(LOADER_FILE)
    with open(path, encoding="utf-8") as file:
        source = file.read()
    # JSON inside JavaScript: ASCII only, and "<" escaped so that nothing in it can ever close
    # a script element.
    config = json.dumps(loader_config(), ensure_ascii=True).replace("<", "\\u003c")
    body = source.replace(CONFIG_MARK, config, 1).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["ETag"] = etag
    patch_cache_control(response, public=True, max_age=LOADER_MAX_AGE)
    # Any site may load the script; it runs there, so it must say where it came from.
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    conditional = get_conditional_response(request, etag=etag, response=response)
    return conditional if conditional is not None else response


@html_page
@require_safe
def widget_frame(request: HttpRequest) -> HttpResponse:
    """GET /widget/: the chat page in embed mode, frameable by the allowed origins only.

    It opens no session itself: the frame's script resumes or starts one with the id the host
    passes in the fragment (``chat.widget_sessions``), so loading it spends nothing.
    """
    context = {
        **page_context(),
        "embed": True,
        "session_id": "",
        "widget_config": {"origins": settings.SUPPORTBOT_WIDGET_ORIGINS},
    }
    response = render(request, "chat/index.html", context)
    response._csp_config = {  # type: ignore[attr-defined]
        **settings.SECURE_CSP,
        "frame-ancestors": frame_ancestors(),
    }
    if settings.SUPPORTBOT_WIDGET_ORIGINS:
        # X-Frame-Options can name no other site (ALLOW-FROM is gone): the CSP alone decides.
        response.xframe_options_exempt = True
    else:
        response["X-Frame-Options"] = "SAMEORIGIN"
    return response


@html_page
@require_safe
def widget_demo(request: HttpRequest) -> HttpResponse:
    """GET /widget-demo/: a plain host page with the snippet and buttons for the JS API.

    With ``DEBUG`` and a widget secret it signs a demo customer, as a host site would on its own
    server; otherwise its identify button shows the refusal a host would get.
    """
    identity: dict[str, Any] | None = None
    secret = settings.SUPPORTBOT_WIDGET_SECRET
    if settings.DEBUG and secret:
        timestamp = int(time.time())
        identity = {
            "userId": DEMO_USER_ID,
            "timestamp": timestamp,
            "signature": identity_signature(
                user_id=DEMO_USER_ID, timestamp=timestamp, secret=secret
            ),
        }
    loader_url = request.build_absolute_uri("/widget.js")
    context = {
        "brand": page_brand(),
        "identity": identity,
        "snippet": f'<script src="{loader_url}" data-supportbot async></script>',
    }
    response = render(request, "chat/widget_demo.html", context)
    patch_cache_control(response, no_store=True)  # a signature is in it
    return response
