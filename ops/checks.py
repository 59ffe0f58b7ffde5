"""System checks that catch production misconfiguration, with stable ids (``ops.W001`` ...).

Registered on import (``OpsConfig.ready``). Checks marked deploy run only under
``manage.py check --deploy``: the embedded default (in-memory channel layer, offline assistant,
filesystem archives) is right for one developer and wrong for a fleet, so it is only flagged when
someone says they are deploying. The rest flag combinations that are wrong anywhere.

Ids are stable: operators silence them by id (``SILENCED_SYSTEM_CHECKS``) and docs refer to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning

OPS = "ops"
_IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
_FILESYSTEM_STORAGE = "django.core.files.storage.FileSystemStorage"

# Each message, by id, so tests and docs can name them.
W001 = "ops.W001"
W002 = "ops.W002"
W003 = "ops.W003"
W004 = "ops.W004"
W005 = "ops.W005"
W006 = "ops.W006"
E001 = "ops.E001"


def _production_backends() -> list[str]:
    return [name for name in ("DATABASE_URL", "REDIS_URL") if getattr(settings, name, "")]


def _debug_warning(reason: str) -> CheckWarning:
    return CheckWarning(
        f"DEBUG is on {reason}.",
        hint="Set DEBUG=false (and SECRET_KEY) for anything but local development: DEBUG shows "
        "settings and tracebacks to anyone who triggers an error, and keeps every query in memory.",
        id=W001,
    )


@register(OPS, Tags.security)
def check_debug_with_production_backends(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """ops.W001: DEBUG on while a production backend (DATABASE_URL, REDIS_URL) is configured."""
    backends = _production_backends()
    if settings.DEBUG and backends:
        return [_debug_warning(f"while {' and '.join(backends)} point at production backends")]
    return []


@register(OPS, Tags.security, deploy=True)
def check_debug_in_deploy(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """ops.W001 under --deploy, when the non-deploy check above did not already say it."""
    if settings.DEBUG and not _production_backends():
        return [_debug_warning("in a deployment")]
    return []


@register(OPS, deploy=True)
def check_channel_layer(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """ops.W002: the in-memory channel layer cannot be shared by several processes."""
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    backend = str((layers.get("default") or {}).get("BACKEND", ""))
    if backend == _IN_MEMORY_LAYER:
        return [
            CheckWarning(
                "The channel layer is in-memory: WebSocket messages reach only sockets of the "
                "same process.",
                hint="Set REDIS_URL so every daphne process shares one channel layer (several "
                "tabs, staff watching a session, live takeover).",
                id=W002,
            )
        ]
    return []


@register(OPS, deploy=True)
def check_model_configured(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """ops.W003: no language model configured; only the offline assistant answers."""
    if not getattr(settings, "LLM_BASE_URL", "") and not getattr(settings, "OPENAI_API_KEY", ""):
        return [
            CheckWarning(
                "No language model is configured: only the offline assistant (knowledge-base "
                "passages and fixed intents) will answer.",
                hint="Set LLM_BASE_URL and LLM_MODEL (and LLM_API_KEY), or OPENAI_API_KEY.",
                id=W003,
            )
        ]
    return []


@register(OPS, deploy=True)
def check_archive_storage(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """ops.W004: archives on the local disk of one machine while the database is shared."""
    archives = settings.STORAGES.get("archives")
    backend = str(archives.get("BACKEND", "")) if isinstance(archives, dict) else ""
    if getattr(settings, "DATABASE_URL", "") and backend == _FILESYSTEM_STORAGE:
        return [
            CheckWarning(
                "Conversation archives are written to the local filesystem while the database "
                "is shared: an archive written by one machine cannot be read or restored by "
                "another, and is lost with its disk.",
                hint="Set AWS_STORAGE_BUCKET_NAME (and AWS_S3_ENDPOINT_URL and keys for R2 or "
                "another S3-compatible store).",
                id=W004,
            )
        ]
    return []


@register(OPS)
def check_llm_model(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """ops.E001: a primary endpoint without a model name cannot be called."""
    if getattr(settings, "LLM_BASE_URL", "") and not getattr(settings, "LLM_MODEL", ""):
        return [
            Error(
                "LLM_BASE_URL is set but LLM_MODEL is not.",
                hint="Set LLM_MODEL to the model name the endpoint serves (see its GET /models).",
                id=E001,
            )
        ]
    return []


@register(OPS, Tags.security, deploy=True)
def check_https(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """ops.W005: HTTPS unset, so no SSL redirect, HSTS or secure cookies."""
    if not getattr(settings, "HTTPS", False):
        return [
            CheckWarning(
                "HTTPS is not set: no redirect to TLS, no HSTS, and session and CSRF cookies "
                "travel over plain HTTP.",
                hint="Serve over TLS (usually at the proxy) and set HTTPS=true; it turns on the "
                "SSL redirect, HSTS and secure cookies together.",
                id=W005,
            )
        ]
    return []


@register(OPS, Tags.security)
def check_allowed_hosts(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """ops.W006: ALLOWED_HOSTS accepts any Host header."""
    if "*" in settings.ALLOWED_HOSTS:
        return [
            CheckWarning(
                'ALLOWED_HOSTS contains "*": any Host header is accepted, which enables host '
                "header poisoning (password-reset links, cache keys) and defeats the WebSocket "
                "origin check, which compares against ALLOWED_HOSTS.",
                hint="List the host names the service is reached by.",
                id=W006,
            )
        ]
    return []
