"""Strict readers for environment variables: a malformed value is an error, never a guess."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

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


def env_days(name: str) -> float | None:
    """A retention period in days, or None (unset or empty: kept for ever). At least one hour:
    a shorter period is a typo more often than a policy."""
    if not env_str(name):
        return None
    return env_float(name, 0.0, minimum=1 / 24)


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


def env_archive_storage(bucket: str, directory: Path) -> dict[str, object]:
    """The ``archives`` storage: S3 or Cloudflare R2 when ``bucket`` is set (AWS_S3_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_S3_REGION_NAME, AWS_S3_ADDRESSING_STYLE; R2
    takes the account's endpoint, region "auto" and path-style addressing), else ``directory``."""
    if not bucket:
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {
                "location": str(directory),
                # Whole conversations: readable by the service's own user only.
                "file_permissions_mode": 0o600,
                "directory_permissions_mode": 0o700,
            },
        }
    from botocore.config import Config  # only an S3 deployment pays for importing botocore

    style = env_str("AWS_S3_ADDRESSING_STYLE")
    if style not in ("", "auto", "path", "virtual"):
        raise ImproperlyConfigured(
            f"AWS_S3_ADDRESSING_STYLE must be path, virtual or auto, not {style!r}"
        )
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "default_acl": None,
            "file_overwrite": False,
            "location": "archives",
            # Stored as the gzip file it is: with the type guessed from ".json.gz", S3 would
            # serve it as gzip-encoded JSON and HTTP clients would silently inflate it.
            "object_parameters": {"ContentType": "application/gzip"},
            # botocore's defaults (60 s timeouts, several retries) would hold a worker for minutes.
            # With a client_config, S3Storage ignores its own addressing_style: it goes here.
            "client_config": Config(
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": style} if style else None,
            ),
        },
    }


def env_origins(name: str) -> list[str]:
    """Read a comma-separated list of web origins (``https://shop.example``, with a port when
    not the scheme's default): scheme and host only, no path, no wildcard. They go into a CSP
    ``frame-ancestors`` and are compared with ``location.origin``, so a typo is an error."""
    origins = []
    for item in env_list(name):
        parts = urlsplit(item)
        try:
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            parts = urlsplit("")
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "*" in item
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an origin like https://shop.example or "
                "http://localhost:8080"
            )
        netloc = parts.netloc.lower()
        if parts.port == {"http": 80, "https": 443}[parts.scheme]:
            netloc = netloc.rsplit(":", 1)[0]  # browsers name the default port by leaving it out
        origins.append(f"{parts.scheme}://{netloc}")
    return origins
