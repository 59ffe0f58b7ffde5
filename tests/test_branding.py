"""Branding settings: strict readers with Nimbus defaults, used by the chat page."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from supportbot.branding import (
    DEFAULT_AVATAR,
    DEFAULT_COLOR,
    DEFAULT_NAME,
    avatar_origin,
    brand_from_env,
    page_brand,
    readable_on,
)


def test_unset_means_the_nimbus_defaults(monkeypatch):
    for name in ("NAME", "COLOR", "AVATAR", "GREETING"):
        monkeypatch.delenv(f"SUPPORTBOT_BRAND_{name}", raising=False)
    brand = brand_from_env()
    assert (brand.name, brand.color, brand.avatar) == (DEFAULT_NAME, DEFAULT_COLOR, DEFAULT_AVATAR)
    assert brand.greeting.startswith("Hi!")


def test_values_from_the_environment(monkeypatch):
    monkeypatch.setenv("SUPPORTBOT_BRAND_NAME", "Acme Helper")
    monkeypatch.setenv("SUPPORTBOT_BRAND_COLOR", "#FFCC00")
    monkeypatch.setenv("SUPPORTBOT_BRAND_AVATAR", "https://cdn.acme.example/bot.png")
    monkeypatch.setenv("SUPPORTBOT_BRAND_GREETING", "Hello from Acme.")
    brand = brand_from_env()
    assert brand.name == "Acme Helper" and brand.greeting == "Hello from Acme."
    assert brand.color == "#ffcc00"
    assert avatar_origin(brand.avatar) == ["https://cdn.acme.example"]
    assert avatar_origin(DEFAULT_AVATAR) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SUPPORTBOT_BRAND_COLOR", "blue"),
        ("SUPPORTBOT_BRAND_COLOR", "#12345"),
        ("SUPPORTBOT_BRAND_COLOR", "#123456; background: url(x)"),
        ("SUPPORTBOT_BRAND_AVATAR", "javascript:alert(1)"),
        ("SUPPORTBOT_BRAND_AVATAR", "../../etc/passwd"),
        ("SUPPORTBOT_BRAND_AVATAR", "/absolute/path.png"),
        ("SUPPORTBOT_BRAND_AVATAR", "data:image/png;base64,AAAA"),
        ("SUPPORTBOT_BRAND_NAME", "x" * 61),
        ("SUPPORTBOT_BRAND_GREETING", "x" * 501),
    ],
)
def test_a_bad_value_is_a_configuration_error(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ImproperlyConfigured, match=variable):
        brand_from_env()


def test_text_on_the_brand_colour_stays_readable():
    assert readable_on("#2f5fd0") == "#ffffff"
    assert readable_on("#ffcc00") == "#111111"
    assert readable_on("#fff") == "#111111"
    assert readable_on("#000") == "#ffffff"


@pytest.mark.django_db
def test_the_page_carries_the_brand_and_the_csp_allows_the_avatar(settings):
    settings.SUPPORTBOT_BRAND_NAME = "Acme <Helper>"
    settings.SUPPORTBOT_BRAND_COLOR = "#ffcc00"
    settings.SUPPORTBOT_BRAND_AVATAR = "chat/avatar.svg"
    assert page_brand()["avatar"] == "/static/chat/avatar.svg"
    response = Client().get("/")
    html = response.content.decode()
    assert "<h1>Acme &lt;Helper&gt;</h1>" in html
    assert 'data-brand-color="#ffcc00"' in html and 'data-brand-color-fg="#111111"' in html
    assert 'src="/static/chat/avatar.svg"' in html
