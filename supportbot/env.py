"""Strict readers for environment variables: a malformed value is an error, never a guess."""

from __future__ import annotations

import json
import os
import sys

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str = "") -> str:
    """Return the variable stripped of surrounding blanks, or ``default`` when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_bool(name: str, default: bool) -> bool:
    """Read true/false (also 1/0, yes/no, on/off); anything else is a configuration error."""
    raw = env_str(name).lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Read an integer, optionally with a lower bound."""
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    """Read a non-negative number (seconds, ratios)."""
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Read a comma-separated list; blanks are dropped."""
    raw = env_str(name)
    if not raw:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_prices(
    name: str, default: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    """Read a price table, JSON ``{"model": [prompt, completion], ...}`` in USD per million
    tokens; it replaces the default table (``{}`` prices nothing)."""
    raw = env_str(name)
    if not raw:
        return dict(default)
    try:
        table = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be JSON, not {raw[:40]!r}") from exc
    if not isinstance(table, dict):
        raise ImproperlyConfigured(f"{name} must map model names to [prompt, completion]")
    prices: dict[str, tuple[float, float]] = {}
    for model, pair in table.items():
        ok = isinstance(pair, list) and len(pair) == 2
        ok = ok and all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in pair
        )
        if not ok:
            raise ImproperlyConfigured(
                f"{name}: the price of {model!r} must be [prompt, completion], two numbers >= 0"
            )
        prices[str(model)] = (float(pair[0]), float(pair[1]))
    return prices


def env_rules(name: str, default: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """Read JSON ``{"rule": {"threshold": 5, "enabled": false}, ...}`` merged over the default
    rules, parameter by parameter (a rule left out keeps its defaults)."""
    raw = env_str(name)
    merged = {rule: dict(params) for rule, params in default.items()}
    if not raw:
        return merged
    try:
        table = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be JSON, not {raw[:40]!r}") from exc
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ImproperlyConfigured(f"{name} must map rule names to objects of parameters")
    for rule, params in table.items():
        if rule not in merged:
            raise ImproperlyConfigured(f"{name}: unknown rule {rule!r}; known: {', '.join(merged)}")
        for key, value in params.items():
            if key not in merged[rule] and key != "enabled":
                raise ImproperlyConfigured(f"{name}: rule {rule!r} has no parameter {key!r}")
            merged[rule][key] = value
    return merged


def load_settings_or_exit() -> None:
    """Read the settings now: a bad value stops the command with one line, not a traceback."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
    try:
        settings.INSTALLED_APPS  # noqa: B018  (reads the environment)
    except ImproperlyConfigured as exc:
        sys.exit(f"supportbot: {exc}")
