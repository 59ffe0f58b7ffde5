"""The assistant's brand on the chat page and the widget: name, colour, avatar and greeting.

Read once from the environment variables of the same names into the settings
``SUPPORTBOT_BRAND_NAME``, ``SUPPORTBOT_BRAND_COLOR``, ``SUPPORTBOT_BRAND_AVATAR`` (a web URL or a
static path) and ``SUPPORTBOT_BRAND_GREETING``; unset means Nimbus's own. Pages take them
through ``page_brand()``. Strict like every reader in ``supportbot.env``: a colour that is not
``#rgb``/``#rrggbb`` or an avatar that is neither a web URL nor a static path stops start-up,
since either would otherwise fail quietly in every customer's browser.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from supportbot.env import env_str

DEFAULT_NAME = "Nimbus Assistant"
DEFAULT_COLOR = "#2f5fd0"
DEFAULT_AVATAR = "chat/avatar.svg"
DEFAULT_GREETING = (
    "Hi! I'm the Nimbus Assistant. Ask me about your account, billing, syncing or sharing, "
    "and I'll answer from the Nimbus help centre. I can also open a ticket or get you a person."
)
_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
_STATIC_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")
MAX_NAME = 60
MAX_GREETING = 500


class Brand(NamedTuple):
    name: str
    color: str
    avatar: str
    greeting: str


def brand_from_env() -> Brand:
    """The brand the environment sets, every value checked (see the module docstring)."""
    name = env_str("SUPPORTBOT_BRAND_NAME", DEFAULT_NAME)
    if len(name) > MAX_NAME:
        raise ImproperlyConfigured(f"SUPPORTBOT_BRAND_NAME is over {MAX_NAME} characters")
    color = env_str("SUPPORTBOT_BRAND_COLOR", DEFAULT_COLOR)
    if not _HEX_COLOR.fullmatch(color):
        raise ImproperlyConfigured(
            f"SUPPORTBOT_BRAND_COLOR must be a colour like #2f5fd0, not {color!r}"
        )
    avatar = env_str("SUPPORTBOT_BRAND_AVATAR", DEFAULT_AVATAR)
    if not (_is_web_url(avatar) or _is_static_path(avatar)):
        raise ImproperlyConfigured(
            "SUPPORTBOT_BRAND_AVATAR must be an https:// (or http://) URL or a path under "
            f"static/, like chat/avatar.svg; not {avatar!r}"
        )
    greeting = env_str("SUPPORTBOT_BRAND_GREETING", DEFAULT_GREETING)
    if len(greeting) > MAX_GREETING:
        raise ImproperlyConfigured(f"SUPPORTBOT_BRAND_GREETING is over {MAX_GREETING} characters")
    return Brand(name=name, color=color.lower(), avatar=avatar, greeting=greeting)


def page_brand() -> dict[str, str]:
    """The brand as a page (the chat page, the widget's launcher) uses it: the settings, the
    avatar as a loadable URL, and the text colour that reads on the brand colour."""
    color = settings.SUPPORTBOT_BRAND_COLOR
    return {
        "name": settings.SUPPORTBOT_BRAND_NAME,
        "color": color,
        "color_fg": readable_on(color),
        "avatar": avatar_url(settings.SUPPORTBOT_BRAND_AVATAR),
        "greeting": settings.SUPPORTBOT_BRAND_GREETING,
    }


def avatar_url(avatar: str) -> str:
    """The avatar as a page can load it: a web URL as it is, a static path through static()."""
    # Imported here: settings.py reads this module before the template engine can load.
    from django.templatetags.static import static

    return avatar if _is_web_url(avatar) else static(avatar)


def avatar_origin(avatar: str) -> list[str]:
    """The origin an avatar URL is loaded from, for the CSP's img-src (none for a static path)."""
    if not _is_web_url(avatar):
        return []
    parts = urlsplit(avatar)
    return [f"{parts.scheme}://{parts.netloc}"]


def readable_on(color: str) -> str:
    """Black or white, whichever reads better on ``color`` (WCAG relative luminance)."""
    digits = color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)

    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(digits[i : i + 2]) for i in (0, 2, 4))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # Contrast with white is 1.05 / (L + 0.05), with black (L + 0.05) / 0.05: equal at L ≈ 0.179.
    return "#ffffff" if luminance < 0.179 else "#111111"


def _is_web_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


def _is_static_path(value: str) -> bool:
    return bool(_STATIC_PATH.fullmatch(value)) and ".." not in value.split("/")
